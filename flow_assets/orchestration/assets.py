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

from flow_assets.catalog import stored_contracts
from flow_assets.metrics import ALL_INTERVALS, BAR_SCHEMA, FLOW_FIELDS, TRADE_SCHEMA
from flow_assets.metrics.schema import BAR_DESCRIPTIONS, TRADE_DESCRIPTIONS
from flow_assets.metrics.summary import (
    SUMMARY_DESCRIPTIONS,
    SUMMARY_SCHEMA,
    daily_flow_summary,
)
from flow_assets.month import (
    CODE_VERSION,
    FlowOutcome,
    FlowSettings,
    IntervalResult,
    MonthNotReadyError,
    TradesOutcome,
    publish_flow,
    publish_trades,
)
from flow_assets.orchestration import exchange_checks
from flow_assets.orchestration.partitions import (
    INSTRUMENT,
    MONTH,
    ExchangePartitions,
    FlowPartitions,
    exchange_slug,
)
from flow_assets.orchestration.resources import ArchiveSources, CatalogApi, FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.sources import DownloadError
from flow_assets.store import ObjectStore, summary_key
from flow_assets.tracked import tracked_entries
from flow_assets.venues import venue

SUMMARY = dg.AssetKey("daily_flow_summary")
DOWNLOAD_RETRIES = 3  # a month whose archive host keeps failing is retried this often, later
DOWNLOAD_RETRY_WAIT = 120  # seconds
# No backfill policy: Dagster's default, one run per partition, tagged with its partition (so
# dagster.yaml's per-instrument run limit applies), and a self-dependent asset's partitions are
# requested only once their previous month is materialized (months in order). With
# ``multi_run(1)``, Dagster 1.13 picks the one partition a tick may request at random among the
# candidates and a backfill stalls on a month whose predecessor is not done yet.
# Checks are not partitioned (no ``AssetCheckSpec(partitions_def=...)``): Dagster 1.13 rebuilds a
# partitioned check's status per UI request, one partition at a time with a storage query each
# (``has_dynamic_partition``): the asset pages, graph and group view slowed with every month
# done (``benchmarks/bench_ui.py``: the group 5.9-7.9 s at 20 instruments, 0.7-1.5 s without at
# 1,000). Each evaluation is still attached to
# the materialization of the partition it judges (Dagster scopes a check's target to the step's
# partition) and names that partition in its metadata.
CHECKED_PARTITION = "partition"
_TRACKED_NOTE = (
    "Only an instrument's tracked months are computed (from its listing or `start` to its "
    "delisting); the other months of the grid are never materialized and show as missing in "
    "the partition health: `{slug}/tracked_coverage` tells which months are tracked and which "
    "of them are done."
)
PREVIEW_COLUMNS = ["time", "taker_buy_volume", "taker_sell_volume", "flow_toxicity_score"]


def raw_trades_key(exchange: str) -> dg.AssetKey:
    """Asset key of an exchange's raw trades, e.g. ``binance_futures/raw_trades``."""
    return dg.AssetKey([exchange_slug(exchange), "raw_trades"])


def flow_asset_key(exchange: str, interval: str) -> dg.AssetKey:
    """Asset key of an exchange's bars of one interval, e.g. ``binance_futures/flow_bars_1m``."""
    return dg.AssetKey([exchange_slug(exchange), f"flow_bars_{interval}"])


def archive_pool(exchange: str) -> str:
    """The concurrency pool of an exchange's archive downloads (limit: ``dagster.yaml``)."""
    return venue(exchange).pool


def _schema_metadata(
    schema: dict[str, pl.DataType], descriptions: dict[str, str] | None = None
) -> dg.TableSchema:
    """The column schema the Dagster catalog shows: name, dtype and what the column means."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[dg.TableColumn(n, str(t), descriptions.get(n)) for n, t in schema.items()]
    )


def _markdown_table(frame: pl.DataFrame, caption: str = "") -> dg.MetadataValue:
    lines = [caption, ""] if caption else []
    lines += ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    for row in frame.iter_rows():
        cells = [
            "null" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _preview(preview: pl.DataFrame, rows: int) -> dg.MetadataValue:
    """The preview table, saying which bars it shows: the file itself is dense."""
    traded = (pl.col("taker_buy_count") + pl.col("taker_sell_count")) > 0
    if preview.select(traded.all()).item():
        caption = (
            f"The first {preview.height} bars **that have trades**: bars without trades are "
            f"left out of this preview only. The file is dense ({rows} bars): an empty bar has "
            "volumes and counts 0 and ratios null."
        )
    else:
        caption = f"The first {preview.height} of {rows} bars (the month has no trades yet)."
    return _markdown_table(preview.select(PREVIEW_COLUMNS), caption)


def _column_lineage(exchange: str, timestamp: str) -> dg.TableColumnLineage:
    """Which raw-trade columns each flow field is computed from."""
    time_column = "exchange_ts" if timestamp == "exchange" else "arrival_ts"

    def deps(*columns: str) -> list[dg.TableColumnDep]:
        return [dg.TableColumnDep(raw_trades_key(exchange), c) for c in (time_column, *columns)]

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


def _bar_checks(exchange: str, result: IntervalResult, partition: str) -> list[dg.AssetCheckResult]:
    """The two checks of one interval's bars, naming the instrument-month they judge."""
    asset_key = flow_asset_key(exchange, result.interval)
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="bars_valid",
            passed=not result.invalid,
            metadata={
                CHECKED_PARTITION: partition,
                **{
                    f"{ts}_{name}": value
                    for ts, cases in result.invalid.items()
                    for name, value in _failure_cases(cases).items()
                },
            },
        ),
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="nothing_lost",
            passed=not result.unreconciled,
            metadata={
                CHECKED_PARTITION: partition,
                **{ts: dg.MetadataValue.json(f) for ts, f in result.reconciliation.items()},
                "unreconciled_timestamps": dg.MetadataValue.json(result.unreconciled),
            },
        ),
    ]


def _exchange_checks(
    exchange: str, outcome: FlowOutcome, interval: str, partition: str
) -> list[dg.AssetCheckResult]:
    """The ``matches_exchange`` result of the bars the exchange's figures judged (if these)."""
    check = outcome.exchange_check
    aggregation = venue(exchange).exchange_figures
    if check is None or aggregation is None or aggregation.interval != interval:
        return []
    key = flow_asset_key(exchange, interval)
    return [exchange_checks.check_result(key, check, CHECKED_PARTITION, partition)]


def _bars_materialization(
    exchange: str, outcome: FlowOutcome, result: IntervalResult, store: ObjectStore, partition: str
) -> dg.MaterializeResult:
    """One interval's materialization, its checks attached."""
    assert outcome.manifest is not None
    manifest_uri = store.uri(outcome.manifest.key_of(flow_file("exchange", result.interval)))
    metadata: dict[str, Any] = {
        "dagster/row_count": result.rows["exchange"],
        "dagster/uri": manifest_uri,
        "dagster/column_schema": _schema_metadata(BAR_SCHEMA, BAR_DESCRIPTIONS),
        "dagster/column_lineage": _column_lineage(exchange, "exchange"),
        "paths": dg.MetadataValue.json({ts: store.uri(k) for ts, k in result.keys.items()}),
        "version": outcome.manifest.version,
        "trades_in": dg.MetadataValue.json(outcome.trades_in),
        "history": outcome.history,
        "warm_up": outcome.history.startswith("warm-up"),
        "complete": outcome.complete,
        "covered_until": outcome.end.isoformat(),
    }
    if result.preview is not None:
        metadata["preview"] = _preview(result.preview, result.rows["exchange"])
    return dg.MaterializeResult(
        asset_key=flow_asset_key(exchange, result.interval),
        data_version=dg.DataVersion(outcome.data_version),
        metadata=metadata,
        check_results=_bar_checks(exchange, result, partition)
        + _exchange_checks(exchange, outcome, result.interval, partition),
    )


def build_assets(partitions: FlowPartitions, settings: FlowSettings) -> list[Any]:
    """The asset definitions for the instruments of ``partitions``: per exchange, then across."""
    per_exchange = [
        build(exchange_partitions)
        for exchange_partitions in partitions.exchanges
        for build in (raw_trades_asset, lambda p: flow_bars_asset(p, settings))
    ]
    return [*per_exchange, daily_flow_summary_asset(partitions)]


def raw_trades_asset(partitions: ExchangePartitions) -> dg.AssetsDefinition:
    """``{exchange}/raw_trades``: one instrument-month of checked, normalized trades."""
    key = raw_trades_key(partitions.exchange)

    @dg.asset(
        key=key,
        partitions_def=partitions.instrument_month,
        group_name=partitions.slug,
        code_version="raw-trades-3",
        pool=archive_pool(partitions.exchange),
        check_specs=[
            dg.AssetCheckSpec(
                "upstream_defects",
                asset=key,
                blocking=True,
                description="Days on one side only or missing inside the month block "
                "publication; rows the source repaired are a warning.",
            )
        ],
        deps=[dg.AssetKey([partitions.slug, "instrument_catalog"])],  # contract values, months
        kinds={"polars", "parquet"},
        description=f"One row per trade of one {partitions.exchange} instrument-month: "
        "normalized trades from the exchange archive (streamed a day at a time), as Parquet in "
        "the store. Each source file's sha256 is recorded in `source_files`; "
        "`checksum_verified` says whether it was checked against a checksum the venue "
        "publishes (true) or could not be (a venue or a Tardis file that publishes none: "
        "false). " + _TRACKED_NOTE.format(slug=partitions.slug),
    )
    def raw_trades(
        context: dg.AssetExecutionContext, archives: ArchiveSources, store: FlowStore
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        objects = store.open()
        entry, month = partitions.resolve(context.partition_key, objects)
        contracts = stored_contracts(objects, entry.exchange)  # never the exchange's REST API
        try:
            outcome = publish_trades(
                objects,
                entry.exchange,
                entry.symbol,
                month,
                lambda dest: archives.ingest(
                    entry, month, dest, contracts=contracts, progress=context.log.info
                ),
                log=context.log.info,
            )
        except DownloadError as error:  # the host kept failing: try the month again later
            raise dg.RetryRequested(
                max_retries=DOWNLOAD_RETRIES, seconds_to_wait=DOWNLOAD_RETRY_WAIT
            ) from error
        check = dg.AssetCheckResult(
            asset_key=key,
            check_name="upstream_defects",
            passed=outcome.severity == "ok",
            severity=dg.AssetCheckSeverity.ERROR
            if outcome.severity == "error"
            else dg.AssetCheckSeverity.WARN,
            metadata={CHECKED_PARTITION: context.partition_key, **outcome.findings},
        )
        if outcome.manifest is None:
            yield check
            raise dg.Failure(
                f"{entry.key} {month:%Y-%m}: upstream defects block the month's trades; nothing "
                f"was published: {outcome.findings}"
            )
        yield dg.MaterializeResult(
            asset_key=key,
            data_version=dg.DataVersion(outcome.source_version),
            metadata=_trades_metadata(outcome, objects),
            check_results=[check],
        )

    return raw_trades


def _trades_metadata(outcome: TradesOutcome, objects: ObjectStore) -> dict[str, Any]:
    """What the UI shows of a published month of trades."""
    assert outcome.manifest is not None
    report = outcome.report
    return {
        "dagster/row_count": outcome.rows,
        "dagster/uri": objects.uri(outcome.manifest.key_of("trades")),
        "dagster/column_schema": _schema_metadata(TRADE_SCHEMA, TRADE_DESCRIPTIONS),
        "version": outcome.manifest.version,
        "rows_read": report["rows_read"],
        "rows_dropped": dg.MetadataValue.json(report["rows_dropped"]),
        "source_files": dg.MetadataValue.json(report["files"]),
        "first_trade": str(report["first_trade"]),
        "last_trade": str(report["last_trade"]),
        "complete": report["complete"],
        "covered_until": str(report["end"]),
        "sha256": outcome.manifest.files["trades"].sha256,
    }


def _previous_month() -> dg.MultiPartitionMapping:
    """Same instrument, the month before (a month's rolling fields continue from it)."""
    return dg.MultiPartitionMapping(
        {
            INSTRUMENT: dg.DimensionPartitionMapping(INSTRUMENT, dg.IdentityPartitionMapping()),
            MONTH: dg.DimensionPartitionMapping(
                MONTH,
                dg.TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
                ),
            ),
        }
    )


def _bar_check_specs(partitions: ExchangePartitions) -> list[dg.AssetCheckSpec]:
    """``bars_valid`` and ``nothing_lost`` on every interval's bars (each judging one run's
    instrument-month)."""
    return [
        spec
        for interval in ALL_INTERVALS
        for spec in (
            dg.AssetCheckSpec(
                "bars_valid",
                asset=flow_asset_key(partitions.exchange, interval),
                blocking=True,
                description="pandera: dtypes, nulls, ranges and the spec's invariants; runs "
                "before anything is published.",
            ),
            dg.AssetCheckSpec(
                "nothing_lost",
                asset=flow_asset_key(partitions.exchange, interval),
                blocking=True,
                description="Trades in the month = counts in the bars; volumes sum to the source.",
            ),
            *exchange_checks.check_spec(
                partitions.exchange, interval, flow_asset_key(partitions.exchange, interval)
            ),
        )
    ]


def flow_bars_asset(partitions: ExchangePartitions, settings: FlowSettings) -> dg.AssetsDefinition:
    """``{exchange}/flow_bars_1s`` .. ``_1d``: one instrument-month of bars, published whole."""
    exchange = partitions.exchange
    bar_specs = [
        dg.AssetSpec(
            flow_asset_key(exchange, interval),
            group_name=partitions.slug,
            deps=[
                dg.AssetDep(raw_trades_key(exchange)),
                dg.AssetDep(
                    flow_asset_key(exchange, interval), partition_mapping=_previous_month()
                ),
            ],
            code_version=CODE_VERSION,
            kinds={"polars", "parquet"},
            description=f"One row per {interval} bar (its open time + the 36 flow fields) of one "
            f"{exchange} instrument-month, one Parquet file per timestamp source, published with "
            "the month's other intervals as one unit. The rolling fields continue from the "
            "previous month's bars. " + _TRACKED_NOTE.format(slug=partitions.slug),
            metadata={"dagster/column_schema": _schema_metadata(BAR_SCHEMA, BAR_DESCRIPTIONS)},
        )
        for interval in ALL_INTERVALS
    ]

    @dg.multi_asset(
        name=f"{partitions.slug}_flow_bars",
        specs=bar_specs,
        check_specs=_bar_check_specs(partitions),
        partitions_def=partitions.instrument_month,
    )
    def flow_bars(
        context: dg.AssetExecutionContext,
        store: FlowStore,
        archives: ArchiveSources,
        catalog_api: CatalogApi,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        objects = store.open()
        entry, month = partitions.resolve(context.partition_key, objects)
        reference = exchange_checks.reference(entry, archives, catalog_api)
        try:
            outcome = publish_flow(
                objects,
                entry.exchange,
                entry.symbol,
                month,
                entry.timestamps,
                settings,
                log=context.log.info,
                reference=reference,
            )
        except MonthNotReadyError as error:
            raise dg.Failure(str(error)) from error
        if outcome.manifest is None:
            for result in outcome.intervals.values():
                yield from _bar_checks(exchange, result, context.partition_key)
                yield from _exchange_checks(
                    exchange, outcome, result.interval, context.partition_key
                )
            raise dg.Failure(
                f"{entry.key} {month:%Y-%m}: flow bars failed their checks; nothing was "
                "published (see the asset checks for the failure cases)" + _disagreement(outcome)
            )
        for result in outcome.intervals.values():
            yield _bars_materialization(exchange, outcome, result, objects, context.partition_key)

    return flow_bars


def _disagreement(outcome: FlowOutcome) -> str:
    """What the exchange check says when it failed the month (else nothing)."""
    check = outcome.exchange_check
    if check is None or check.status != "failed":
        return ""
    return (
        f"; the bars disagree with the exchange's figures ({check.compared - check.equal} of "
        f"{check.compared} {check.unit}s), first at {', '.join(check.first_differing[:3])}"
    )


def daily_flow_summary_asset(partitions: FlowPartitions) -> dg.AssetsDefinition:
    """``daily_flow_summary``: per day and base asset, across exchanges."""

    @dg.asset(
        key=SUMMARY,
        partitions_def=partitions.months,
        group_name="analytics",
        deps=[
            dg.AssetDep(
                flow_asset_key(exchange.exchange, "1d"),
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name=MONTH
                ),
            )
            for exchange in partitions.exchanges
        ],
        automation_condition=dg.AutomationCondition.eager(),
        kinds={"polars", "parquet"},
        description="One row per day and base asset: taker buy/sell notional summed over "
        "exchanges, net flow, buy share and large-order share, from the 1d flow bars.",
        metadata={"dagster/column_schema": _schema_metadata(SUMMARY_SCHEMA, SUMMARY_DESCRIPTIONS)},
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
                "dagster/column_schema": _schema_metadata(
                    dict(summary.schema), SUMMARY_DESCRIPTIONS
                ),
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
    """The published 1d exchange-time bars of every tracked instrument for ``month``, and the
    missing."""
    found, missing = [], []
    entries = [e for p in partitions.exchanges for e in tracked_entries(objects, p.exchange)]
    for entry in entries:
        if not entry.covers(month):
            continue
        manifest = read_manifest(objects, "flow", entry.exchange, entry.symbol, month)
        if manifest is None:
            missing.append(entry.key)
            continue
        bars = objects.read_parquet(manifest.key_of(flow_file("exchange", "1d")))
        found.append((entry.exchange, entry.base, bars))
    return found, missing
