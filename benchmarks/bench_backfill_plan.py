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
    .venv/bin/python benchmarks/bench_backfill_plan.py --tracked    # backfill_tracked_job's target
    .venv/bin/python benchmarks/bench_backfill_plan.py --flat       # the alternative design

``--flat`` plans the alternative design on a throwaway prototype: one dynamic dimension holding
only the tracked ``instrument|month`` keys, ``raw_trades`` and ten bars assets on it (no
previous-month dependency can be declared there), everything else the same.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
from collections import Counter
from pathlib import Path

import dagster as dg
from dagster._core.definitions.assets.graph.remote_asset_graph import RemoteWorkspaceAssetGraph
from dagster._core.execution.asset_backfill import (
    AssetBackfillData,
)
from dagster._core.test_utils import mock_workspace_from_repos
from dagster._time import get_current_datetime

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets_tests.backfill_plan import first_iteration, iterate  # noqa: E402


def plan(instruments: int, tracked: bool) -> dict[str, object]:
    """The first iteration of a backfill of every partition (or of every tracked month, as
    ``backfill_tracked_job`` submits it), and what it requests."""
    result = first_iteration(instruments, tracked_only=tracked)
    selections = Counter(", ".join(r.assets) for r in result.requested)
    return {
        "instruments": instruments,
        "target": "tracked months (backfill_tracked_job)" if tracked else "every partition",
        "months_in_dimension": result.months_in_dimension,
        "tracked_instrument_months": result.tracked_instrument_months,
        "partitions_targeted_per_asset": result.targeted_per_asset,
        "first_iteration_runs": len(result.requested),
        "first_iteration_runs_outside_tracked_range": sum(
            r.month < r.first_month for r in result.requested
        ),
        "first_iteration_runs_for_an_instruments_first_month": sum(
            r.month == r.first_month for r in result.requested
        ),
        "run_asset_selections": dict(selections),
        "target_seconds": round(result.target_seconds, 1),
        "first_iteration_seconds": round(result.seconds, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load": os.getloadavg(),
    }


def flat_prototype(instruments: int) -> dict[str, object]:
    """The first iteration of a backfill of every partition when only tracked months exist."""
    months = dg.MonthlyPartitionsDefinition("2019-09-01", end_offset=1).get_partition_keys()
    flat = dg.DynamicPartitionsDefinition(name="instrument_months")
    raw = dg.AssetSpec(["x", "raw_trades"], partitions_def=flat)
    bars = [
        dg.AssetSpec(["x", f"bars_{i}"], deps=[raw.key], partitions_def=flat) for i in range(10)
    ]

    @dg.multi_asset(specs=[raw], partitions_def=flat)
    def raw_trades():  # no return annotation: Dagster would read it as the outputs
        pass

    @dg.multi_asset(specs=bars, partitions_def=flat)
    def flow_bars():
        pass

    repo = dg.Definitions(assets=[raw_trades, flow_bars]).get_repository_def()
    graph = RemoteWorkspaceAssetGraph.build(mock_workspace_from_repos([repo]))
    keys = [
        f"SYN{i:04d}|{m}"
        for i in range(instruments)
        for m in months[i * len(months) // instruments :]
    ]
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        instance.add_dynamic_partitions(flat.name, keys)
        now = get_current_datetime()
        data = AssetBackfillData.from_asset_partitions(
            graph, None, list(graph.get_all_asset_keys()), instance, now.timestamp(), True
        )
        _, requests, seconds = iterate(data, graph, instance, now)
    per_instrument = Counter(r.partition_key.split("|")[0] for r in requests)
    return {
        "instruments": instruments,
        "target": "flat prototype: only tracked instrument-months exist",
        "tracked_instrument_months": len(keys),
        "first_iteration_runs": len(requests),
        "assets_per_run": sorted({len(r.asset_selection or []) for r in requests}),
        "most_months_of_one_instrument_requested_at_once": max(per_instrument.values()),
        "first_iteration_seconds": round(seconds, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--tracked", action="store_true", help="the backfill_tracked_job target")
    parser.add_argument("--flat", action="store_true", help="the flat-partition prototype")
    args = parser.parse_args()
    result = flat_prototype(args.instruments) if args.flat else plan(args.instruments, args.tracked)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
