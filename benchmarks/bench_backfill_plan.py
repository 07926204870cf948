"""What a backfill of every partition plans at scale, computed the way Dagster's daemon does.

Registers ``--instruments`` synthetic Binance USD-M instruments (first months spread evenly over
the month dimension, 2019-09 to the running month) on a throwaway SQLite instance, builds the
asset backfill the UI launches for "every partition" of the exchange's flow assets
(``raw_trades`` and the ten ``flow_bars_*``; ``AssetBackfillData.from_asset_partitions(...,
all_partitions=True)``, what ``launchPartitionBackfill`` does), and runs the daemon's first
iteration on it (``execute_asset_backfill_iteration_inner``: the same planner, against the
definitions' remote asset graph). Prints one JSON document: partitions targeted, runs requested
by the first iteration, how many of them are for months outside their instrument's tracked
range, the months requested first, the iteration's time and the process's peak memory.

    .venv/bin/python benchmarks/bench_backfill_plan.py                   # 1,000 instruments
    .venv/bin/python benchmarks/bench_backfill_plan.py --instruments 100
"""

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.remote_asset_graph import RemoteWorkspaceAssetGraph
from dagster._core.execution.asset_backfill import (
    AssetBackfillData,
    execute_asset_backfill_iteration_inner,
)
from dagster._core.test_utils import mock_workspace_from_repos
from dagster._time import get_current_datetime

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.metrics import ALL_INTERVALS  # noqa: E402
from flow_assets.orchestration.assets import flow_asset_key, raw_trades_key  # noqa: E402
from flow_assets.orchestration.definitions import build_definitions  # noqa: E402
from flow_assets.orchestration.partitions import INSTRUMENT, MONTH, FlowPartitions  # noqa: E402

EXCHANGE = "binance-futures"


def plan(instruments: int) -> dict[str, object]:
    """The first iteration of a backfill of every partition, and what it requests."""
    partitions = FlowPartitions().of(EXCHANGE)
    months = partitions.months.get_partition_keys()
    starts = {
        f"SYN{i:04d}-USDT:USDT": months[i * len(months) // instruments] for i in range(instruments)
    }
    repo = build_definitions().get_repository_def()
    graph = RemoteWorkspaceAssetGraph.build(mock_workspace_from_repos([repo]))
    keys = [raw_trades_key(EXCHANGE), *(flow_asset_key(EXCHANGE, i) for i in ALL_INTERVALS)]
    with dg.instance_for_test(temp_dir=tempfile.mkdtemp(dir="/dev/shm")) as instance:
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
            "bench", data, view, now.timestamp(), logging.getLogger("bench"), None
        )
        seconds = time.monotonic() - started
    outside, firsts, selections = 0, Counter(), Counter()
    for request in result.run_requests:
        dims = partitions.instrument_month.get_partition_key_from_str(request.partition_key)
        instrument, month = dims.keys_by_dimension[INSTRUMENT], dims.keys_by_dimension[MONTH]
        outside += month < starts[instrument]
        firsts[month == starts[instrument]] += 1
        selections[", ".join(sorted(k.path[-1] for k in request.asset_selection or []))] += 1
    tracked = sum(len(months) - months.index(s) for s in starts.values())
    return {
        "instruments": instruments,
        "months_in_dimension": len(months),
        "tracked_instrument_months": tracked,
        "partitions_targeted_per_asset": instruments * len(months),
        "first_iteration_runs": len(result.run_requests),
        "first_iteration_runs_outside_tracked_range": outside,
        "first_iteration_runs_for_an_instruments_first_month": firsts[True],
        "run_asset_selections": dict(selections),
        "first_iteration_seconds": round(seconds, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(plan(args.instruments), indent=2))


if __name__ == "__main__":
    main()
