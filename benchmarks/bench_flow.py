"""Benchmark of the flow-bars engine on synthetic trades.

``week``: generate (once, cached under ``data/bench/``) a synthetic week of >= 25M trades as one
Parquet file, then measure in one process, interleaved (floor, engine, baseline,
baseline_in_order) x repeats:

* floor: a bare scan of the Parquet file, ``pl.scan_parquet(path).select(<the six columns the
  engine reads>).select(pl.all().max()).collect()``: every byte the engine needs is read and
  decoded, nothing is computed;
* engine: ``flow_bars_all(pl.scan_parquet(path), start, end)``, all 10 intervals, dense grid,
  36 fields, rolling toxicity;
* baseline (naive): for each of the 10 intervals separately, ``pl.scan_parquet(path)`` again and a
  plain polars ``group_by`` on the truncated time computing the engine's base aggregates per bar:
  taker buy / sell base volume, the 6 side x size notional sums, the 6 side x size counts and the
  close (last price by time, then trade id); sparse (bars with trades only), no dense grid, no
  derived fields, no rolling fields: strictly less work per interval than the engine does;
* baseline_in_order: the same, but the close is the last price in file order (no sort_by inside
  the aggregation), which is right only because the file is sorted: the cheapest naive variant.

Medians of the repeats, the ratios engine/floor and baseline/engine and the peak RSS of the
measuring process are printed; then each method runs once more in a fresh child process so its
own peak RSS is known.

``month``: a synthetic month of >= 150M trades in daily chunks, generated in memory with numpy and
fed to ``FlowBarsEngine.add`` then ``finish()``, in a fresh child process: trades, seconds,
peak RSS.

    .venv/bin/python benchmarks/bench_flow.py week
    .venv/bin/python benchmarks/bench_flow.py month
    .venv/bin/python benchmarks/bench_flow.py week --trades 2000000 --repeats 3   # quick check
    .venv/bin/python benchmarks/bench_flow.py month --days 2                      # quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.metrics.engine import FlowBarsEngine, flow_bars_all  # noqa: E402
from flow_assets.metrics.intervals import ALL_INTERVALS  # noqa: E402
from flow_assets.metrics.schema import (  # noqa: E402
    MEDIUM_LARGE_EDGE,
    SMALL_MEDIUM_EDGE,
    TRADE_SCHEMA,
)

BENCH_DIR = ROOT / "data" / "bench"
WEEK_START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
MONTH_START = datetime(2024, 1, 1, tzinfo=UTC)
ENGINE_COLUMNS = ("exchange_ts", "trade_id", "price", "base_qty", "notional", "is_taker_buy")
SECOND_US = 1_000_000
DAY_S = 86_400


# ---------------------------------------------------------------------------------------------
# synthetic trades
# ---------------------------------------------------------------------------------------------


def _segments(rng: np.random.Generator, n: int, starts_per_s: float, mean_len: float) -> np.ndarray:
    """Indicator (int8) of random segments over ``n`` seconds: Bernoulli starts, exp. lengths."""
    starts = np.flatnonzero(rng.random(n) < starts_per_s)
    lengths = np.maximum(1, rng.exponential(mean_len, starts.size).astype(np.int64))
    edges = np.zeros(n + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, np.minimum(starts + lengths, n), -1)
    return (np.cumsum(edges[:n]) > 0).astype(np.int8)


def synthetic_trades(
    rng: np.random.Generator,
    start_us: int,
    seconds: int,
    trades: int,
    *,
    first_id: int = 1,
    first_price: float = 60_000.0,
) -> pl.DataFrame:
    """About ``trades`` realistic trades over ``seconds`` from ``start_us``, sorted by time, id.

    * taker orders arrive as a Poisson process whose rate changes by regime (piecewise constant,
      log-normal levels, segments of ~30 min), with bursts (x20 for ~15 s) and quiet gaps (no
      trade at all for ~3 min);
    * each order fills 1 + Geometric maker orders that share its timestamp (ms resolution, so
      distinct orders also collide in busy seconds): many trades share a time;
    * notional per fill is Pareto (alpha 1.1, from $8): all of small / medium / large occur;
    * price is a random walk per order, fills of one order walk the book in the taker's direction;
    * the side has a regime bias; trade ids increase with time.
    """
    # per-second order intensity
    regime_id = np.cumsum(rng.random(seconds) < 1 / 1_800)
    levels = rng.lognormal(0.0, 0.8, regime_id[-1] + 1)
    bias = rng.uniform(-0.15, 0.15, regime_id[-1] + 1)
    rate = levels[regime_id]
    rate *= 1 + 19 * _segments(rng, seconds, 1 / 600, 15.0)
    rate *= 1 - _segments(rng, seconds, 1 / 5_400, 180.0)
    mean_fills = 1 / 0.45  # 1 + Geometric(p=0.45) - 1 ... mean of Geometric(p) is 1/p
    rate *= trades / mean_fills / rate.sum()
    per_second = rng.poisson(rate)
    n_orders = int(per_second.sum())
    # order times (ms resolution), sides, prices
    second = np.repeat(np.arange(seconds, dtype=np.int64), per_second)
    order_ts = start_us + second * SECOND_US + rng.integers(0, 1_000, n_orders) * 1_000
    order_ts.sort()
    order_regime = regime_id[
        order_ts.clip(max=start_us + seconds * SECOND_US - 1) // SECOND_US - start_us // SECOND_US
    ]
    buy_order = rng.random(n_orders) < 0.5 + bias[order_regime]
    log_step = rng.standard_normal(n_orders) * 4e-5
    order_price = first_price * np.exp(np.cumsum(log_step))
    fills = rng.geometric(0.45, n_orders)
    # trades
    n = int(fills.sum())
    order_of = np.repeat(np.arange(n_orders), fills)
    fill_index = np.arange(n) - np.repeat(np.cumsum(fills) - fills, fills)
    is_buy = buy_order[order_of]
    price = np.round(order_price[order_of] + np.where(is_buy, 0.1, -0.1) * fill_index, 1)
    notional = 8.0 * (rng.pareto(1.1, n) + 1.0)
    base_qty = notional / price
    exchange_ts = order_ts[order_of]
    arrival_ts = exchange_ts + rng.exponential(3_000.0, n).astype(np.int64) + 500
    return pl.DataFrame(
        {
            "exchange_ts": pl.Series(exchange_ts).cast(pl.Datetime("us", "UTC")),
            "arrival_ts": pl.Series(arrival_ts).cast(pl.Datetime("us", "UTC")),
            "trade_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "first_trade_id": np.arange(first_id, first_id + n, dtype=np.int64),  # one fill each
            "last_trade_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "price": price,
            "base_qty": base_qty,
            "notional": notional,
            "is_taker_buy": is_buy,
        },
        schema=TRADE_SCHEMA,
    )


def week_path(trades: int, seed: int) -> Path:
    return BENCH_DIR / f"week_{trades}_seed{seed}.parquet"


def generate_week(trades: int, seed: int) -> Path:
    path = week_path(trades, seed)
    if path.exists():
        return path
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    frame = synthetic_trades(rng, _us(WEEK_START), 7 * DAY_S, trades)
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp)
    tmp.rename(path)
    print(f"generated {frame.height:,} trades in {time.perf_counter() - t0:.1f} s -> {path}")
    return path


def describe(path: Path) -> dict[str, float]:
    """A few facts showing the synthetic week is realistic (ties, gaps, buckets)."""
    ts = pl.col("exchange_ts")
    facts = (
        pl.scan_parquet(path)
        .select(
            pl.len().alias("trades"),
            (ts.diff() == pl.duration(microseconds=0)).mean().alias("share_tied_with_previous"),
            (ts.diff().dt.total_seconds() >= 60).sum().alias("gaps_over_1_min"),
            ts.diff().dt.total_seconds().max().alias("longest_gap_s"),
            (pl.col("notional") < SMALL_MEDIUM_EDGE).mean().alias("share_small"),
            (pl.col("notional") >= MEDIUM_LARGE_EDGE).mean().alias("share_large"),
            pl.col("is_taker_buy").mean().alias("share_buy"),
            ts.dt.truncate("1s").unique_counts().max().alias("max_trades_in_1s"),
        )
        .collect()
        .row(0, named=True)
    )
    return facts


# ---------------------------------------------------------------------------------------------
# the three measured methods
# ---------------------------------------------------------------------------------------------


def run_floor(path: Path) -> object:
    return pl.scan_parquet(path).select(ENGINE_COLUMNS).select(pl.all().max()).collect()


def run_engine(path: Path) -> object:
    return flow_bars_all(pl.scan_parquet(path), WEEK_START, WEEK_START + timedelta(days=7))


def naive_bars(
    path: Path, interval: str, start: datetime, end: datetime, *, trust_order: bool = False
) -> pl.DataFrame:
    """One interval's base aggregates per bar by a plain group-by over a fresh scan.

    The close is the price of the last trade by ``(exchange_ts, trade_id)``; with
    ``trust_order`` it is simply the last price in file order (right only for a sorted file).
    """
    buy = pl.col("is_taker_buy")
    notional = pl.col("notional")
    sizes = {
        "small": notional < SMALL_MEDIUM_EDGE,
        "medium": (notional >= SMALL_MEDIUM_EDGE) & (notional < MEDIUM_LARGE_EDGE),
        "large": notional >= MEDIUM_LARGE_EDGE,
    }
    aggs = [
        pl.col("base_qty").filter(buy).sum().alias("taker_buy_volume"),
        pl.col("base_qty").filter(~buy).sum().alias("taker_sell_volume"),
    ]
    for side, side_mask in (("buy", buy), ("sell", ~buy)):
        for size, size_mask in sizes.items():
            mask = side_mask & size_mask
            aggs.append(notional.filter(mask).sum().alias(f"taker_{side}_{size}_order_volume"))
            aggs.append(mask.sum().alias(f"taker_{side}_{size}_order_count"))
    price = pl.col("price")
    close = price.last() if trust_order else price.sort_by("exchange_ts", "trade_id").last()
    aggs.append(close.alias("close"))
    return (
        pl.scan_parquet(path)
        .select(ENGINE_COLUMNS)
        .filter(pl.col("exchange_ts").is_between(start, end, closed="left"))
        .group_by(pl.col("exchange_ts").dt.truncate(interval).alias("time"))
        .agg(aggs)
        .sort("time")
        .collect()
    )


def run_baseline(path: Path) -> object:
    end = WEEK_START + timedelta(days=7)
    return {i: naive_bars(path, i, WEEK_START, end) for i in ALL_INTERVALS}


def run_baseline_in_order(path: Path) -> object:
    end = WEEK_START + timedelta(days=7)
    return {i: naive_bars(path, i, WEEK_START, end, trust_order=True) for i in ALL_INTERVALS}


METHODS = {
    "floor": run_floor,
    "engine": run_engine,
    "baseline": run_baseline,
    "baseline_in_order": run_baseline_in_order,
}


def check_agreement(path: Path) -> None:
    """The engine's sums agree with the baseline's on every bar that has trades."""
    bars = run_engine(path)
    base = run_baseline(path)
    in_order = run_baseline_in_order(path)
    for interval in ALL_INTERVALS:
        assert in_order[interval]["close"].equals(base[interval]["close"]), interval
        got = bars[interval].filter(pl.col("taker_buy_count") + pl.col("taker_sell_count") > 0)
        want = base[interval]
        assert got.height == want.height, (interval, got.height, want.height)
        for column in want.columns[1:-1]:
            a, b = got[column].to_numpy(), want[column].to_numpy()
            assert np.allclose(a, b, rtol=1e-9, atol=1e-6), (interval, column)
    print("check: engine sums == baseline sums on every non-empty bar of every interval")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: list[str]) -> dict:
    """Run this script in a fresh process and return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    return f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, " + (
        f"python {platform.python_version()}, polars {pl.__version__}, numpy {np.__version__}"
    )


def cmd_week(ns: argparse.Namespace) -> None:
    path = week_path(ns.trades, ns.seed)
    if not path.exists():  # generate in a child so this process's peak RSS is the methods' own
        subprocess.run(
            [
                sys.executable,
                __file__,
                "generate",
                "--trades",
                str(ns.trades),
                "--seed",
                str(ns.seed),
            ],
            check=True,
        )
    # per-method peak RSS first, while this process is small: a child's ru_maxrss starts from
    # its parent's resident size at fork, so children started later would all report ours
    rss_each = {}
    if ns.rss_children:
        for name in METHODS:
            rss_each[name] = child(
                ["one", name, "--trades", str(ns.trades), "--seed", str(ns.seed)]
            )["peak_rss_mib"]
            print(
                f"peak RSS of {name} alone in a fresh process: {rss_each[name]:.0f} MiB", flush=True
            )
    facts = describe(path)
    print(f"machine: {machine()}")
    print(f"file: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    print(
        "data: "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v:,}" for k, v in facts.items()
        )
    )
    if ns.check:
        check_agreement(path)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(ns.warmup):
        for fn in METHODS.values():
            fn(path)
    for rep in range(ns.repeats):
        for name, fn in METHODS.items():
            t0 = time.perf_counter()
            result = fn(path)
            times[name].append(time.perf_counter() - t0)
            del result
        print(
            f"repeat {rep + 1}: " + "  ".join(f"{n} {t[-1]:.2f}s" for n, t in times.items()),
            flush=True,
        )
    med = {name: statistics.median(t) for name, t in times.items()}
    rss_self = peak_rss_mib()
    print()
    print(f"{'method':<18} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MiB':>13}")
    for name, t in times.items():
        rss = f"{rss_each[name]:.0f}" if name in rss_each else "-"
        print(f"{name:<18} {med[name]:>9.2f} {min(t):>7.2f} {max(t):>7.2f} {rss:>13}")
    print(f"trades: {facts['trades']:,}  repeats: {ns.repeats} (interleaved {', '.join(METHODS)})")
    print(f"engine / floor     = {med['engine'] / med['floor']:.2f}x  (target <= 4x)")
    print(f"baseline / engine  = {med['baseline'] / med['engine']:.2f}x  (target >= 5x)")
    print(
        f"baseline_in_order / engine = {med['baseline_in_order'] / med['engine']:.2f}x"
        " (the same group-by, close = last price in file order)"
    )
    print(f"engine throughput  = {facts['trades'] / med['engine'] / 1e6:.1f} M trades/s")
    print(f"peak RSS of the measuring process (all methods): {rss_self:.0f} MiB")


def cmd_one(ns: argparse.Namespace) -> None:
    path = week_path(ns.trades, ns.seed)
    t0 = time.perf_counter()
    METHODS[ns.method](path)
    seconds = time.perf_counter() - t0
    print(json.dumps({"method": ns.method, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


def cmd_month_child(ns: argparse.Namespace) -> None:
    rng = np.random.default_rng(ns.seed)
    start = MONTH_START
    end = start + timedelta(days=ns.days)
    engine = FlowBarsEngine(start, end)
    per_day = -(-ns.trades // ns.days)
    first_id, price, total = 1, 60_000.0, 0
    gen_s = 0.0
    t0 = time.perf_counter()
    for day in range(ns.days):
        g0 = time.perf_counter()
        chunk = synthetic_trades(
            rng,
            _us(start) + day * DAY_S * SECOND_US,
            DAY_S,
            per_day,
            first_id=first_id,
            first_price=price,
        )
        gen_s += time.perf_counter() - g0
        first_id += chunk.height
        price = float(chunk["price"][-1])
        total += chunk.height
        engine.add(chunk)
        del chunk
    bars = engine.finish()
    seconds = time.perf_counter() - t0
    rows = sum(b.height for b in bars.values())
    assert engine.trades_in_range == total
    assert int(bars["1d"]["taker_buy_count"].sum() + bars["1d"]["taker_sell_count"].sum()) == total
    print(
        json.dumps(
            {
                "trades": total,
                "days": ns.days,
                "seconds": seconds,
                "generation_seconds": gen_s,
                "engine_seconds": seconds - gen_s,
                "bar_rows": rows,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def cmd_month(ns: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    trades = ns.trades if ns.trades is not None else 4_900_000 * ns.days
    result = child(
        ["month-child", "--trades", str(trades), "--days", str(ns.days), "--seed", str(ns.seed)]
    )
    print(f"trades: {result['trades']:,} over {result['days']} days, in daily chunks")
    print(
        f"total {result['seconds']:.1f} s (generation {result['generation_seconds']:.1f} s, "
        f"engine add+finish {result['engine_seconds']:.1f} s), {result['bar_rows']:,} bar rows"
    )
    print(
        f"peak RSS of the child process: {result['peak_rss_mib']:.0f} MiB "
        f"({result['peak_rss_mib'] / 1024:.2f} GiB; target < 2 GiB)"
    )


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * SECOND_US


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    week = sub.add_parser("week", help="floor vs engine vs naive baseline on a synthetic week")
    week.add_argument("--trades", type=int, default=25_200_000, help="trades in the week")
    week.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (>= 3)")
    week.add_argument("--warmup", type=int, default=0, help="unmeasured rounds first")
    week.add_argument("--check", action="store_true", help="also check engine == baseline sums")
    week.add_argument(
        "--no-rss-children",
        dest="rss_children",
        action="store_false",
        help="skip the per-method peak RSS runs in fresh processes",
    )
    month = sub.add_parser("month", help="a synthetic month in daily chunks, peak RSS")
    month.add_argument(
        "--trades",
        type=int,
        default=None,
        help="trades in the month (default 4.9M per day: 151.9M for 31 days)",
    )
    month.add_argument("--days", type=int, default=31, help="days (daily chunks)")
    for name in ("generate", "one", "month-child"):  # internal: run in a child process
        p = sub.add_parser(name)
        if name == "one":
            p.add_argument("method", choices=list(METHODS))
        p.add_argument("--trades", type=int, default=25_200_000)
        p.add_argument("--days", type=int, default=31)
    for p in sub.choices.values():
        p.add_argument("--seed", type=int, default=7)
    ns = parser.parse_args(argv)
    if ns.command == "week":
        cmd_week(ns)
    elif ns.command == "month":
        cmd_month(ns)
    elif ns.command == "generate":
        generate_week(ns.trades, ns.seed)
    elif ns.command == "one":
        cmd_one(ns)
    else:
        cmd_month_child(ns)


if __name__ == "__main__":
    main()
