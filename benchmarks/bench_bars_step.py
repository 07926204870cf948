"""The flow_bars step alone, outside Dagster: ``publish_flow`` of one month from published trades.

Copies the month's published raw trades (a ``bench_pipeline.py`` run's store) into a fresh store,
then runs :func:`flow_assets.month.publish_flow` (exchange time, all 10 intervals, warm-up) in a
child process per ``--code`` folder (a ``flow_assets`` snapshot, e.g. the ``src`` of a
``bench_pipeline.py`` run, or ``.`` for the worktree), interleaved, ``--repeat`` times. Reports
wall and CPU seconds and the peak RSS (``ru_maxrss``) of each, and whether the published bars
of the first two codes are identical (and if not, the largest differences).

    .venv/bin/python benchmarks/bench_bars_step.py data/bench/pipeline/run-<tag>/store \\
        --code data/bench/pipeline/run-<old>/src --code .
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

EXCHANGE = "binance-futures"
SYMBOL = "perpetual-BTC-USDT:USDT"


def child(store_dir: Path, month: date) -> dict:
    """(Child process) publish the month's bars; time, CPU and peak RSS."""
    import flow_assets  # noqa: PLC0415
    from flow_assets.month import publish_flow  # noqa: PLC0415
    from flow_assets.store import LocalStore  # noqa: PLC0415

    t0, cpu0 = time.perf_counter(), time.process_time()
    outcome = publish_flow(LocalStore(store_dir), EXCHANGE, SYMBOL, month, ("exchange",))
    return {
        "code": str(Path(flow_assets.__file__).parents[1]),
        "published": outcome.published,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def compare(a: Path, b: Path, month: date) -> dict:
    """Whether the bars published in stores ``a`` and ``b`` are identical; else the largest
    relative and absolute difference of each float field over the intervals."""
    import polars as pl  # noqa: PLC0415

    from flow_assets.publish import read_manifest  # noqa: PLC0415
    from flow_assets.store import LocalStore  # noqa: PLC0415

    sa, sb = LocalStore(a), LocalStore(b)
    ma = read_manifest(sa, "flow", EXCHANGE, SYMBOL, month)
    mb = read_manifest(sb, "flow", EXCHANGE, SYMBOL, month)
    identical, worst = [], {}
    for name in ma.files:
        x, y = sa.read_parquet(ma.key_of(name)), sb.read_parquet(mb.key_of(name))
        if x.equals(y, null_equal=True):
            identical.append(name)
            continue
        for column in x.columns:
            if x[column].dtype != pl.Float64 or x[column].equals(y[column], null_equal=True):
                continue
            pair = pl.DataFrame({"x": x[column], "y": y[column]}).drop_nulls()
            diff = (pl.col("x") - pl.col("y")).abs()
            scale = pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs(), pl.lit(1e-300))
            rel, ab = pair.select((diff / scale).max(), diff.max().alias("a")).row(0)
            if rel > worst.get(column, (0.0, 0.0))[0]:
                worst[column] = (rel, ab)
    return {"identical": identical, "largest_differences": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a store with the month's published raw trades")
    parser.add_argument("--code", type=Path, action="append", required=True)
    parser.add_argument("--month", default="2024-07-01")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    month = date.fromisoformat(ns.month)
    if ns.child:
        print(json.dumps(child(ns.store, month)))
        return
    runs = []
    with tempfile.TemporaryDirectory(dir=ns.store.parent) as tmp:
        for _ in range(ns.repeat):
            for index, code in enumerate(ns.code):
                dest = Path(tmp) / f"store-{index}"
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(ns.store / "trades", dest / "trades")
                env = {**os.environ, "PYTHONPATH": str(code.resolve())}
                cmd = [sys.executable, __file__, str(dest), "--code", str(code), "--child"]
                cmd += ["--month", ns.month]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                with open("/proc/loadavg") as fh:
                    runs[-1]["load"] = float(fh.read().split()[0])
                print(json.dumps(runs[-1]), flush=True)
        if len(ns.code) > 1:
            same = compare(Path(tmp) / "store-0", Path(tmp) / "store-1", month)
            print(json.dumps(same, indent=1))


if __name__ == "__main__":
    main()
