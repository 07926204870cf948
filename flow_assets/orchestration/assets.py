"""The assets: raw trades -> flow bars (10 intervals) -> a daily cross-exchange summary.

Thin wrappers: each asset resolves its partition, calls the month computation
(:mod:`flow_assets.month`), and reports what it did as metadata, with its check results attached
to the materialization they judge. A month whose checks fail publishes nothing.

Each month's bars depend on the previous month's bars (the rolling fields start from the state
that month published), declared as a self-dependency: lineage shows it, a revised month makes
the following months stale, and a backfill computes an instrument's months in order.
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.metrics import ALL_INTERVALS, BAR_SCHEMA, FLOW_FIELDS, TRADE_SCHEMA
from flow_assets.metrics.summary import daily_flow_summary
from flow_assets.month import (
    CODE_VERSION,
    FlowOutcome,
    FlowSettings,
    IntervalResult,
    MonthNotReadyError,
    publish_flow,
    publish_trades,
)
from flow_assets.orchestration.partitions import FlowPartitions
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.store import ObjectStore, summary_key

RAW_TRADES = dg.AssetKey("raw_trades")
SUMMARY = dg.AssetKey("daily_flow_summary")
# No backfill policy: Dagster's default, one run per partition, tagged with its partition (so
# dagster.yaml's per-instrument run limit applies), and a self-dependent asset's partitions are
# requested only once their previous month is materialized (months in order). With
# ``multi_run(1)``, Dagster 1.13 picks the one partition a tick may request at random among the
# candidates and a backfill stalls on a month whose predecessor is not done yet.
PREVIEW_COLUMNS = ["time", "taker_buy_volume", "taker_sell_volume", "flow_toxicity_score"]


def flow_asset_key(interval: str) -> dg.AssetKey:
    """Asset key of the flow bars of one interval, e.g. ``flow_bars_1m``."""
    return dg.AssetKey(f"flow_bars_{interval}")


def _schema_metadata(schema: dict[str, pl.DataType]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in schema.items()])


def _markdown_table(frame: pl.DataFrame) -> dg.MetadataValue:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    for row in frame.iter_rows():
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


def _failure_cases(cases: pl.DataFrame, limit: int = 20) -> dict[str, Any]:
    return {
        "failures": len(cases),
        "failure_cases": dg.MetadataValue.md(
            "\n".join(
                f"- `{r['check']}` on `{r['column']}`: {r['failure_case']}"
                for r in cases.head(limit).select("check", "column", "failure_case").to_dicts()
            )
        ),
    }


def _bar_checks(result: IntervalResult) -> list[dg.AssetCheckResult]:
    """The two checks of one interval's bars (recorded on the run's partition)."""
    asset_key = flow_asset_key(result.interval)
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="bars_valid",
            passed=not result.invalid,
            metadata={
                f"{ts}_{name}": value
                for ts, cases in result.invalid.items()
                for name, value in _failure_cases(cases).items()
            },
        ),
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="nothing_lost",
            passed=not result.unreconciled,
            metadata={
                **{ts: dg.MetadataValue.json(f) for ts, f in result.reconciliation.items()},
                "unreconciled_timestamps": dg.MetadataValue.json(result.unreconciled),
            },
        ),
    ]


def _bars_materialization(
    outcome: FlowOutcome, result: IntervalResult, store: ObjectStore
) -> dg.MaterializeResult:
    """One interval's materialization, its checks attached."""
    assert outcome.manifest is not None
    manifest_uri = store.uri(outcome.manifest.key_of(flow_file("exchange", result.interval)))
    metadata: dict[str, Any] = {
        "dagster/row_count": result.rows["exchange"],
        "dagster/uri": manifest_uri,
        "dagster/column_schema": _schema_metadata(BAR_SCHEMA),
        "dagster/column_lineage": _column_lineage("exchange"),
        "paths": dg.MetadataValue.json({ts: store.uri(k) for ts, k in result.keys.items()}),
        "version": outcome.manifest.version,
        "trades_in": dg.MetadataValue.json(outcome.trades_in),
        "history": outcome.history,
        "warm_up": outcome.history.startswith("warm-up"),
        "complete": outcome.complete,
        "covered_until": outcome.end.isoformat(),
    }
    if result.preview is not None:
        metadata["preview"] = _markdown_table(result.preview.select(PREVIEW_COLUMNS))
    return dg.MaterializeResult(
        asset_key=flow_asset_key(result.interval),
        data_version=dg.DataVersion(outcome.data_version),
        metadata=metadata,
        check_results=_bar_checks(result),
    )


def build_assets(partitions: FlowPartitions, settings: FlowSettings) -> list[Any]:
    """The asset definitions for the instruments of ``partitions``."""
    return [
        raw_trades_asset(partitions),
        flow_bars_asset(partitions, settings),
        daily_flow_summary_asset(partitions),
    ]


def raw_trades_asset(partitions: FlowPartitions) -> dg.AssetsDefinition:
    """``raw_trades``: one instrument-month of checked, normalized trades."""

    @dg.asset(
        key=RAW_TRADES,
        partitions_def=partitions.instrument_month,
        group_name="flow",
        code_version="raw-trades-2",
        check_specs=[
            dg.AssetCheckSpec(
                "upstream_defects",
                asset=RAW_TRADES,
                blocking=True,
                partitions_def=partitions.instrument_month,
                description="Days on one side only or missing inside the month block "
                "publication; rows the source repaired are a warning.",
            )
        ],
        kinds={"polars", "parquet"},
        description="One month of normalized trades of one instrument, from the exchange "
        "archive (checksums verified, streamed a day at a time), as Parquet in the store.",
    )
    def raw_trades(
        context: dg.AssetExecutionContext, archives: ArchiveSources, store: FlowStore
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        entry, month = partitions.resolve(context.partition_key)
        objects = store.open()
        outcome = publish_trades(
            objects,
            entry.exchange,
            entry.symbol,
            month,
            lambda dest: archives.ingest(entry, month, dest, progress=context.log.info),
            log=context.log.info,
        )
        check = dg.AssetCheckResult(
            asset_key=RAW_TRADES,
            check_name="upstream_defects",
            passed=outcome.severity == "ok",
            severity=dg.AssetCheckSeverity.ERROR
            if outcome.severity == "error"
            else dg.AssetCheckSeverity.WARN,
            metadata=outcome.findings,
        )
        if outcome.manifest is None:
            yield check
            raise dg.Failure(
                f"{entry.key} {month:%Y-%m}: upstream defects block the month's trades; nothing "
                f"was published: {outcome.findings}"
            )
        report = outcome.report
        yield dg.MaterializeResult(
            asset_key=RAW_TRADES,
            data_version=dg.DataVersion(outcome.source_version),
            metadata={
                "dagster/row_count": outcome.rows,
                "dagster/uri": objects.uri(outcome.manifest.key_of("trades")),
                "dagster/column_schema": _schema_metadata(TRADE_SCHEMA),
                "version": outcome.manifest.version,
                "rows_read": report["rows_read"],
                "rows_dropped": dg.MetadataValue.json(report["rows_dropped"]),
                "source_files": dg.MetadataValue.json(report["files"]),
                "first_trade": str(report["first_trade"]),
                "last_trade": str(report["last_trade"]),
                "complete": report["complete"],
                "covered_until": str(report["end"]),
                "sha256": outcome.manifest.files["trades"].sha256,
            },
            check_results=[check],
        )

    return raw_trades


def flow_bars_asset(partitions: FlowPartitions, settings: FlowSettings) -> dg.AssetsDefinition:
    """``flow_bars_1s`` .. ``flow_bars_1d``: one instrument-month of bars, published whole."""
    previous_month = dg.MultiPartitionMapping(
        {
            "instrument": dg.DimensionPartitionMapping("instrument", dg.IdentityPartitionMapping()),
            "month": dg.DimensionPartitionMapping(
                "month",
                dg.TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
                ),
            ),
        }
    )
    bar_specs = [
        dg.AssetSpec(
            flow_asset_key(interval),
            group_name="flow",
            deps=[
                dg.AssetDep(RAW_TRADES),
                dg.AssetDep(flow_asset_key(interval), partition_mapping=previous_month),
            ],
            code_version=CODE_VERSION,
            kinds={"polars", "parquet"},
            description=f"{interval} flow bars (time + 36 fields) of one instrument-month, one "
            "Parquet file per timestamp source, published with the month's other intervals as "
            "one unit. The rolling fields continue from the previous month's bars.",
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
                partitions_def=partitions.instrument_month,
                description="pandera: dtypes, nulls, ranges and the spec's invariants; runs "
                "before anything is published.",
            ),
            dg.AssetCheckSpec(
                "nothing_lost",
                asset=flow_asset_key(interval),
                blocking=True,
                partitions_def=partitions.instrument_month,
                description="Trades in the month = counts in the bars; volumes sum to the source.",
            ),
        )
    ]

    @dg.multi_asset(
        name="flow_bars",
        specs=bar_specs,
        check_specs=bar_checks,
        partitions_def=partitions.instrument_month,
    )
    def flow_bars(
        context: dg.AssetExecutionContext, store: FlowStore
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        entry, month = partitions.resolve(context.partition_key)
        objects = store.open()
        try:
            outcome = publish_flow(
                objects,
                entry.exchange,
                entry.symbol,
                month,
                entry.timestamps,
                settings,
                log=context.log.info,
            )
        except MonthNotReadyError as error:
            raise dg.Failure(str(error)) from error
        if outcome.manifest is None:
            for result in outcome.intervals.values():
                yield from _bar_checks(result)
            raise dg.Failure(
                f"{entry.key} {month:%Y-%m}: flow bars failed their checks; nothing was "
                "published (see the asset checks for the failure cases)"
            )
        for result in outcome.intervals.values():
            yield _bars_materialization(outcome, result, objects)

    return flow_bars


def daily_flow_summary_asset(partitions: FlowPartitions) -> dg.AssetsDefinition:
    """``daily_flow_summary``: per day and base asset, across exchanges."""

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
    def summary(context: dg.AssetExecutionContext, store: FlowStore) -> dg.MaterializeResult:
        month = date.fromisoformat(context.partition_key)
        objects = store.open()
        found, missing = _daily_bars(objects, partitions, month)
        if not found:
            raise dg.Failure(f"no 1d flow bars are published for {month:%Y-%m} yet")
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

    return summary


def _daily_bars(
    objects: ObjectStore, partitions: FlowPartitions, month: date
) -> tuple[list[tuple[str, str, pl.DataFrame]], list[str]]:
    """The published 1d exchange-time bars of every instrument for ``month``, and the missing."""
    found, missing = [], []
    for entry in partitions.entries:
        if month < entry.start:
            continue
        manifest = read_manifest(objects, "flow", entry.exchange, entry.symbol, month)
        if manifest is None:
            missing.append(entry.key)
            continue
        bars = objects.read_parquet(manifest.key_of(flow_file("exchange", "1d")))
        found.append((entry.exchange, entry.base, bars))
    return found, missing
