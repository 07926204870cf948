"""The month computation: one instrument-month from archive to published trades and bars.

Plain code over the store, the sources and the maths, with no Dagster, so it runs the same from
a notebook::

    trades = publish_trades(store, "binance-futures", symbol, month, ingest=...)
    flow = publish_flow(store, "binance-futures", symbol, month, ("exchange",))

* :func:`publish_trades` ingests the month's archive into a local Parquet file (streamed, a day
  at a time), validates it day by day, grades the upstream defects (one-sided days, days missing
  inside a finished month) and publishes it only when they pass.
* :func:`publish_flow` reads that file a day at a time into one :class:`FlowBarsEngine` per
  timestamp source, seeded with the *carried state* the previous month published (the last
  ``W + k + 1`` bars with trades per interval, and for arrival time the trades that arrive
  after the month), then validates, reconciles and stages the bars interval by interval, and
  commits the bars and the state for the next month as one unit. A check that fails publishes
  nothing.

Memory is bounded by one day of trades plus one engine's partials and one interval's bars.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
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
from flow_assets.metrics.schema import TIMESTAMP_COLUMNS, TRADE_SCHEMA, with_fill_ids
from flow_assets.publish import Manifest, Staging, flow_file, read_manifest
from flow_assets.quality import reconcile, source_totals, upstream_defects
from flow_assets.sources.report import FetchReport, month_bounds, utc_midnight
from flow_assets.store import ObjectStore, exchange_check_key
from flow_assets.validation import validate_bars, validate_trades

CODE_VERSION = "flow-bars-2"
STATE_FILE = "state"
SPILL_FILE = "spill"
TRADES_FILE = "trades"
JUDGED_INTERVALS = ("1m", "1d")  # the bars an exchange's own aggregation can judge
CHUNK_ROWS = 2_000_000  # a month of more trades than this is read one UTC day at a time

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


def _days(path: Path, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
    """The trades of a sorted month file in ``[start, end)``, one UTC day at a time."""
    scan = pl.scan_parquet(path)
    day = start
    while day < end:
        following = min(day + timedelta(days=1), end)
        yield scan.filter(pl.col("exchange_ts").is_between(day, following, closed="left")).collect()
        day = following


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
    report (see :func:`flow_assets.sources.ingest_month`). Days are validated with pandera one
    at a time; a one-sided day or a day missing inside a finished month blocks publication.
    """
    with tempfile.TemporaryDirectory(prefix="flow-assets-trades-") as tmp:
        path = Path(tmp) / "trades.parquet"
        report = ingest(path).to_metadata()
        start, end = month_bounds(month)
        rows = 0
        for day in _days(path, start, end):
            rows += validate_trades(day).height
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


def _chunks(path: Path, rows: int, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
    """The month's trades in ``[start, end)``: whole when small, else one UTC day at a time."""
    if rows <= CHUNK_ROWS:
        scan = pl.scan_parquet(path)
        yield scan.filter(pl.col("exchange_ts").is_between(start, end, closed="left")).collect()
    else:
        yield from _days(path, start, end)


def _first_active(bars: pl.DataFrame, rows: int = 5) -> pl.DataFrame:
    """The first bars that have trades (or the first bars), for a preview."""
    has_trades = (pl.col("taker_buy_count") + pl.col("taker_sell_count")) > 0
    active = bars.lazy().filter(has_trades).head(rows).collect()  # not a filtered copy first
    return active if active.height else bars.head(rows)


def _check_interval(
    result: IntervalResult, timestamp: str, bars: pl.DataFrame, totals: dict[str, Any]
) -> None:
    """Validate one interval's bars (pandera) and reconcile them with the source totals."""
    try:
        validate_bars(bars, result.interval)
    except SchemaErrors as error:
        result.invalid[timestamp] = error.failure_cases
    passed, result.reconciliation[timestamp] = reconcile(bars, totals)
    if not passed:
        result.unreconciled.append(timestamp)


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
    """Bin one timestamp source, stage its bars interval by interval; return its carry."""
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
    for chunk in _chunks(trades_path, trades_rows, start, end):
        engine.add(chunk)
    if spill_in.height:
        engine.add(spill_in)
    sources = pl.concat([with_fill_ids(pl.scan_parquet(trades_path)), spill_in.lazy()])
    totals = source_totals(sources, start, end, timestamp)
    spill_out = pl.DataFrame(schema=TRADE_SCHEMA)
    if timestamp == "true":  # trades of this file (or carried in) that arrive after the month
        spill_out = sources.filter(pl.col(TIMESTAMP_COLUMNS["true"]) >= end).collect()
    state = engine.carry()
    for interval, bars in engine.iter_bars():
        result = results[interval]
        _check_interval(result, timestamp, bars, totals)
        if result.passed:
            staged = staging.write_parquet(flow_file(timestamp, interval), bars, workdir)
            result.keys[timestamp] = staged.key
        result.rows[timestamp] = bars.height
        if timestamp == "exchange":
            result.preview = _first_active(bars)
            if interval in JUDGED_INTERVALS:
                result.figures = bar_figures(bars)
        del bars  # before the next interval is made: one interval's bars at a time
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
