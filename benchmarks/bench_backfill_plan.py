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
"""

import argparse
import json
import os
import resource
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets_tests.backfill_plan import first_iteration  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--tracked", action="store_true", help="the backfill_tracked_job target")
    args = parser.parse_args()
    print(json.dumps(plan(args.instruments, args.tracked), indent=2))


if __name__ == "__main__":
    main()
