"""A backfill of every tracked month, launched from the UI in one click: ``backfill_tracked_job``.

A backfill of "every partition" targets the whole instrument x month grid, tracked or not, and
Dagster's planner cannot leave the untracked months out (README, Orchestration). This job's one
op builds the target from each exchange's tracked instruments instead: one partition range per
instrument, from its first tracked month (or, with ``only_missing``, its first month whose bars
are not materialized) to its last, for ``raw_trades`` and the ten ``flow_bars_*``, and submits it
to the daemon as an asset backfill, the same backfill the UI launches for selected ranges. The
daemon then plans no untracked month; the month before an instrument's first is not in the
target, so its first month waits for nothing, and its later months run in order through the
bars' self-dependency.
"""

import time
from collections.abc import Iterable
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.selector import (
    PartitionRangeSelector,
    PartitionsByAssetSelector,
    PartitionsSelector,
)
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from pydantic import Field

from flow_assets.instruments import TrackedInstrument
from flow_assets.metrics import ALL_INTERVALS
from flow_assets.month import FlowSettings
from flow_assets.orchestration.assets import build_assets, flow_asset_key, raw_trades_key
from flow_assets.orchestration.coverage import done_months
from flow_assets.orchestration.partitions import ExchangePartitions, FlowPartitions, partition_key
from flow_assets.orchestration.resources import FlowStore
from flow_assets.tracked import instrument_key, month_of, tracked_entries, tracked_months

BACKFILL_JOB = "backfill_tracked_job"


class TrackedBackfillConfig(dg.Config):
    """Which tracked months to backfill."""

    only_missing: bool = True  # from each instrument's first month whose bars are not done
    exchanges: list[str] = Field(default_factory=list)  # empty: every exchange


def tracked_ranges(
    entries: Iterable[TrackedInstrument], running: date, done: set[tuple[str, date]]
) -> list[tuple[str, str]]:
    """(first, last) partition keys per instrument: from its first tracked month not in ``done``
    to its last tracked month; instruments with every month done have none."""
    ranges = []
    for entry in entries:
        months = tracked_months(entry, running)
        key = instrument_key(entry.symbol)
        todo = [m for m in months if (key, m) not in done]
        if todo:
            ranges.append(
                (str(partition_key(entry, todo[0])), str(partition_key(entry, months[-1])))
            )
    return ranges


def tracked_selectors(
    exchange: str, ranges: list[tuple[str, str]]
) -> list[PartitionsByAssetSelector]:
    """The backfill target of one exchange: ``ranges`` of ``raw_trades`` and every interval."""
    selector = PartitionsSelector([PartitionRangeSelector(a, b) for a, b in ranges])
    keys = [raw_trades_key(exchange), *(flow_asset_key(exchange, i) for i in ALL_INTERVALS)]
    return [PartitionsByAssetSelector(asset_key=k, partitions=selector) for k in keys]


def _exchange_selectors(
    context: dg.OpExecutionContext,
    partitions: ExchangePartitions,
    config: TrackedBackfillConfig,
    store: FlowStore,
) -> list[PartitionsByAssetSelector]:
    done = done_months(context.instance, partitions) if config.only_missing else set()
    entries = tracked_entries(store.open(), partitions.exchange)
    ranges = tracked_ranges(entries, month_of(datetime.now(UTC)), done)
    context.log.info(f"{partitions.exchange}: {len(ranges)} instruments with months to compute")
    return tracked_selectors(partitions.exchange, ranges) if ranges else []


def _flow_asset_graph() -> AssetGraph:
    """The flow assets' graph (their partitions are all a backfill target needs)."""
    return AssetGraph.from_assets(build_assets(FlowPartitions(), FlowSettings()))


@dg.op(description="Submits an asset backfill of the tracked months (see the job).")
def launch_tracked_backfill(
    context: dg.OpExecutionContext, config: TrackedBackfillConfig, store: FlowStore
) -> None:
    selectors = [
        selector
        for partitions in FlowPartitions().exchanges
        if not config.exchanges or partitions.exchange in config.exchanges
        for selector in _exchange_selectors(context, partitions, config, store)
    ]
    if not selectors:
        context.log.info("every tracked month is done: no backfill")
        return
    with partition_loading_context(dynamic_partitions_store=context.instance):
        backfill = PartitionBackfill.from_partitions_by_assets(
            backfill_id=make_new_backfill_id(),
            asset_graph=_flow_asset_graph(),
            backfill_timestamp=time.time(),
            tags={"flow_assets/backfill": "tracked"},
            dynamic_partitions_store=context.instance,
            partitions_by_assets=selectors,
            title="tracked months",
            description="Every tracked instrument-month (backfill_tracked_job).",
            run_config=None,
        )
    context.instance.add_backfill(backfill)
    target = backfill.asset_backfill_data.target_subset
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
