"""``python -m flow_assets.orchestration sync-instruments``: what ``instruments_sensor`` does on
the daemon, once, into the instance of ``DAGSTER_HOME`` (for ``dagster asset materialize`` and
benchmarks without a daemon). Configured like the code location, from the environment."""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flow_assets.orchestration")
    parser.add_argument("command", choices=["sync-instruments"])
    parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        result = run_instruments_sensor(build_definitions(), instance)
    if isinstance(result, dg.SkipReason):
        print(result.skip_message)
    else:
        for request in result.dynamic_partitions_requests or []:
            print(
                f"{type(request).__name__}: {request.partitions_def_name} {request.partition_keys}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
