"""Removing instruments from the file: Dagster's per-key deletes vs the sensor's one batch.

On a throwaway SQLite instance (Dagster's default storage), registers ``--keys`` instrument keys
in one call, then removes ``--remove`` of them twice over: the way Dagster 1.13's daemon applies a
``DeleteDynamicPartitionsRequest`` (per key: ``has_dynamic_partition``, then
``delete_dynamic_partition``), and the way ``instruments_sensor`` does
(:func:`flow_assets.orchestration.catalog.delete_partition_keys`: one transaction). Prints JSON.

    .venv/bin/python benchmarks/bench_partition_removal.py      # 650 of 700
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.orchestration.catalog import delete_partition_keys  # noqa: E402

NAME = "binance_futures_instruments"


def timed_removal(keys: list[str], remove: int, batch: bool) -> float:
    """Seconds to remove the first ``remove`` of ``keys`` from a fresh instance."""
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        instance.add_dynamic_partitions(NAME, keys)
        started = time.monotonic()
        if batch:
            delete_partition_keys(instance, NAME, keys[:remove])
        else:
            for key in keys[:remove]:
                if instance.has_dynamic_partition(NAME, key):
                    instance.delete_dynamic_partition(NAME, key)
        seconds = time.monotonic() - started
        assert len(instance.get_dynamic_partitions(NAME)) == len(keys) - remove
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=700)
    parser.add_argument("--remove", type=int, default=650)
    args = parser.parse_args()
    keys = [f"SYN{i:04d}-USDT:USDT" for i in range(args.keys)]
    report = {
        "keys": args.keys,
        "removed": args.remove,
        "dagster_daemon_per_key_seconds": round(timed_removal(keys, args.remove, False), 2),
        "one_batch_seconds": round(timed_removal(keys, args.remove, True), 3),
        "load": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
