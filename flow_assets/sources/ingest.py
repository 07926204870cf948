"""Streaming ingestion: trades in source order -> one sorted Parquet file, never the whole month.

:class:`TradeSink` takes trades batch by batch in source order (a CSV chunk at a time) and applies
the row policies of :mod:`flow_assets.sources.report` (:class:`RowPolicies`; duplicate ids are
known across the whole month through a bitmap of the ids kept, reordered rows are counted with
the previous key carried over). While the kept rows come in ``(exchange_ts, trade_id)`` order, the
usual case, they go straight into row groups, encoded by a background thread. From the first row
out of order on, the rows (those already written included) are spilled to one LZ4 Arrow IPC file
per UTC day (record batches of one hour each), and ``commit`` writes the days in order: a day
whose rows came in order is copied through; an unordered day is sorted in slices of whole hours
(whole minutes for an hour busier than that) of at most ``SORT_ROWS`` rows, from per-minute
counts kept while spilling; each slice reads back only its hours' batches.

The file: one Parquet file in ``TRADE_SCHEMA`` (its columns, order and dtypes), zstd, column
statistics, sorted by ``(exchange_ts, trade_id)``; row groups of at most ``ROW_GROUP_ROWS`` rows,
each inside one UTC day, so a reader filtering a day reads only that day's row groups.

Memory holds a few CSV chunks, a few row groups and one sort slice. ``dest`` appears only
complete (written as ``<dest>.part``, then renamed); on any error no new file is left.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.sources.report import FetchReport, FetchResult, RowPolicies, sort_trades

ROW_GROUP_ROWS = 1_000_000
SORT_ROWS = 2_000_000
MAX_OPEN_SPILLS = 64
MAX_HOUR_RUNS = 256  # runs of one hour in a batch spilled as they come (more: grouped first)
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
HOURS = 24
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ARROW_SCHEMA = pl.DataFrame(schema=TRADE_SCHEMA).to_arrow().schema
_SPILL_OPTIONS = ipc.IpcWriteOptions(compression="lz4")
# zstd, statistics, sorted by (exchange_ts, trade_id); sorted integers delta-encoded, a
# dictionary only where values repeat (prices and sizes): faster to write and smaller.
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "write_statistics": True,
    "use_dictionary": ["price", "base_qty"],
    "column_encoding": {"exchange_ts": "DELTA_BINARY_PACKED", "trade_id": "DELTA_BINARY_PACKED"},
    "sorting_columns": [pq.SortingColumn(0), pq.SortingColumn(2)],
}

Progress = Callable[[str], None]


def day_date(day: int) -> date:
    """The date of ``day`` days since the epoch."""
    return (EPOCH + timedelta(days=day)).date()


def _keys(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``exchange_ts`` (µs since the epoch) and ``trade_id`` as numpy arrays."""
    return frame["exchange_ts"].to_physical().to_numpy(), frame["trade_id"].to_numpy()


def _ranges(counts: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Ranges ``[low, high)`` of indexes, from a nonzero count to a nonzero count, whose counts
    add up to at most ``limit`` each; a single bigger count is a range of its own."""
    ranges: list[tuple[int, int]] = []
    low, last, total = -1, -1, 0
    for index, count in enumerate(counts.tolist()):
        if not count:
            continue
        if low >= 0 and total + count > limit:
            ranges.append((low, last + 1))
            low = -1
        if low < 0:
            low, total = index, 0
        total += count
        last = index
    if low >= 0:
        ranges.append((low, last + 1))
    return ranges


class _DaySpill:
    """One UTC day's kept trades on disk, with their count, order and per-minute counts.

    Rows come an hour at a time (of one batch, in source order) and are written as a record
    batch of that hour (Arrow IPC file format, read back by batch index), so the hours of a sort
    slice are read back alone. ``ordered``: the rows, in the order written, are sorted.
    """

    def __init__(self, day: int, folder: Path) -> None:
        self.day = day
        self.start = EPOCH + timedelta(days=day)
        self.folder = folder
        self.segments: list[Path] = []
        self.writer: ipc.RecordBatchFileWriter | None = None
        self.batches = 0  # record batches in the open segment
        self.hours: list[list[tuple[int, int]]] = [[] for _ in range(HOURS)]  # (segment, batch)
        self.rows = 0
        self.ordered = True
        self.last: tuple[int, int] | None = None
        self.minutes = np.zeros((HOURS, 60), dtype=np.int64)

    def append(self, hour: int, part: pl.DataFrame, ts: np.ndarray, ids: np.ndarray) -> None:
        """Add rows of ``hour`` of this day, in source order."""
        if self.ordered:
            if self.last is not None:
                ts, ids = np.r_[self.last[0], ts], np.r_[self.last[1], ids]
            lower = (ts[1:] < ts[:-1]) | ((ts[1:] == ts[:-1]) & (ids[1:] < ids[:-1]))
            self.ordered = not lower.any()
        self.last = (int(ts[-1]), int(ids[-1]))
        minute = (ts[-part.height :] - self.day * DAY_US) // MINUTE_US % 60
        self.minutes[hour] += np.bincount(minute, minlength=60)
        if self.writer is None:
            path = self.folder / f"{self.day}-{len(self.segments)}.arrow"
            self.segments.append(path)
            self.writer = ipc.new_file(str(path), ARROW_SCHEMA, options=_SPILL_OPTIONS)
            self.batches = 0
        for batch in part.to_arrow().cast(ARROW_SCHEMA).to_batches():
            self.writer.write_batch(batch)
            self.hours[hour].append((len(self.segments) - 1, self.batches))
            self.batches += 1
        self.rows += part.height

    def close(self) -> None:
        """Close the open segment (the next append starts a new one)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def read(self, hours: range | None = None) -> Iterator[pa.RecordBatch]:
        """The spilled record batches of ``hours`` (default: all, in the order written)."""
        self.close()
        files: dict[int, pa.OSFile] = {}
        readers: dict[int, ipc.RecordBatchFileReader] = {}

        def reader(segment: int) -> ipc.RecordBatchFileReader:
            if segment not in readers:
                files[segment] = pa.OSFile(str(self.segments[segment]))
                readers[segment] = ipc.open_file(files[segment])
            return readers[segment]

        try:
            if hours is None:
                for segment in range(len(self.segments)):
                    for batch in range(reader(segment).num_record_batches):
                        yield reader(segment).get_batch(batch)
            else:
                for segment, batch in (place for hour in hours for place in self.hours[hour]):
                    yield reader(segment).get_batch(batch)
        finally:
            for file in files.values():
                file.close()

    def _frame(self, hours: range) -> pl.DataFrame:
        return pl.from_arrow(pa.Table.from_batches(self.read(hours), ARROW_SCHEMA))  # type: ignore[return-value]

    def sorted_slices(self, limit: int) -> Iterator[pl.DataFrame]:
        """The day sorted, in slices of whole hours, or of whole minutes of a busy hour, of at
        most ``limit`` rows each (a busier single minute alone)."""
        for low, high in _ranges(self.minutes.sum(axis=1), limit):
            if self.minutes[low:high].sum() <= limit:
                yield sort_trades(self._frame(range(low, high)))
                continue
            at = self.start + timedelta(hours=low)
            for first, stop in _ranges(self.minutes[low], limit):
                begin, end = at + timedelta(minutes=first), at + timedelta(minutes=stop)
                inside = pl.col("exchange_ts").is_between(begin, end, closed="left")
                parts = [pl.from_arrow(b).filter(inside) for b in self.read(range(low, high))]
                yield sort_trades(pl.concat(parts))  # type: ignore[arg-type]


class _RowGroups:
    """Sorted trades appended to a Parquet file in row groups that end with each day.

    Encoding and compression run in a background thread (at most two row groups queued), so the
    reading and parsing of the next rows go on meanwhile.
    """

    def __init__(self, path: Path, progress: Progress | None) -> None:
        self.writer = pq.ParquetWriter(str(path), ARROW_SCHEMA, **PARQUET_OPTIONS)
        self.progress = progress
        self.pending: list[pa.Table] = []
        self.count = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.day: int | None = None
        self.day_rows = 0
        self.days: list[date] = []
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="parquet-writer", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.writer.write_table(table, row_group_size=table.num_rows)
                except BaseException as exc:  # raised again by the next add or close
                    self._error = exc

    def add(self, trades: pl.DataFrame, day: int) -> None:
        """Append sorted trades of UTC ``day`` (days since the epoch) that follow all before."""
        if trades.is_empty():
            return
        if day != self.day:
            self.end_day()
            self.day = day
        if self.first is None:
            self.first = trades["exchange_ts"][0]
        self.last = trades["exchange_ts"][-1]
        self.pending.append(trades.to_arrow().cast(ARROW_SCHEMA))
        self.count += trades.height
        self.day_rows += trades.height
        while self.count >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def end_day(self) -> None:
        """Close the current row group: the next rows belong to a later day."""
        if self.count:
            self._flush(self.count)
        if self.day is not None and self.day_rows:
            written = day_date(self.day)
            self.days.append(written)
            if self.progress is not None:
                self.progress(f"{written}: {self.day_rows:,} trades written")
        self.day_rows = 0

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending)
        if self._error is not None:
            raise self._error
        self._queue.put(table.slice(0, rows))
        rest = table.slice(rows)
        self.pending, self.count = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        """Write what is left and finish the file."""
        self.end_day()
        self.abort()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the writer thread and close the file (complete or not)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.writer.close()


class TradeSink:
    """Trades in source order in, one sorted day-grouped Parquet file out; a context manager.

    ``add`` the batches in source order (files in the order their concatenation means), then
    ``commit``; ``string_ids``: the batches carry string-id keys, ``newest_first``: the files are
    written newest first (``next_file`` between files; see :class:`RowPolicies`);
    leaving the ``with`` block without a commit discards everything. While the kept
    rows arrive in order they go straight into row groups; at the first row out of order, what
    was written moves to the day spills and every day is written (sorted) at the commit. The
    report gets the row counts and defects (:class:`RowPolicies`) and the first and last trade.
    """

    def __init__(
        self,
        dest: Path,
        report: FetchReport,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        progress: Progress | None = None,
        workdir: Path | None = None,
        string_ids: bool = False,
        newest_first: bool = False,
    ) -> None:
        self.dest = Path(dest)
        self.report = report
        self.policies = RowPolicies(
            report, start, end, string_ids=string_ids, workdir=workdir, newest_first=newest_first
        )
        self.progress = progress
        self.workdir = workdir
        self.part = self.dest.with_name(self.dest.name + ".part")
        self.direct: _RowGroups | None = None
        self.spilling = False
        self.folder: Path | None = None
        self.days: dict[int, _DaySpill] = {}
        self.open: list[int] = []  # days with an open spill segment, least recent first

    def next_file(self) -> None:
        """The batches that follow are the next file's (its file order is judged alone)."""
        self.policies.next_file()

    def add(self, trades: pl.DataFrame) -> None:
        """The next trades of the source (``TRADE_SCHEMA`` columns) in source order."""
        kept = self.policies.apply(trades)
        if kept.is_empty():
            return
        if not self.spilling and self.policies.descents == 0:
            self._write_in_order(kept)
            return
        if not self.spilling:
            self._start_spilling()
        self._spill(kept)

    def _write_in_order(self, kept: pl.DataFrame) -> None:
        if self.direct is None:
            self.direct = _RowGroups(self.part, self.progress)
        days = _keys(kept)[0] // DAY_US
        edges = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), kept.height]
        for low, high in pairwise(edges):
            self.direct.add(kept.slice(low, high - low), int(days[low]))

    def _start_spilling(self) -> None:
        """A row out of order: move the rows written so far to the day spills."""
        self.spilling = True
        self.folder = Path(tempfile.mkdtemp(prefix="trade-spill-", dir=self.workdir))
        if self.direct is None:
            return
        self.direct.close()
        self.direct = None
        if self.progress is not None:
            self.progress("rows out of order: spilling the days to disk, to sort each at the end")
        prefix = pq.ParquetFile(self.part)
        for group in range(prefix.num_row_groups):
            self._spill(pl.from_arrow(prefix.read_row_group(group)))  # type: ignore[arg-type]
        prefix.close()
        self.part.unlink()

    def _spill(self, kept: pl.DataFrame) -> None:
        """Spill rows an hour at a time, in source order: the runs of rows of one hour as they
        come, or, when the hours alternate often, the rows grouped by hour first."""
        ts, ids = _keys(kept)
        hours = ts // HOUR_US
        changes = np.flatnonzero(hours[1:] != hours[:-1]) + 1
        if changes.size > MAX_HOUR_RUNS:
            order = np.argsort(hours, kind="stable")
            kept, ts, ids, hours = kept[order], ts[order], ids[order], hours[order]
            changes = np.flatnonzero(hours[1:] != hours[:-1]) + 1
        edges = [0, *changes.tolist(), kept.height]
        for low, high in pairwise(edges):
            day, hour = divmod(int(hours[low]), HOURS)
            part = kept.slice(low, high - low)
            self._spill_day(day).append(hour, part, ts[low:high], ids[low:high])

    def _spill_day(self, day: int) -> _DaySpill:
        """The spill of ``day``, its segment kept open (the least recently used ones closed)."""
        assert self.folder is not None
        spill = self.days.get(day) or self.days.setdefault(day, _DaySpill(day, self.folder))
        if day in self.open:
            self.open.remove(day)
        self.open.append(day)
        while len(self.open) > MAX_OPEN_SPILLS:
            self.days[self.open.pop(0)].close()
        return spill

    def commit(self) -> list[date]:
        """Write ``dest`` (the days in order) and fill the report; the days with trades."""
        self.policies.finish()
        groups = self.direct or _RowGroups(self.part, self.progress)
        self.direct = groups
        for day in sorted(self.days):
            self._write_day(self.days.pop(day), groups)
        groups.close()
        self.direct = None
        os.replace(self.part, self.dest)
        self.report.first_trade, self.report.last_trade = groups.first, groups.last
        return groups.days

    def _write_day(self, spill: _DaySpill, groups: _RowGroups) -> None:
        if spill.ordered:
            for batch in spill.read():
                groups.add(pl.from_arrow(batch), spill.day)  # type: ignore[arg-type]
        else:
            for trades in spill.sorted_slices(SORT_ROWS):
                groups.add(trades, spill.day)
        for path in spill.segments:
            path.unlink()

    def close(self) -> None:
        """Drop the spill and any unfinished output."""
        self.policies.close()
        if self.direct is not None:
            self.direct.abort()
            self.direct = None
        for spill in self.days.values():
            spill.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.part.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_back(ingest: Callable[[Path], FetchReport]) -> FetchResult:
    """Run ``ingest`` into a temporary Parquet file and read its trades back into memory."""
    with tempfile.TemporaryDirectory(prefix="trades-") as tmp:
        dest = Path(tmp) / "trades.parquet"
        report = ingest(dest)
        return FetchResult(pl.read_parquet(dest), report)
