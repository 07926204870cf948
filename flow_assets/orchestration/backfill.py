"""A backfill of every tracked month, launched from the UI in one click: ``backfill_tracked_job``.

A backfill of "every partition" targets the whole instrument x month grid, tracked or not, and
Dagster's planner cannot leave the untracked months out (README, Orchestration). This job's one
op builds the target from each exchange's tracked instruments instead: per instrument, its
months from its first tracked month (or, with ``only_missing``, its first month whose bars are
not materialized) to its last, for ``raw_trades`` and the ten ``flow_bars_*``, and submits it to
the daemon as an asset backfill, the same kind the UI launches for selected partitions. The
daemon then plans no untracked month; the month before an instrument's first is not in the
target, so its first month waits for nothing, and its later months run in order through the
bars' self-dependency.
"""

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from pydantic import Field

from flow_assets.instruments import TrackedInstrument
from flow_assets.metrics import ALL_INTERVALS
from flow_assets.orchestration.assets import flow_asset_key, raw_trades_key
from flow_assets.orchestration.coverage import done_months
from flow_assets.orchestration.partitions import ExchangePartitions, FlowPartitions, partition_key
from flow_assets.orchestration.resources import FlowStore
from flow_assets.tracked import instrument_key, month_of, tracked_entries, tracked_months

BACKFILL_JOB = "backfill_tracked_job"


class TrackedBackfillConfig(dg.Config):
    """Which tracked months to backfill."""

    only_missing: bool = True  # from each instrument's first month whose bars are not done
    exchanges: list[str] = Field(default_factory=list)  # empty: every exchange


def tracked_keys(
    entries: Iterable[TrackedInstrument], running: date, done: set[tuple[str, date]]
) -> list[str]:
    """The partition keys to backfill: per instrument, from its first tracked month not in
    ``done`` to its last tracked month (a done month after a missing one is computed again: its
    rolling fields started without the missing month's state)."""
    keys = []
    for entry in entries:
        months = tracked_months(entry, running)
        key = instrument_key(entry.symbol)
        todo = [i for i, m in enumerate(months) if (key, m) not in done]
        keys += [str(partition_key(entry, m)) for m in months[todo[0] :]] if todo else []
    return keys


def tracked_target(partitions: ExchangePartitions, keys: list[str]) -> AssetGraphSubset:
    """``keys`` of ``raw_trades`` and of every interval's bars of one exchange."""
    subset = partitions.instrument_month.empty_subset().with_partition_keys(keys)
    exchange = partitions.exchange
    assets = [raw_trades_key(exchange), *(flow_asset_key(exchange, i) for i in ALL_INTERVALS)]
    return AssetGraphSubset(partitions_subsets_by_asset_key=dict.fromkeys(assets, subset))


def _exchange_target(
    context: dg.OpExecutionContext,
    partitions: ExchangePartitions,
    config: TrackedBackfillConfig,
    store: FlowStore,
) -> AssetGraphSubset:
    done = done_months(context.instance, partitions) if config.only_missing else set()
    entries = tracked_entries(store.open(), partitions.exchange)
    keys = tracked_keys(entries, month_of(datetime.now(UTC)), done)
    context.log.info(f"{partitions.exchange}: {len(keys)} instrument-months to compute")
    return tracked_target(partitions, keys)


@dg.op(description="Submits an asset backfill of the tracked months (see the job).")
def launch_tracked_backfill(
    context: dg.OpExecutionContext, config: TrackedBackfillConfig, store: FlowStore
) -> None:
    target = AssetGraphSubset()
    for partitions in FlowPartitions().exchanges:
        if not config.exchanges or partitions.exchange in config.exchanges:
            target |= _exchange_target(context, partitions, config, store)
    if target.num_partitions_and_non_partitioned_assets == 0:
        context.log.info("every tracked month is done: no backfill")
        return
    with partition_loading_context(dynamic_partitions_store=context.instance):
        backfill = PartitionBackfill.from_asset_graph_subset(
            backfill_id=make_new_backfill_id(),
            backfill_timestamp=time.time(),
            tags={"flow_assets/backfill": "tracked"},
            dynamic_partitions_store=context.instance,
            asset_graph_subset=target,
            title="tracked months",
            description="Every tracked instrument-month (backfill_tracked_job).",
            run_config=None,
        )
    context.instance.add_backfill(backfill)
    counts = {k.to_user_string(): len(s) for k, s in target.partitions_subsets_by_asset_key.items()}
    context.log.info(f"submitted backfill {backfill.backfill_id}: partitions per asset {counts}")


@dg.job(
    name=BACKFILL_JOB,
    description="Backfill every tracked instrument-month (or only those not done yet): one "
    "partition range per instrument from its first month, so no untracked month is planned "
    "and each instrument's months run in order. Use it instead of a backfill of every "
    "partition, which also targets the months no instrument is tracked for.",
)
def backfill_tracked_job() -> None:
    launch_tracked_backfill()
