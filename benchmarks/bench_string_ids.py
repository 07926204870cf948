"""String trade ids (Bybit's UUID ``trdMatchID``): memory and time of the exact duplicate check.

Feeds ``days x per_day`` random 128-bit keys through :class:`flow_assets.sources.idset.StringIds`
in batches the size of a CSV chunk (300k distinct keys; within a batch the caller drops repeats
first), 1 in 1000 keys a repeat of a key of an earlier batch of the same day, then runs the
month-wide check across days. Prints the peak RSS of the process (``ru_maxrss``), the seconds
spent in ``add`` and in the check (key generation excluded), and the repeats found.

    .venv/bin/python benchmarks/bench_string_ids.py              # 30 days x 5M keys = 150M
    .venv/bin/python benchmarks/bench_string_ids.py --scale 0.2  # 30 days x 1M keys
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from flow_assets.sources.idset import StringIds

BATCH = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=float, default=1.0, help="x 5M keys a day")
    args = parser.parse_args()
    per_day = int(5_000_000 * args.scale)
    rng = np.random.default_rng(1)
    duplicates = 0
    with tempfile.TemporaryDirectory(prefix="bench-ids-") as tmp:
        ids = StringIds(Path(tmp))
        started = time.perf_counter()
        for day in range(args.days):
            for low in range(0, per_day, BATCH):
                n = min(BATCH, per_day - low)
                hi, lo = rng.integers(0, 2**63, (2, n), dtype=np.int64).astype(np.uint64)
                again = rng.random(n) < 0.001  # exact duplicates of earlier rows of the batch
                hi[again], lo[again] = hi[0], lo[0]
                unique = np.unique(np.column_stack([hi, lo]), axis=0)
                duplicates += (
                    int((~ids.add(day, unique[:, 0], unique[:, 1])).sum()) + n - len(unique)
                )
        added = time.perf_counter() - started
        count, _ = ids.repeated_across_days()
        checked = time.perf_counter() - started - added
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"keys {args.days * per_day:,} ({args.days} days x {per_day:,}); duplicates dropped "
        f"{duplicates:,}; repeated across days {count}; add {added:.1f} s, month-wide check "
        f"{checked:.1f} s; peak RSS {peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
