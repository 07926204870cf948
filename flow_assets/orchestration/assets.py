"""The assets: raw trades -> flow bars (10 intervals) -> a daily cross-exchange summary.

Thin wrappers: each asset resolves its partition, calls the sources, the maths and the store,
and reports what it did as metadata. Nothing is written before it has been validated.
"""

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from pandera.errors import SchemaErrors

from flow_assets.metrics import ALL_INTERVALS, BAR_SCHEMA, FLOW_FIELDS, FlowBarsEngine
from flow_assets.metrics.intervals import INTERVAL_MICROS
from flow_assets.metrics.summary import daily_flow_summary
from flow_assets.orchestration.partitions import FlowPartitions
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.quality import reconcile, source_totals, upstream_defects
from flow_assets.sources.report import month_bounds
from flow_assets.store import ObjectStore, flow_key, summary_key, trades_key
from flow_assets.validation import validate_bars, validate_trades

RAW_TRADES = dg.AssetKey("raw_trades")
SUMMARY = dg.AssetKey("daily_flow_summary")
REPORT_METADATA = "flow_assets/report"
SOURCE_VERSION_METADATA = "flow_assets/source_version"
CODE_VERSION = "flow-bars-1"
ONE_PARTITION_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
BACKFILL_TAG = "dagster/backfill"


def flow_asset_key(interval: str) -> dg.AssetKey:
    """Asset key of the flow bars of one interval, e.g. ``flow_bars_1m``."""
    return dg.AssetKey(f"flow_bars_{interval}")


@dataclass(frozen=True)
class FlowSettings:
    """Rolling-field settings (the spec's W and k) and how much history feeds them."""

    window: int = 60
    horizon: int = 5

    @property
    def history_months(self) -> int:
        """Previous months of trades needed so the longest interval (1d) is continuous."""
        reach = (self.window + self.horizon) * timedelta(microseconds=INTERVAL_MICROS["1d"])
        return math.ceil(reach / timedelta(days=28))


def _previous_month(month: date) -> date:
    return (month.replace(day=1) - timedelta(days=1)).replace(day=1)


def _version(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _schema_metadata(schema: dict[str, pl.DataType]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in schema.items()])


def _preview(frame: pl.DataFrame, columns: list[str], rows: int = 5) -> dg.MetadataValue:
    """A markdown table of the first bars that have trades (or the first bars)."""
    active = frame.filter((pl.col("taker_buy_count") + pl.col("taker_sell_count")) > 0)
    sample = (active if active.height else frame).head(rows).select(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in sample.iter_rows():
        cells = [f"{v:.6g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _column_lineage(timestamp: str) -> dg.TableColumnLineage:
    """Which raw-trade columns each flow field is computed from."""
    time_column = "exchange_ts" if timestamp == "exchange" else "arrival_ts"

    def deps(*columns: str) -> list[dg.TableColumnDep]:
        return [dg.TableColumnDep(RAW_TRADES, c) for c in (time_column, *columns)]

    lineage = {"time": deps()}
    for name in FLOW_FIELDS:
        if name == "flow_toxicity_score":
            lineage[name] = deps("price", "trade_id", "notional", "is_taker_buy")
        elif name.endswith("order_volume") or "notional" in name or "order_percentage" in name:
            lineage[name] = deps("notional", "is_taker_buy")
        elif "count" in name:
            lineage[name] = deps("trade_id", "is_taker_buy")
        else:
            lineage[name] = deps("base_qty", "is_taker_buy")
    return dg.TableColumnLineage(lineage)


CHUNK_ROWS = 2_000_000  # a month of more trades than this is fed to the engine day by day


def _chunks(trades: pl.LazyFrame, start: datetime, end: datetime) -> Iterator[pl.LazyFrame]:
    """The trades of ``[start, end)``: whole when small, else one UTC day at a time."""
    in_range = pl.col("exchange_ts").is_between
    if trades.select(pl.len()).collect().item() <= CHUNK_ROWS:
        yield trades.filter(in_range(start, end, closed="left"))
        return
    day = start
    while day < end:
        following = min(day + timedelta(days=1), end)
        yield trades.filter(in_range(day, following, closed="left"))
        day = following


def _failure_cases(error: SchemaErrors, limit: int = 20) -> dict[str, Any]:
    cases = error.failure_cases
    return {
        "failures": len(cases),
        "failure_cases": dg.MetadataValue.md(
            "\n".join(
                f"- `{r['check']}` on `{r['column']}`: {r['failure_case']}"
                for r in cases.head(limit).select("check", "column", "failure_case").to_dicts()
            )
        ),
    }


def build_assets(partitions: FlowPartitions, settings: FlowSettings) -> list[Any]:
    """The asset definitions for the instruments of ``partitions``."""
    instrument_month = partitions.instrument_month

    @dg.asset(
        key=RAW_TRADES,
        partitions_def=instrument_month,
        group_name="flow",
        code_version=CODE_VERSION,
        backfill_policy=ONE_PARTITION_PER_RUN,
        check_specs=[
            dg.AssetCheckSpec(
                "upstream_defects",
                asset=RAW_TRADES,
                blocking=True,
                description="Days on one side only or missing inside the month block the bars; "
                "rows the source repaired are a warning.",
            )
        ],
        kinds={"polars", "parquet"},
        description="One month of normalized trades of one instrument, from the exchange "
        "archive (checksums verified), as Parquet in the store.",
    )
    def raw_trades(
        context: dg.AssetExecutionContext, archives: ArchiveSources, store: FlowStore
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        entry, month = partitions.resolve(context.partition_key)
        fetched = archives.fetch(entry, month)
        trades = validate_trades(fetched.trades)
        report = fetched.report.to_metadata()
        source_version = _version(
            entry.key, month, [(f["name"], f["sha256"]) for f in report["files"]]
        )
        written = store.open().write_parquet(
            trades_key(entry.exchange, entry.symbol, month),
            trades,
            metadata={
                REPORT_METADATA: json.dumps(report),
                SOURCE_VERSION_METADATA: source_version,
            },
        )
        context.log.info(f"{entry.key} {month:%Y-%m}: {trades.height} trades -> {written.uri}")
        yield dg.MaterializeResult(
            asset_key=RAW_TRADES,
            data_version=dg.DataVersion(source_version),
            metadata={
                "dagster/row_count": trades.height,
                "dagster/uri": written.uri,
                "dagster/column_schema": _schema_metadata(dict(trades.schema)),
                "rows_read": report["rows_read"],
                "rows_dropped": dg.MetadataValue.json(report["rows_dropped"]),
                "source_files": dg.MetadataValue.json(report["files"]),
                "first_trade": str(report["first_trade"]),
                "last_trade": str(report["last_trade"]),
                "complete": report["complete"],
                "covered_until": str(report["end"]),
                "sha256": written.sha256,
            },
        )
        severity, findings = upstream_defects(trades, report)
        yield dg.AssetCheckResult(
            asset_key=RAW_TRADES,
            check_name="upstream_defects",
            passed=severity == "ok",
            severity=dg.AssetCheckSeverity.ERROR
            if severity == "error"
            else dg.AssetCheckSeverity.WARN,
            metadata=findings,
        )

    history_mapping = dg.MultiPartitionMapping(
        {
            "instrument": dg.DimensionPartitionMapping("instrument", dg.IdentityPartitionMapping()),
            "month": dg.DimensionPartitionMapping(
                "month",
                dg.TimeWindowPartitionMapping(
                    start_offset=-settings.history_months,
                    allow_nonexistent_upstream_partitions=True,
                ),
            ),
        }
    )
    bar_specs = [
        dg.AssetSpec(
            flow_asset_key(interval),
            group_name="flow",
            deps=[dg.AssetDep(RAW_TRADES, partition_mapping=history_mapping)],
            skippable=True,
            code_version=CODE_VERSION,
            kinds={"polars", "parquet"},
            description=f"{interval} flow bars (time + 36 fields) of one instrument-month, one "
            "Parquet file per timestamp source.",
        )
        for interval in ALL_INTERVALS
    ]
    bar_checks = [
        spec
        for interval in ALL_INTERVALS
        for spec in (
            dg.AssetCheckSpec(
                "bars_valid",
                asset=flow_asset_key(interval),
                blocking=True,
                description="pandera: dtypes, nulls, ranges and the spec's invariants; runs "
                "before anything is written.",
            ),
            dg.AssetCheckSpec(
                "nothing_lost",
                asset=flow_asset_key(interval),
                blocking=True,
                description="Trades in the month = counts in the bars; volumes sum to the source.",
            ),
        )
    ]

    @dg.multi_asset(
        name="flow_bars",
        specs=bar_specs,
        check_specs=bar_checks,
        partitions_def=instrument_month,
        backfill_policy=ONE_PARTITION_PER_RUN,
        can_subset=True,  # selecting some intervals computes only those
    )
    def flow_bars(
        context: dg.AssetExecutionContext, store: FlowStore
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        entry, month = partitions.resolve(context.partition_key)
        intervals = [i for i in ALL_INTERVALS if flow_asset_key(i) in context.selected_asset_keys]
        objects = store.open()
        current_key = trades_key(entry.exchange, entry.symbol, month)
        if not objects.exists(current_key):
            missing = f"raw trades of {entry.key} {month:%Y-%m} are not materialized yet"
            if context.run.tags.get(BACKFILL_TAG):
                # A backfill of earlier months reaches this one through the history dependency;
                # its own month is not part of it yet: nothing to compute, nothing written.
                context.log.warning(f"{missing}: skipped in this backfill, nothing written")
                return
            raise dg.Failure(missing)
        current_metadata = objects.read_parquet_metadata(current_key)
        report = json.loads(current_metadata[REPORT_METADATA])
        start, end = month_bounds(month)
        if not report["complete"] and report["end"]:
            end = min(end, datetime.fromisoformat(report["end"]))
        if end <= start:
            raise dg.Failure(f"{entry.key} {month:%Y-%m}: no complete day of trades yet")

        history = []
        previous = month
        for _ in range(settings.history_months):
            previous = _previous_month(previous)
            key = trades_key(entry.exchange, entry.symbol, previous)
            if previous >= entry.start and objects.exists(key):
                history.insert(0, (previous, key))
        if len(history) < settings.history_months:
            context.log.info(f"{len(history)} month(s) of history: the first bars warm up")
        months = [*history, (month, current_key)]
        versions = [
            objects.read_parquet_metadata(k)[SOURCE_VERSION_METADATA] for _, k in history
        ] + [current_metadata[SOURCE_VERSION_METADATA]]

        engines = {
            timestamp: FlowBarsEngine(
                start,
                end,
                intervals=intervals,
                timestamp=timestamp,
                window=settings.window,
                horizon=settings.horizon,
            )
            for timestamp in entry.timestamps
        }
        scans = [objects.scan_parquet(key) for _, key in months]
        for (m, _), scan in zip(months, scans, strict=True):
            first, last = month_bounds(m)
            for chunk in _chunks(scan, first, min(last, end)):
                trades = chunk.collect()  # read once, binned by every timestamp source
                for engine in engines.values():
                    engine.add(trades)
        results: dict[str, dict[str, pl.DataFrame]] = {}
        totals: dict[str, dict[str, float | int]] = {}
        for timestamp, engine in engines.items():
            results[timestamp] = engine.finish()
            totals[timestamp] = source_totals(pl.concat(scans), start, end, timestamp)
            context.log.info(f"{timestamp}: {engine.trades_in_range} trades binned")

        failed = False
        check_results = []
        for interval in intervals:
            asset_key = flow_asset_key(interval)
            errors: dict[str, dict[str, Any]] = {}
            findings: dict[str, dict[str, Any]] = {}
            unreconciled: list[str] = []
            for timestamp, bars in results.items():
                try:
                    validate_bars(bars[interval], interval)
                except SchemaErrors as error:
                    errors[timestamp] = _failure_cases(error)
                passed, findings[timestamp] = reconcile(bars[interval], totals[timestamp])
                if not passed:
                    unreconciled.append(timestamp)
            failed |= bool(errors or unreconciled)
            check_results.append(
                dg.AssetCheckResult(
                    asset_key=asset_key,
                    check_name="bars_valid",
                    passed=not errors,
                    metadata={
                        f"{ts}_{name}": value
                        for ts, found in errors.items()
                        for name, value in found.items()
                    },
                )
            )
            check_results.append(
                dg.AssetCheckResult(
                    asset_key=asset_key,
                    check_name="nothing_lost",
                    passed=not unreconciled,
                    metadata={
                        **{ts: dg.MetadataValue.json(found) for ts, found in findings.items()},
                        "unreconciled_timestamps": dg.MetadataValue.json(unreconciled),
                    },
                )
            )
        yield from check_results
        if failed:
            raise dg.Failure(
                f"{entry.key} {month:%Y-%m}: flow bars failed their checks; nothing was "
                "published (see the asset checks for the failure cases)"
            )

        settings_metadata = {
            "window": settings.window,
            "horizon": settings.horizon,
            "history_months_used": len(history),
        }
        data_version = _version(versions, settings_metadata, CODE_VERSION)
        for interval in intervals:
            uris = {}
            for timestamp, bars in results.items():
                written = objects.write_parquet(
                    flow_key(timestamp, entry.exchange, interval, entry.symbol, month),
                    bars[interval],
                    metadata={
                        "flow_assets/settings": json.dumps(settings_metadata),
                        "flow_assets/source_versions": json.dumps(versions),
                        "flow_assets/covered_until": end.isoformat(),
                    },
                )
                uris[timestamp] = written.uri
            exchange_bars = results["exchange"][interval]
            yield dg.MaterializeResult(
                asset_key=flow_asset_key(interval),
                data_version=dg.DataVersion(data_version),
                metadata={
                    "dagster/row_count": exchange_bars.height,
                    "dagster/uri": uris["exchange"],
                    "dagster/column_schema": _schema_metadata(BAR_SCHEMA),
                    "dagster/column_lineage": _column_lineage("exchange"),
                    "paths": dg.MetadataValue.json(uris),
                    "trades_in": totals["exchange"]["trades"],
                    "trades_dropped_at_source": dg.MetadataValue.json(report["rows_dropped"]),
                    "source_files": dg.MetadataValue.json(report["files"]),
                    "settings": dg.MetadataValue.json(settings_metadata),
                    "covered_until": end.isoformat(),
                    "preview": _preview(
                        exchange_bars,
                        ["time", "taker_buy_volume", "taker_sell_volume", "flow_toxicity_score"],
                    ),
                },
            )

    @dg.asset(
        key=SUMMARY,
        partitions_def=partitions.months,
        group_name="analytics",
        deps=[
            dg.AssetDep(
                flow_asset_key("1d"),
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="month"
                ),
            )
        ],
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"polars", "parquet"},
        description="Per day and base asset: taker buy/sell notional summed over exchanges, "
        "net flow, buy share and large-order share, from the 1d flow bars.",
    )
    def daily_flow_summary_asset(
        context: dg.AssetExecutionContext, store: FlowStore
    ) -> dg.MaterializeResult:
        month = date.fromisoformat(context.partition_key)
        objects = store.open()
        found, missing = _daily_bars(objects, partitions, month)
        if not found:
            raise dg.Failure(f"no 1d flow bars are materialized for {month:%Y-%m} yet")
        summary = daily_flow_summary(found)
        written = objects.write_parquet(summary_key("daily_flow", month), summary)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": summary.height,
                "dagster/uri": written.uri,
                "dagster/column_schema": _schema_metadata(dict(summary.schema)),
                "instruments_used": dg.MetadataValue.json(
                    [f"{exchange}:{base}" for exchange, base, _ in found]
                ),
                "instruments_missing": dg.MetadataValue.json(missing),
            }
        )

    return [raw_trades, flow_bars, daily_flow_summary_asset]


def _daily_bars(
    objects: ObjectStore, partitions: FlowPartitions, month: date
) -> tuple[list[tuple[str, str, pl.DataFrame]], list[str]]:
    """The 1d exchange-time bars of every instrument for ``month`` that exist, and the missing."""
    found, missing = [], []
    for entry in partitions.entries:
        if month < entry.start:
            continue
        key = flow_key("exchange", entry.exchange, "1d", entry.symbol, month)
        if objects.exists(key):
            found.append((entry.exchange, entry.base, objects.read_parquet(key)))
        else:
            missing.append(entry.key)
    return found, missing
