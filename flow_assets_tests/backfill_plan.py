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

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.remote_asset_graph import RemoteWorkspaceAssetGraph
from dagster._core.execution.asset_backfill import (
    AssetBackfillData,
    execute_asset_backfill_iteration_inner,
)
from dagster._core.test_utils import mock_workspace_from_repos
from dagster._time import get_current_datetime

from flow_assets.metrics import ALL_INTERVALS
from flow_assets.orchestration.assets import flow_asset_key, raw_trades_key
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import INSTRUMENT, MONTH, FlowPartitions

EXCHANGE = "binance-futures"


@dataclass(frozen=True)
class Requested:
    """One run the iteration requests: its instrument-month, the instrument's first month."""

    instrument: str
    month: str
    first_month: str
    assets: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What the first iteration targets and requests."""

    months_in_dimension: int
    tracked_instrument_months: int
    targeted_per_asset: int
    requested: list[Requested]
    seconds: float


def first_iteration(instruments: int) -> Plan:
    """The first iteration of a backfill of every partition of ``raw_trades`` and the bars."""
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
        data = AssetBackfillData.from_asset_partitions(
            graph, None, keys, instance, now.timestamp(), all_partitions=True
        )
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=now, last_event_id=None),
            instance=instance,
            asset_graph=graph,
        )
        started = time.monotonic()
        result = execute_asset_backfill_iteration_inner(
            "plan", data, view, now.timestamp(), logging.getLogger(__name__), None
        )
        seconds = time.monotonic() - started
    requested = []
    for request in result.run_requests:
        key = partitions.instrument_month.get_partition_key_from_str(request.partition_key)
        instrument, month = key.keys_by_dimension[INSTRUMENT], key.keys_by_dimension[MONTH]
        assets = tuple(sorted(k.to_user_string() for k in request.asset_selection or []))
        requested.append(Requested(instrument, month, starts[instrument], assets))
    return Plan(
        months_in_dimension=len(months),
        tracked_instrument_months=sum(len(months) - months.index(s) for s in starts.values()),
        targeted_per_asset=instruments * len(months),
        requested=requested,
        seconds=seconds,
    )
