"""The daemon's first iteration of a backfill of every partition, on synthetic instruments.

Builds the asset backfill the UI launches for "every partition" of an exchange's flow assets
(``AssetBackfillData.from_asset_partitions(..., all_partitions=True)``, what
``launchPartitionBackfill`` does) and runs Dagster's own planner on it
(``execute_asset_backfill_iteration_inner``, against the definitions' remote asset graph), on a
throwaway SQLite instance holding ``instruments`` synthetic instruments whose first months are
spread evenly over the month dimension. Shared by the scale test and
``benchmarks/bench_backfill_plan.py``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.remote_asset_graph import RemoteWorkspaceAssetGraph
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.execution.asset_backfill import (
    AssetBackfillData,
    execute_asset_backfill_iteration_inner,
)
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.test_utils import create_run_for_test, mock_workspace_from_repos
from dagster._time import get_current_datetime

from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics import ALL_INTERVALS
from flow_assets.orchestration.assets import flow_asset_key, raw_trades_key
from flow_assets.orchestration.backfill import tracked_keys, tracked_target
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import (
    INSTRUMENT,
    MONTH,
    ExchangePartitions,
    FlowPartitions,
)

EXCHANGE = "binance-futures"
BACKFILL_ID = "plan"


@dataclass(frozen=True)
class Requested:
    """One run the iteration requests: its instrument-month, the instrument's first month."""

    instrument: str
    month: str
    first_month: str
    assets: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What a backfill targets and what each iteration requests."""

    months_in_dimension: int
    tracked_instrument_months: int
    targeted_per_asset: int
    first_months: dict[str, str]  # instrument -> its first tracked month
    last_month: str  # the running month
    iterations: list[list[Requested]]
    seconds: float  # the first iteration's
    target_seconds: float  # building the backfill's target

    @property
    def requested(self) -> list[Requested]:
        """The first iteration's runs."""
        return self.iterations[0]


def _tracked_target(
    instance: dg.DagsterInstance, starts: dict[str, str], now: datetime
) -> AssetBackfillData:
    """What ``backfill_tracked_job`` submits: each instrument's months from its first."""
    entries = [
        InstrumentEntry(EXCHANGE, f"perpetual-{key}", date.fromisoformat(start))
        for key, start in starts.items()
    ]
    running = date.fromisoformat(FlowPartitions().months.get_partition_keys()[-1])
    keys = tracked_keys(entries, running, set())
    target = tracked_target(FlowPartitions().of(EXCHANGE), keys)
    with partition_loading_context(now, instance):
        return AssetBackfillData.from_asset_graph_subset(target, instance, now.timestamp())


def iterate(
    data: AssetBackfillData, graph: RemoteWorkspaceAssetGraph, instance: dg.DagsterInstance, now
) -> tuple[AssetBackfillData, list[dg.RunRequest], float]:
    """One iteration of the daemon's planner: the updated backfill data, its run requests."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=now, last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    started = time.monotonic()
    result = execute_asset_backfill_iteration_inner(
        BACKFILL_ID, data, view, now.timestamp(), logging.getLogger(__name__), None
    )
    seconds = time.monotonic() - started
    data = result.backfill_data.with_run_requests_submitted(result.run_requests, view)
    return data, list(result.run_requests), seconds


def _succeed(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    """The requested runs, successful: a materialization of each asset and partition they
    selected (recorded under one successful run of the backfill, which is all the planner
    reads)."""
    tags = {BACKFILL_ID_TAG: BACKFILL_ID}
    run = create_run_for_test(instance, tags=tags, status=DagsterRunStatus.SUCCESS)
    for request in requests:
        for key in request.asset_selection or []:
            materialization = dg.AssetMaterialization(key, partition=request.partition_key)
            event = DagsterEvent(
                DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=run.job_name,
                event_specific_data=StepMaterializationData(materialization),
            )
            instance.report_dagster_event(event, run_id=run.run_id)


def plan_iterations(instruments: int, tracked_only: bool = False, iterations: int = 1) -> Plan:
    """The daemon's first ``iterations`` of a backfill of every partition of ``raw_trades`` and
    the bars (or, ``tracked_only``, of every tracked month, as ``backfill_tracked_job`` submits
    it), each iteration's runs succeeding before the next."""
    partitions = FlowPartitions().of(EXCHANGE)
    months = partitions.months.get_partition_keys()
    starts = {
        f"SYN{i:04d}-USDT:USDT": months[i * len(months) // instruments] for i in range(instruments)
    }
    repo = build_definitions().get_repository_def()
    graph = RemoteWorkspaceAssetGraph.build(mock_workspace_from_repos([repo]))
    keys = [raw_trades_key(EXCHANGE), *(flow_asset_key(EXCHANGE, i) for i in ALL_INTERVALS)]
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        instance.add_dynamic_partitions(partitions.instruments_name, list(starts))
        now = get_current_datetime()
        started = time.monotonic()
        data = (
            _tracked_target(instance, starts, now)
            if tracked_only
            else AssetBackfillData.from_asset_partitions(
                graph, None, keys, instance, now.timestamp(), all_partitions=True
            )
        )
        target_seconds = time.monotonic() - started
        data, requests, seconds = iterate(data, graph, instance, now)
        planned = [requests]
        for _ in range(iterations - 1):
            _succeed(instance, requests)
            data, requests, _ = iterate(data, graph, instance, now)
            planned.append(requests)
    return Plan(
        months_in_dimension=len(months),
        tracked_instrument_months=sum(len(months) - months.index(s) for s in starts.values()),
        targeted_per_asset=len(data.target_subset.get_partitions_subset(keys[0])),
        first_months=starts,
        last_month=months[-1],
        iterations=[[_requested(r, partitions, starts) for r in rs] for rs in planned],
        seconds=seconds,
        target_seconds=target_seconds,
    )


def _requested(
    request: dg.RunRequest, partitions: ExchangePartitions, starts: dict[str, str]
) -> Requested:
    key = partitions.instrument_month.get_partition_key_from_str(request.partition_key)
    instrument, month = key.keys_by_dimension[INSTRUMENT], key.keys_by_dimension[MONTH]
    assets = tuple(sorted(k.to_user_string() for k in request.asset_selection or []))
    return Requested(instrument, month, starts[instrument], assets)


def first_iteration(instruments: int, tracked_only: bool = False) -> Plan:
    """The daemon's first iteration (see :func:`plan_iterations`)."""
    return plan_iterations(instruments, tracked_only)
