"""What is tracked and what of it is done: ``{slug}/tracked_coverage``, one per exchange.

Dagster's partitions of an exchange are every instrument x every month from 2019-09 (definitions
load without reading the store, so the month dimension cannot start at each instrument's first
month). Its partition health therefore counts the months before an instrument's first month, or
after its delisting, as "missing" although nothing is ever to be computed there: 3 tracked months
show as "3% filled". This asset gives the truthful picture: per tracked instrument, its tracked
months, how many are done (their bars published) and the first one not yet done; in total, the
tracked instrument-months, done and not yet, and how many of Dagster's partitions were never
tracked. Read from the instance (one query) and the tracked instruments; refreshed by its hourly
schedule (stopped by default, like the other schedules) or materialized from the UI.
"""

from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.orchestration.assets import flow_asset_key
from flow_assets.orchestration.catalog import CATALOG_GROUP
from flow_assets.orchestration.partitions import INSTRUMENT, MONTH, ExchangePartitions
from flow_assets.orchestration.resources import FlowStore
from flow_assets.tracked import coverage, month_of, tracked_entries

COVERAGE_JOB = "tracked_coverage_job"
SHOWN = 50  # instruments with months not done yet listed in the metadata (all in the file)


def coverage_asset_key(exchange: str) -> dg.AssetKey:
    """E.g. ``binance_futures/tracked_coverage``."""
    return dg.AssetKey([exchange.replace("-", "_"), "tracked_coverage"])


def coverage_key(exchange: str) -> str:
    """Where the full coverage table of ``exchange`` is stored."""
    return f"catalog/{exchange}/coverage.parquet"


def done_months(
    instance: dg.DagsterInstance, partitions: ExchangePartitions
) -> set[tuple[str, date]]:
    """(instrument, month) of every month whose bars are materialized (the intervals of a month
    are published as one unit, so the 1d bars stand for all of them)."""
    keys = instance.get_materialized_partitions(flow_asset_key(partitions.exchange, "1d"))
    done = set()
    for key in keys:
        dims = partitions.instrument_month.get_partition_key_from_str(key).keys_by_dimension
        done.add((dims[INSTRUMENT], date.fromisoformat(dims[MONTH])))
    return done


def _not_done_table(table: pl.DataFrame) -> dg.MetadataValue:
    shown = table.filter(pl.col("missing") > 0).sort("missing", descending=True).head(SHOWN)
    lines = ["| instrument | tracked | done | missing | first missing |", "|---|---|---|---|---|"]
    for row in shown.iter_rows(named=True):
        lines.append(
            f"| {row['instrument']} ({row['first_month']} .. {row['last_month']}) | "
            f"{row['tracked']} | {row['done']} | {row['missing']} | {row['first_missing']} |"
        )
    return dg.MetadataValue.md("\n".join(lines))


def coverage_metadata(table: pl.DataFrame, months_in_dimension: int, uri: str) -> dict[str, Any]:
    """Totals of a coverage table, and Dagster's partitions that were never tracked."""
    tracked, done = int(table["tracked"].sum()), int(table["done"].sum())
    return {
        "dagster/row_count": table.height,
        "dagster/uri": uri,
        "tracked_instrument_months": tracked,
        "done": done,
        "done_share": round(done / tracked, 4) if tracked else 1.0,
        "tracked_not_done": tracked - done,
        "never_tracked_partitions": table.height * months_in_dimension - tracked,
        "not_done": _not_done_table(table),
    }


def coverage_asset(partitions: ExchangePartitions) -> dg.AssetsDefinition:
    """``{slug}/tracked_coverage``: the tracked months of every instrument, done or not yet."""
    exchange = partitions.exchange

    @dg.asset(
        key=coverage_asset_key(exchange),
        group_name=CATALOG_GROUP,  # not the exchange's group: its flow job selects that group
        kinds={"polars", "parquet"},
        description=f"One row per tracked {exchange} instrument: its first and last tracked "
        "month, how many of its tracked months are done (bars published) and which is the "
        "first not done yet. The flow assets' partition health counts months outside an "
        "instrument's tracked range as missing; they were never to be computed: this asset "
        "tells them apart (`never_tracked_partitions`).",
    )
    def tracked_coverage(
        context: dg.AssetExecutionContext, store: FlowStore
    ) -> dg.MaterializeResult:
        objects = store.open()
        running = month_of(datetime.now(UTC))
        table = coverage(
            tracked_entries(objects, exchange), done_months(context.instance, partitions), running
        )
        written = objects.write_parquet(coverage_key(exchange), table)
        months = len(partitions.months.get_partition_keys())
        return dg.MaterializeResult(metadata=coverage_metadata(table, months, written.uri))

    return tracked_coverage


def build_coverage(
    exchanges: list[ExchangePartitions], also: tuple[dg.AssetKey, ...] = ()
) -> tuple[list[dg.AssetsDefinition], Any, dg.ScheduleDefinition]:
    """The coverage assets, their job (refreshing the assets ``also`` too: each venue's
    reconciliation history) and its hourly schedule."""
    assets = [coverage_asset(p) for p in exchanges]
    keys = [coverage_asset_key(p.exchange) for p in exchanges] + list(also)
    job = dg.define_asset_job(
        COVERAGE_JOB,
        selection=dg.AssetSelection.assets(*keys),
        description="Which months of each tracked instrument are done, and which not yet; "
        "which of them agreed with the exchange's own figures.",
    )
    schedule = dg.ScheduleDefinition(
        name="tracked_coverage_hourly",
        job=job,
        cron_schedule="5 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Refreshes each exchange's tracked_coverage (reads the instance) and "
        "reconciliation history (reads the stored verdicts).",
    )
    return assets, job, schedule
