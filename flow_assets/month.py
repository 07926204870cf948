"""The month computation: one instrument-month from archive to published trades and bars.

Plain code over the store, the sources and the maths, with no Dagster, so it runs the same from
a notebook::

    trades = publish_trades(store, "binance-futures", symbol, month, ingest=...)
    flow = publish_flow(store, "binance-futures", symbol, month, ("exchange",))

* :func:`publish_trades` ingests the month's archive into a local Parquet file (streamed, a day
  at a time), validates it a row group at a time, grades the upstream defects (one-sided days,
  days missing inside a finished month) and publishes it only when they pass.
* :func:`publish_flow` reads that file a few hours at a time into one :class:`FlowBarsEngine` per
  timestamp source, seeded with the *carried state* the previous month published (the last
  ``W + k + 1`` bars with trades per interval, and for arrival time the trades that arrive
  after the month). Each day's bars are made once the day's trades are in, validated and
  appended to their interval's file; the totals are reconciled at the end; the bars and the
  state for the next month are committed as one unit. A check that fails publishes nothing.

Memory is bounded by one day of trades (the columns the engine reads), one day's partials and
one day's bars (the coarser intervals' few bars wait for the month's end, see ``PART_BARS``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from flow_assets.metrics import ALL_INTERVALS, FlowBarsEngine
from flow_assets.metrics.engine import state_from_frame, state_to_frame
from flow_assets.metrics.exchange_check import (
    FAILED,
    ExchangeCheck,
    ExchangeFigures,
    bar_figures,
    compare,
    fill_counts,
)
from flow_assets.metrics.schema import BAR_SCHEMA, TIMESTAMP_COLUMNS, TRADE_SCHEMA, with_fill_ids
from flow_assets.publish import Manifest, Staging, flow_file, read_manifest
from flow_assets.quality import reconcile, source_totals, upstream_defects
from flow_assets.sources.report import FetchReport, month_bounds, utc_midnight
from flow_assets.store import ObjectStore, ParquetParts, exchange_check_key
from flow_assets.validation import validate_bars, validate_trades

CODE_VERSION = "flow-bars-2"
STATE_FILE = "state"
SPILL_FILE = "spill"
TRADES_FILE = "trades"
JUDGED_INTERVALS = ("1m", "1d")  # the bars an exchange's own aggregation can judge
CHUNK_ROWS = 2_000_000  # a month of more trades than this is read CHUNK_SPAN at a time
# 4 hours: a whole number of bars of every interval up to 4h (the same partials as a day's), and
# a sixth of a busy day's trades in memory (~35 MB at 5M trades a day)
CHUNK_SPAN = timedelta(hours=4)
PART_BARS = 10_000  # an interval's bars are made (checked, written) once this many are due
PART_GROUP_ROWS = 86_400  # bars validated and written at a time (a day of 1s bars)
PREVIEW_ROWS = 5
_RECONCILED = ("taker_buy_count", "taker_sell_count", "taker_buy_volume", "taker_sell_volume")

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default log: say nothing."""


@dataclass(frozen=True)
class FlowSettings:
    """The rolling fields' settings: the spec's ``W`` (z-score window) and ``k`` (rv horizon)."""

    window: int = 60
    horizon: int = 5


class MonthNotReadyError(LookupError):
    """The month cannot be computed yet: its trades are not published."""


def previous_month(month: date) -> date:
    """The first day of the month before ``month``."""
    return (month.replace(day=1) - timedelta(days=1)).replace(day=1)


def _version(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------- trades


@dataclass
class TradesOutcome:
    """What :func:`publish_trades` did: the grading, and the manifest if it published."""

    report: dict[str, Any]
    severity: str  # "ok", "warn" or "error" (an error blocks publication)
    findings: dict[str, Any]
    rows: int
    source_version: str
    manifest: Manifest | None

    @property
    def published(self) -> bool:
        """Whether the month's trades were published."""
        return self.manifest is not None


def _row_groups(path: Path) -> Iterator[pl.DataFrame]:
    """The trades of a month file one row group (at most a day, ``ROW_GROUP_ROWS``) at a time."""
    file = pq.ParquetFile(path)
    try:
        for group in range(file.num_row_groups):
            yield pl.from_arrow(file.read_row_group(group))  # type: ignore[misc]
    finally:
        file.close()


def publish_trades(
    store: ObjectStore,
    exchange: str,
    symbol: str,
    month: date,
    ingest: Callable[[Path], FetchReport],
    *,
    log: Log = _quiet,
) -> TradesOutcome:
    """Ingest a month with ``ingest(dest)``, grade it, and publish it when nothing blocks it.

    ``ingest`` writes the month's normalized, sorted trades to ``dest`` and returns the fetch
    report (see :func:`flow_assets.sources.ingest_month`). Row groups (at most a day each) are
    validated with pandera one at a time; a one-sided day or a day missing inside a finished
    month blocks publication.
    """
    with tempfile.TemporaryDirectory(prefix="flow-assets-trades-") as tmp:
        path = Path(tmp) / "trades.parquet"
        report = ingest(path).to_metadata()
        rows = 0
        for group in _row_groups(path):  # row by row checks: a row group at a time is the same
            rows += validate_trades(group).height
        log(f"{exchange}:{symbol} {month:%Y-%m}: {rows} trades validated")
        severity, findings = upstream_defects(pl.scan_parquet(path), report)
        source_version = _version(
            exchange, symbol, month, [(f["name"], f["sha256"]) for f in report["files"]]
        )
        manifest = None
        if severity != "error":
            staging = Staging(store, "trades", exchange, symbol, month)
            staging.put_file(TRADES_FILE, path)
            manifest = staging.commit(
                {
                    "report": report,
                    "source_version": source_version,
                    "complete": report["complete"],
                    "covered_until": report["end"],
                }
            )
    return TradesOutcome(report, severity, findings, rows, source_version, manifest)


# --------------------------------------------------------------------------- flow


@dataclass
class IntervalResult:
    """One interval's bars for every timestamp source: where staged, and their checks."""

    interval: str
    rows: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, Any] = field(default_factory=dict)  # timestamp -> pandera failure cases
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreconciled: list[str] = field(default_factory=list)
    preview: pl.DataFrame | None = None  # the first exchange-time bars that have trades
    figures: pl.DataFrame | None = None  # exchange-time volumes per bar (1m, 1d: the judged)

    @property
    def passed(self) -> bool:
        """Whether the bars are valid and hold exactly the month's trades, for every source."""
        return not self.invalid and not self.unreconciled


@dataclass
class FlowOutcome:
    """What :func:`publish_flow` did: per-interval results, the history used, the manifest."""

    start: datetime
    end: datetime
    complete: bool
    history: str  # where the rolling fields' history came from, or why the month warms up
    trades_in: dict[str, int]
    intervals: dict[str, IntervalResult]
    data_version: str
    source_version: str
    manifest: Manifest | None
    exchange_check: ExchangeCheck | None = None  # None: the venue publishes no figures

    @property
    def published(self) -> bool:
        """Whether the bars were published (every check passed)."""
        return self.manifest is not None


@dataclass(frozen=True)
class CarriedState:
    """The previous month's state: per timestamp source the engine state, and spilled trades."""

    engines: dict[str, dict[str, pl.DataFrame]]
    spill: pl.DataFrame
    data_version: str


def _carried_state(
    store: ObjectStore,
    exchange: str,
    symbol: str,
    month: date,
    settings: FlowSettings,
    intervals: tuple[str, ...],
) -> tuple[CarriedState | None, str]:
    """The state the previous month published, or None and why the month warms up."""
    before = previous_month(month)
    manifest = read_manifest(store, "flow", exchange, symbol, before)
    if manifest is None:
        return None, f"warm-up: no published bars for {before:%Y-%m}"
    meta = manifest.metadata
    if not meta.get("complete") or meta.get("covered_until") != utc_midnight(month).isoformat():
        return None, f"warm-up: the bars of {before:%Y-%m} are of an incomplete month"
    wanted = {"window": settings.window, "horizon": settings.horizon, "code": CODE_VERSION}
    used = {k: meta.get(k) for k in wanted}
    if used != wanted:
        return None, f"warm-up: the state of {before:%Y-%m} was made with {used}, not {wanted}"
    if not set(intervals) <= set(meta["intervals"]):
        return None, f"warm-up: the state of {before:%Y-%m} lacks some of {list(intervals)}"
    frame = store.read_parquet(manifest.key_of(STATE_FILE))
    engines = {
        ts: state_from_frame(frame.filter(pl.col("timestamp") == ts).drop("timestamp"), intervals)
        for ts in meta["timestamps"]
    }
    spill = (
        with_fill_ids(store.read_parquet(manifest.key_of(SPILL_FILE)).lazy()).collect()
        if SPILL_FILE in manifest.files
        else pl.DataFrame(schema=TRADE_SCHEMA)
    )
    history = f"carried from {before:%Y-%m} (version {manifest.version})"
    return CarriedState(engines, spill, meta["data_version"]), history


def _chunks(
    path: Path, rows: int, timestamp: str, spill: pl.DataFrame, span: tuple[datetime, datetime]
) -> Iterator[tuple[pl.LazyFrame, list[datetime]]]:
    """The trades of a month's file (and those ``spill`` carries in) in the time order of
    ``timestamp``: those before the month first (history), then the month's whole when small,
    else ``CHUNK_SPAN`` at a time; each with the UTC midnights before which no trade follows (the
    days whose bars can be made). Lazy: only the columns the engine reads are read."""
    start, end = span
    column = pl.col(TIMESTAMP_COLUMNS[timestamp])
    scan = with_fill_ids(pl.scan_parquet(path))  # trades stored before the fill ids were kept
    if spill.height:
        scan = pl.concat([scan, spill.lazy()])
    yield scan.filter(column.is_null() | (column < start)), []  # nulls: the engine refuses them
    days = [start]
    while days[-1] < end:
        days.append(min(days[-1] + timedelta(days=1), end))
    edges = [start, end]
    while rows > CHUNK_ROWS and edges[-2] + CHUNK_SPAN < end:
        edges.insert(-1, edges[-2] + CHUNK_SPAN)
    for low, high in itertools.pairwise(edges):
        yield (
            scan.filter(column.is_between(low, high, closed="left")),
            [day for day in days if low < day <= high],
        )


def _first_active(bars: pl.DataFrame, rows: int = 5, *, fallback: bool = True) -> pl.DataFrame:
    """The first bars that have trades (or, with ``fallback``, the first bars), for a preview."""
    has_trades = (pl.col("taker_buy_count") + pl.col("taker_sell_count")) > 0
    active = bars.lazy().filter(has_trades).head(rows).collect()  # not a filtered copy first
    return active if active.height or not fallback else bars.head(rows)


class _IntervalFile:
    """One interval's bars of one timestamp source, checked and written a part at a time.

    Bars come a few days at a time and are gathered into parts of about ``PART_GROUP_ROWS``
    bars. Each part is validated (pandera) with the last bar before it, so the spacing is
    checked across parts too, then written as a row group; the bars' totals are summed part by
    part for the reconciliation with the source's. Once a part fails validation no more is
    written, and the file is staged only when every part passed and the totals reconcile
    (:meth:`finish`).
    """

    def __init__(self, result: IntervalResult, timestamp: str, workdir: Path) -> None:
        self.result, self.timestamp = result, timestamp
        self.path = workdir / f"{timestamp}-{result.interval}.parquet"
        self.file = ParquetParts(self.path, BAR_SCHEMA)
        self.pending: list[pl.DataFrame] = []
        self.last: pl.DataFrame | None = None  # the last bar of the parts before
        self.sums: list[pl.DataFrame] = []
        judged = timestamp == "exchange" and result.interval in JUDGED_INTERVALS
        self.figures: list[pl.DataFrame] | None = [] if judged else None  # for the exchange's
        self.rows = 0
        self.head = pl.DataFrame(schema=BAR_SCHEMA)  # the first bars, and the first with trades
        self.active = pl.DataFrame(schema=BAR_SCHEMA)

    def add(self, bars: pl.DataFrame) -> None:
        """The next bars of the interval, following the last ones."""
        self.pending.append(bars)
        if sum(p.height for p in self.pending) >= PART_GROUP_ROWS:
            self._part(pl.concat(self.pending))

    def _part(self, bars: pl.DataFrame) -> None:
        self.pending = []
        if not bars.height:
            return
        try:
            validate_bars(
                bars if self.last is None else pl.concat([self.last, bars]), self.result.interval
            )
        except SchemaErrors as error:
            cases = self.result.invalid.get(self.timestamp)
            found = error.failure_cases
            self.result.invalid[self.timestamp] = (
                found if cases is None else pl.concat([cases, found], how="diagonal_relaxed")
            )
        if self.timestamp not in self.result.invalid:
            self.file.write(bars)
        self.sums.append(bars.select(*_RECONCILED))
        if self.figures is not None:
            self.figures.append(bar_figures(bars))
        self.head = pl.concat([self.head, bars.head(PREVIEW_ROWS - self.head.height)])
        wanted = PREVIEW_ROWS - self.active.height
        if wanted:
            self.active = pl.concat([self.active, _first_active(bars, wanted, fallback=False)])
        self.last, self.rows = bars.tail(1), self.rows + bars.height

    def close(self) -> None:
        """Check and write the last part: the interval's bars are all in."""
        self._part(pl.concat(self.pending) if self.pending else pl.DataFrame(schema=BAR_SCHEMA))
        self.file.close()

    def finish(self, totals: dict[str, Any], staging: Staging) -> None:
        """Reconcile the month's bars with the source's totals; stage the file if all passed."""
        passed, found = reconcile(pl.concat(self.sums), totals)
        self.result.reconciliation[self.timestamp] = found
        if not passed:
            self.result.unreconciled.append(self.timestamp)
        if self.result.passed:
            name = flow_file(self.timestamp, self.result.interval)
            self.result.keys[self.timestamp] = staging.put_file(name, self.path).key
        self.path.unlink(missing_ok=True)
        self.result.rows[self.timestamp] = self.rows
        if self.timestamp == "exchange":
            self.result.preview = self.active if self.active.height else self.head
        if self.figures is not None:
            self.result.figures = pl.concat(self.figures) if self.figures else None


def _bars_of_source(
    timestamp: str,
    trades_path: Path,
    trades_rows: int,
    carried: CarriedState | None,
    span: tuple[datetime, datetime],
    settings: FlowSettings,
    staging: Staging,
    results: dict[str, IntervalResult],
    workdir: Path,
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, int]:
    """Bin one timestamp source a few hours at a time, checking and writing each day's bars as they
    are made (a day's bars in memory, not a month's); stage them; return its carry."""
    start, end = span
    engine = FlowBarsEngine(
        start,
        end,
        intervals=tuple(results),
        timestamp=timestamp,
        window=settings.window,
        horizon=settings.horizon,
    )
    spill_in = pl.DataFrame(schema=TRADE_SCHEMA)
    if carried is not None and timestamp in carried.engines:
        engine.seed(carried.engines[timestamp])
        spill_in = carried.spill if timestamp == "true" else spill_in
    files = {i: _IntervalFile(result, timestamp, workdir) for i, result in results.items()}
    for chunk, days in _chunks(trades_path, trades_rows, timestamp, spill_in, span):
        engine.add(chunk)
        for day in days:
            for interval, bars in engine.bars_before(day, at_least=PART_BARS):
                files[interval].add(bars)
    state = engine.carry()
    for interval, bars in engine.iter_bars():  # the rest, one interval at a time
        files[interval].add(bars)
        files[interval].close()
    sources = pl.concat([with_fill_ids(pl.scan_parquet(trades_path)), spill_in.lazy()])
    totals = source_totals(sources, start, end, timestamp)
    for file in files.values():
        file.finish(totals, staging)
    spill_out = pl.DataFrame(schema=TRADE_SCHEMA)
    if timestamp == "true":  # trades of this file (or carried in) that arrive after the month
        spill_out = sources.filter(pl.col(TIMESTAMP_COLUMNS["true"]) >= end).collect()
    return state, spill_out, int(totals["trades"])


def _published_trades(
    store: ObjectStore, exchange: str, symbol: str, month: date
) -> tuple[Manifest, tuple[datetime, datetime], bool]:
    """The month's published trades, the span they cover (whole days) and whether the month is
    complete; :class:`MonthNotReadyError` when there is nothing to compute bars from."""
    trades = read_manifest(store, "trades", exchange, symbol, month)
    if trades is None:
        raise MonthNotReadyError(
            f"raw trades of {exchange}:{symbol} {month:%Y-%m} are not published"
        )
    start, end = month_bounds(month)
    if trades.metadata["covered_until"]:
        end = min(end, datetime.fromisoformat(trades.metadata["covered_until"]))
    if end <= start:
        raise MonthNotReadyError(f"{exchange}:{symbol} {month:%Y-%m}: no complete day of trades")
    return trades, (start, end), bool(trades.metadata["complete"])


@dataclass(frozen=True)
class ExchangeReference:
    """The exchange's own aggregation the month's ``interval`` bars must agree with:
    ``figures(span)`` gives it (read by the caller; an :class:`ExchangeFigures` saying why
    it is unavailable when the exchange has none)."""

    interval: str
    figures: Callable[[tuple[datetime, datetime]], ExchangeFigures]


def _exchange_check(
    reference: ExchangeReference,
    result: IntervalResult,
    trades_path: Path,
    span: tuple[datetime, datetime],
) -> ExchangeCheck:
    """The judged bars (+ the underlying trades per bar) against the exchange's figures."""
    assert result.figures is not None
    start, end = span
    trades = pl.scan_parquet(trades_path).filter(
        pl.col("exchange_ts").is_between(start, end, closed="left")
    )
    ours = result.figures
    if "first_trade_id" in trades.collect_schema().names():  # else stored before ids were kept
        counts = fill_counts(trades, reference.interval).collect(engine="streaming")  # streamed
        ours = ours.join(counts, on="time", how="left").with_columns(pl.col("count").fill_null(0))
    unit = "day" if reference.interval == "1d" else "minute"
    return compare(ours, reference.figures(span), span, unit)


def _settings_metadata(settings: FlowSettings) -> dict[str, object]:
    """The settings and code a month's bars were made with (recorded with them)."""
    return {"window": settings.window, "horizon": settings.horizon, "code": CODE_VERSION}


def publish_flow(
    store: ObjectStore,
    exchange: str,
    symbol: str,
    month: date,
    timestamps: tuple[str, ...],
    settings: FlowSettings | None = None,
    *,
    intervals: tuple[str, ...] = ALL_INTERVALS,
    log: Log = _quiet,
    reference: ExchangeReference | None = None,
) -> FlowOutcome:
    """Compute, check and publish the bars of ``intervals`` (default: all) and every timestamp
    source of a month, with the state the next month starts from.

    With ``reference`` the ``reference.interval`` bars are also compared with the exchange's
    own figures: a difference beyond rounding publishes nothing; the verdict is stored
    (:func:`exchange_check_key`) whether the month passed or not.

    Raises :class:`MonthNotReadyError` when the month's trades are not published.
    """
    settings = settings or FlowSettings()
    trades, (start, end), complete = _published_trades(store, exchange, symbol, month)
    carried, history = _carried_state(store, exchange, symbol, month, settings, intervals)
    log(f"{exchange}:{symbol} {month:%Y-%m}: history {history}")

    staging = Staging(store, "flow", exchange, symbol, month)
    results = {interval: IntervalResult(interval) for interval in intervals}
    states: dict[str, pl.DataFrame] = {}
    trades_in: dict[str, int] = {}
    spill = pl.DataFrame(schema=TRADE_SCHEMA)
    with (
        store.local_copy(trades.key_of(TRADES_FILE)) as trades_path,
        tempfile.TemporaryDirectory(prefix="flow-assets-bars-") as tmp,
    ):
        for timestamp in timestamps:  # one engine at a time bounds the memory
            state, spilled, trades_in[timestamp] = _bars_of_source(
                timestamp,
                trades_path,
                trades.files[TRADES_FILE].rows,
                carried,
                (start, end),
                settings,
                staging,
                results,
                Path(tmp),
            )
            states[timestamp] = state_to_frame(state).select(
                pl.lit(timestamp).alias("timestamp"), pl.all()
            )
            spill = spilled if timestamp == "true" else spill
            log(f"{timestamp}: {trades_in[timestamp]} trades binned into {len(results)} intervals")
        source_version = trades.metadata["source_version"]
        data_version = _version(
            source_version,
            carried.data_version if carried else history,
            settings.window,
            settings.horizon,
            CODE_VERSION,
        )
        check = None
        judged = results.get(reference.interval) if reference else None
        if reference is not None and judged is not None and judged.figures is not None:
            check = _exchange_check(reference, judged, trades_path, (start, end))
            store.put_json(exchange_check_key(exchange, symbol, month), check.to_json())
            log(f"{exchange}:{symbol} {month:%Y-%m}: exchange check {check.status}")
        manifest = None
        agrees = check is None or check.status != FAILED
        if agrees and all(r.passed for r in results.values()):
            staging.write_parquet(STATE_FILE, pl.concat(list(states.values())), Path(tmp))
            if "true" in timestamps:
                staging.write_parquet(SPILL_FILE, spill, Path(tmp))
            manifest = staging.commit(
                {
                    "complete": complete,
                    "covered_until": end.isoformat(),
                    "timestamps": list(timestamps),
                    "intervals": list(intervals),
                    **_settings_metadata(settings),
                    "history": history,
                    "trades_in": trades_in,
                    "source_version": source_version,
                    "trades_version": trades.version,
                    "data_version": data_version,
                    "reconciled": check.reconciled if check else None,
                }
            )
        else:
            staging.discard()
    return FlowOutcome(
        start,
        end,
        complete,
        history,
        trades_in,
        results,
        data_version,
        source_version,
        manifest,
        check,
    )
