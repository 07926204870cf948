"""What a fetch read, dropped and covered, and the row policies every source shares.

Row policies (applied by :class:`RowPolicies`, batch by batch in source order, by the streaming
ingestion and, in one batch, by :func:`clean_trades`; counted in the report), in this order:

* zero-quantity rows are dropped (``rows_dropped["zero_quantity"]``); Binance has published
  months with many of them and they carry no flow;
* rows outside the requested period are dropped (``rows_dropped["outside_period"]``); for OKX
  this is expected, its UTC+8 day files straddle UTC month edges;
* a trade id seen more than once keeps its first occurrence in source order, across the whole
  period (``rows_dropped["duplicate_id"]``). Integer ids are the ``trade_id`` column. String ids
  (a venue with ``trade_ids="string"``, e.g. Bybit's UUID ``trdMatchID``) come as the 128-bit
  key columns ``KEY_COLUMNS`` beside a ``trade_id`` that is the row's place in its file (file
  order: see the venue); a repeated key is a duplicate on its trade's UTC day (a duplicate row
  repeats its time), and a key kept on two different UTC days is an upstream defect that
  refuses the period (:class:`ArchiveDefectError`, naming the id and the days);
* rows out of order are sorted by ``(exchange_ts, trade_id)``; ``rows_reordered`` counts the rows
  out of the venue's normal file order: for files written oldest first (most venues), the rows
  smaller than the one before them in source order; for a venue whose files are newest first
  (``file_order="newest_first"``, Bybit), a file in exact reverse order is normal (sorted, not
  counted) and the rows counted are those larger than the one before them in their file, or
  smaller than the newest trade of an earlier file.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from flow_assets.metrics.schema import FILL_ID_COLUMNS, TRADE_SCHEMA
from flow_assets.sources.errors import ArchiveDefectError, NotPublishedError
from flow_assets.sources.idset import DAY_US, SeenIds, StringIds


@dataclass
class FileRecord:
    """One archive file read: its name, where it came from, its sha256 and size in bytes."""

    name: str
    url: str
    sha256: str
    size: int
    checksum_verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "checksum_verified": self.checksum_verified,
        }


@dataclass
class FetchReport:
    """The account of one fetch: files (their checksums become data versions), rows, coverage.

    ``end`` is the exclusive end of the covered data (UTC); ``complete`` is false for a month still
    running or one with ``days_missing``. ``defects`` describes source problems that the row
    policies repaired (unordered rows, zero quantities, duplicate ids).
    """

    exchange: str
    symbol: str
    month: date | None
    files: list[FileRecord] = field(default_factory=list)
    rows_read: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_reordered: int = 0
    first_trade: datetime | None = None
    last_trade: datetime | None = None
    days_covered: list[date] = field(default_factory=list)
    days_missing: list[date] = field(default_factory=list)
    complete: bool = True
    end: datetime | None = None
    defects: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int) -> None:
        """Count ``count`` rows dropped for ``reason``."""
        if count:
            self.rows_dropped[reason] = self.rows_dropped.get(reason, 0) + count

    def to_metadata(self) -> dict[str, Any]:
        """JSON-able values (ISO strings for times and dates)."""

        def iso(value: date | datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "month": iso(self.month),
            "files": [f.to_dict() for f in self.files],
            "rows_read": self.rows_read,
            "rows_dropped": dict(self.rows_dropped),
            "rows_reordered": self.rows_reordered,
            "first_trade": iso(self.first_trade),
            "last_trade": iso(self.last_trade),
            "days_covered": [d.isoformat() for d in self.days_covered],
            "days_missing": [d.isoformat() for d in self.days_missing],
            "complete": self.complete,
            "end": iso(self.end),
            "defects": list(self.defects),
        }


@dataclass
class FetchResult:
    """Normalized trades (``TRADE_SCHEMA``, sorted by exchange_ts, trade_id) and their report."""

    trades: pl.DataFrame
    report: FetchReport


def empty_trades() -> pl.DataFrame:
    """A frame with no trades in ``TRADE_SCHEMA``."""
    return pl.DataFrame(schema=TRADE_SCHEMA)


MAX_RUNS = 64  # ascending id runs per batch checked run by run (more: hashed)
KEY_COLUMNS = ("_key_hi", "_key_lo")  # a string id's 128-bit key (high, low halves)


class RowPolicies:
    """The row policies above applied batch by batch to trades arriving in source order.

    ``apply`` returns the rows kept, still in source order, and counts in ``report`` what it
    dropped; a trade id kept in an earlier batch (of any day or file) makes later rows with it
    duplicates. ``finish`` records the reordered rows and the defects once every batch is in.
    """

    def __init__(
        self,
        report: FetchReport,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        string_ids: bool = False,
        workdir: Path | None = None,
        newest_first: bool = False,
    ) -> None:
        self.report = report
        self.newest_first = newest_first
        self.start = start
        self.end = end
        self.seen = SeenIds()
        self.folder = Path(tempfile.mkdtemp(prefix="ids-", dir=workdir)) if string_ids else None
        self.keys = StringIds(self.folder) if self.folder is not None else None
        self.descents = 0  # rows below the one before them: the source needs sorting
        self._last: tuple[int, int] | None = None  # (exchange_ts µs, trade_id) of the last kept
        self.disorder = 0  # newest-first files: rows out of that order
        self._file_last: tuple[int, int] | None = None  # the last row kept of the current file
        self._file_max: tuple[int, int] | None = None  # the newest row kept of the current file
        self._max_before: tuple[int, int] | None = None  # the newest row of the earlier files

    def next_file(self) -> None:
        """The following batches are another file's (its order is judged on its own)."""
        if self._file_max is not None:
            self._max_before = max(self._max_before or self._file_max, self._file_max)
        self._file_last = self._file_max = None

    def apply(self, trades: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``trades`` (``TRADE_SCHEMA`` columns, source order) the policies keep."""
        report = self.report
        report.rows_read += trades.height
        kept = trades.filter(pl.col("base_qty") > 0)
        report.drop("zero_quantity", trades.height - kept.height)
        if self.start is not None or self.end is not None:
            inside = pl.lit(True)
            if self.start is not None:
                inside = inside & (pl.col("exchange_ts") >= self.start)
            if self.end is not None:
                inside = inside & (pl.col("exchange_ts") < self.end)
            before = kept.height
            kept = kept.filter(inside)
            report.drop("outside_period", before - kept.height)
        if kept["trade_id"].null_count():
            raise ValueError("trades without a trade id cannot be deduplicated")
        keep = self._first_seen(kept) if self.keys is None else self._first_keys(kept)
        if not keep.all():
            before = kept.height
            kept = kept.filter(pl.Series(keep))
            report.drop("duplicate_id", before - kept.height)
        kept = kept.drop(KEY_COLUMNS, strict=False)
        kept = kept.select([column(kept, name) for name in TRADE_SCHEMA])
        self._count_descents(kept)
        return kept

    def _first_keys(self, kept: pl.DataFrame) -> np.ndarray:
        """True for the rows whose string-id key no earlier row of the same UTC day had."""
        assert self.keys is not None
        day = (pl.col("exchange_ts").dt.epoch("us") // DAY_US).alias("_day")
        keyed = kept.select(day, *KEY_COLUMNS)
        keep = keyed.select(pl.struct(keyed.columns).is_first_distinct()).to_series().to_numpy()
        days, hi, lo = (keyed[c].to_numpy() for c in keyed.columns)
        for value in np.unique(days[keep]):
            rows = np.flatnonzero(keep & (days == value))
            keep[rows] = self.keys.add(int(value), hi[rows], lo[rows])
        return keep

    def _first_seen(self, kept: pl.DataFrame) -> np.ndarray:
        """True for the rows whose id no earlier row (this batch or before) had; marks them.

        Runs of ascending ids (each id once) go to the bitmap one after the other, so a batch
        made of a few ordered runs needs no hashing; many short runs are hashed first.
        """
        ids = kept["trade_id"].to_numpy()
        starts = np.flatnonzero(ids[1:] <= ids[:-1]) + 1
        if starts.size <= MAX_RUNS:
            return np.concatenate([self.seen.add(run) for run in np.split(ids, starts)])
        keep = kept.select(pl.col("trade_id").is_first_distinct()).to_series().to_numpy()
        keep[keep] = self.seen.add(ids[keep])
        return keep

    def _count_descents(self, kept: pl.DataFrame) -> None:
        """Rows smaller than the row kept before them (also across batches)."""
        if kept.is_empty():
            return
        ts = kept["exchange_ts"].to_physical().to_numpy()
        ids = kept["trade_id"].to_numpy()
        if self._last is not None:
            ts = np.r_[self._last[0], ts]
            ids = np.r_[self._last[1], ids]
        lower = (ts[1:] < ts[:-1]) | ((ts[1:] == ts[:-1]) & (ids[1:] < ids[:-1]))
        self.descents += int(lower.sum())
        self._last = (int(ts[-1]), int(ids[-1]))
        if self.newest_first:
            self._count_disorder(kept)

    def _count_disorder(self, kept: pl.DataFrame) -> None:
        """Rows out of a newest-first file's order: larger than the row before them in the file,
        or smaller than the newest trade of an earlier file."""
        ts = kept["exchange_ts"].to_physical().to_numpy()
        ids = kept["trade_id"].to_numpy()
        prev_ts, prev_ids = np.r_[0, ts[:-1]], np.r_[0, ids[:-1]]
        if self._file_last is not None:
            prev_ts[0], prev_ids[0] = self._file_last
        higher = (ts > prev_ts) | ((ts == prev_ts) & (ids > prev_ids))
        if self._file_last is None:
            higher[0] = False  # the file's first row
        if self._max_before is not None:
            top_ts, top_id = self._max_before
            higher |= (ts < top_ts) | ((ts == top_ts) & (ids < top_id))
        self.disorder += int(higher.sum())
        self._file_last = (int(ts[-1]), int(ids[-1]))
        newest = int(ts.max())
        batch_max = (newest, int(ids[ts == newest].max()))
        self._file_max = max(self._file_max or batch_max, batch_max)

    def finish(self) -> None:
        """Count the reordered rows and describe the defects repaired (once, at the end);
        refuse string ids kept on two different UTC days."""
        if self.keys is not None:
            count, examples = self.keys.repeated_across_days()
            self.close()
            if count:
                listed = "; ".join(
                    f"{key} on {[str(day_of(d)) for d in days]}" for key, days in examples
                )
                raise ArchiveDefectError(
                    f"{self.report.exchange} {self.report.symbol}: {count} trade ids appear on "
                    f"more than one UTC day with different times, e.g. {listed}"
                )
        report = self.report
        if self.newest_first:
            report.rows_reordered += self.disorder
            if self.disorder:
                report.defects.append(
                    f"{self.disorder} rows out of the venue's newest-first file order; sorted"
                )
        else:
            report.rows_reordered += self.descents
            if self.descents:
                report.defects.append(
                    f"{self.descents} rows out of (exchange_ts, trade_id) order; sorted"
                )
        if zero := report.rows_dropped.get("zero_quantity"):
            report.defects.append(f"{zero} zero-quantity rows; dropped")
        if duplicates := report.rows_dropped.get("duplicate_id"):
            report.defects.append(f"{duplicates} duplicate trade ids; dropped")

    def close(self) -> None:
        """Remove the string-id keys spilled to disk."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = self.keys = None


def day_of(day: int) -> date:
    """The date of ``day`` days since the epoch."""
    return date(1970, 1, 1) + timedelta(days=day)


def sort_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """``trades`` sorted by ``(exchange_ts, trade_id)`` in ``TRADE_SCHEMA`` (its order, dtypes).

    Ids mostly grow with time: sorted by id alone with the times then in order, that is the
    order (a quick single-key sort); else the two keys are sorted.
    """
    ordered = trades.sort("trade_id")
    if not ordered["exchange_ts"].is_sorted():
        ordered = trades.sort("exchange_ts", "trade_id")
    return ordered.select([column(ordered, name) for name in TRADE_SCHEMA])


def column(trades: pl.DataFrame, name: str) -> pl.Expr:
    """Column ``name`` of ``trades`` in its ``TRADE_SCHEMA`` dtype; the fill ids (optional
    for a source) null when absent."""
    dtype = TRADE_SCHEMA[name]
    if name in FILL_ID_COLUMNS and name not in trades.columns:
        return pl.lit(None, dtype=dtype).alias(name)
    return pl.col(name).cast(dtype)


def clean_trades(
    trades: pl.DataFrame,
    report: FetchReport,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """Apply the row policies above to trades in source order; fill the report's row fields.

    ``trades`` has the ``TRADE_SCHEMA`` columns; rows with a zero quantity may still be there.
    The same :class:`RowPolicies` the streaming ingestion applies batch by batch, in one batch.
    """
    policies = RowPolicies(report, start, end, string_ids=KEY_COLUMNS[0] in trades.columns)
    try:
        kept = sort_trades(policies.apply(trades))
        policies.finish()
    finally:
        policies.close()
    if kept.height:
        report.first_trade = kept["exchange_ts"][0]
        report.last_trade = kept["exchange_ts"][-1]
    return kept


# Days a daily file may still be missing because the archive has not caught up yet.
PUBLICATION_GRACE_DAYS = 3


def month_start(month: date) -> date:
    """The first day of ``month`` (which must already be one)."""
    if month.day != 1:
        raise ValueError(f"month must be the first day of a month, got {month}")
    return month


def next_month(month: date) -> date:
    """The first day of the month after ``month``."""
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def utc_midnight(day: date) -> datetime:
    """00:00 UTC of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of the UTC calendar month that begins on ``month``."""
    return utc_midnight(month), utc_midnight(next_month(month))


def days_between(start: date, stop: date) -> list[date]:
    """Every day of ``[start, stop)``."""
    return [start + timedelta(days=n) for n in range((stop - start).days)]


def today_utc() -> date:
    """The current UTC date."""
    return datetime.now(UTC).date()


def classify_absent(
    wanted: list[date], present: set[date], today: date, what: str
) -> tuple[list[date], list[date]]:
    """Split absent daily files into (trailing not-yet-published, missing inside the range).

    A file absent after the last present one is *not published yet* when it is recent
    (within ``PUBLICATION_GRACE_DAYS`` of ``today``), else it counts as missing; a file absent
    before a present one is missing. Raises :class:`NotPublishedError` when nothing is out yet.
    """
    last_present = max(present, default=None)
    trailing = [
        d for d in wanted if d not in present and (last_present is None or d > last_present)
    ]
    recent = today - timedelta(days=PUBLICATION_GRACE_DAYS)
    not_yet = [d for d in trailing if d >= recent]
    missing = [d for d in wanted if d not in present and d not in not_yet]
    if last_present is None and not_yet:
        raise NotPublishedError(f"{what}: no file published yet for {wanted[0]}..{wanted[-1]}")
    return not_yet, missing
