"""A deliberately naive reference for the flow bars, written straight from the spec.

It bins the trades of each interval directly (no roll-up, no chunks), finds each close by
sorting, and computes every z-score from its own window with ``numpy.mean`` / ``numpy.std``
(``ddof=1``), treating a window of equal values as std 0. It is slow and only for tests.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime

import numpy as np
import polars as pl

from flow_assets.metrics.intervals import interval_micros
from flow_assets.metrics.schema import BAR_SCHEMA, FLOW_FIELDS, SIDES, SIZES, bucket_field

_SIZE_OF = {"small": (0.0, 100.0), "medium": (100.0, 1000.0), "large": (1000.0, math.inf)}


def _micros(moment: datetime) -> int:
    return int(pl.Series([moment]).cast(pl.Datetime("us")).dt.epoch("us")[0])


def _zscores(values: list[float | None], window: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    for t in range(window - 1, len(values)):
        chunk = values[t - window + 1 : t + 1]
        if any(v is None for v in chunk):
            continue
        arr = np.array(chunk, dtype=float)
        if arr.max() == arr.min():
            continue
        std = float(np.std(arr, ddof=1))
        out[t] = (chunk[-1] - float(np.mean(arr))) / std
    return out


def reference_bars(
    trades: pl.DataFrame,
    interval: str,
    start: datetime,
    end: datetime,
    *,
    timestamp: str = "exchange",
    window: int = 60,
    horizon: int = 5,
) -> pl.DataFrame:
    """The bars of one interval on ``[start, end)``, trades before ``start`` as history."""
    width = interval_micros(interval)
    start_us, end_us = _micros(start), _micros(end)
    column = "exchange_ts" if timestamp == "exchange" else "arrival_ts"
    rows = (
        trades.with_columns(pl.col(column).dt.epoch("us").alias("ts"))
        .filter(pl.col("ts") < end_us)
        .sort("ts", "trade_id")
        .with_columns((pl.col("ts") // width * width).alias("bin"))
    )
    first_bin = rows["bin"].min() if rows.height else None
    grid_start = start_us
    lookback = (window + horizon) * width
    if first_bin is not None and first_bin < start_us:
        grid_start = max(first_bin, start_us - lookback)
    by_bin: dict[int, list[dict]] = {}
    for row in rows.iter_rows(named=True):
        by_bin.setdefault(row["bin"], []).append(row)
    last_close = None
    for b in sorted(by_bin):
        if b < grid_start:
            last_close = by_bin[b][-1]["price"]

    records = []
    for b in range(grid_start, end_us, width):
        items = by_bin.get(b, [])
        if items:
            last_close = items[-1]["price"]
        record: dict = {"bin": b, "close": last_close}
        record["vb"] = sum(r["base_qty"] for r in items if r["is_taker_buy"])
        record["vs"] = sum(r["base_qty"] for r in items if not r["is_taker_buy"])
        for side in SIDES:
            for size in SIZES:
                low, high = _SIZE_OF[size]
                chosen = [
                    r
                    for r in items
                    if r["is_taker_buy"] == (side == "buy") and low <= r["notional"] < high
                ]
                record[f"n_{side}_{size}"] = sum(r["notional"] for r in chosen)
                record[f"c_{side}_{size}"] = len(chosen)
        record["nb"] = sum(record[f"n_buy_{z}"] for z in SIZES)
        record["ns"] = sum(record[f"n_sell_{z}"] for z in SIZES)
        records.append(record)

    closes = [r["close"] for r in records]
    returns = [None] + [
        math.log(c / p) if c is not None and p is not None else None
        for p, c in itertools.pairwise(closes)
    ]
    rv: list[float | None] = []
    for t in range(len(records)):
        recent = returns[max(0, t - horizon + 1) : t + 1]
        ok = t >= horizon - 1 and all(r is not None for r in recent)
        rv.append(math.sqrt(sum(r * r for r in recent)) if ok else None)
    z_flow = _zscores([r["nb"] - r["ns"] for r in records], window)
    z_rv = _zscores(rv, window)

    def ratio(a: float, b: float) -> float | None:
        return a / b if b != 0 else None

    def entropy(vb: float, vs: float) -> float | None:
        total = vb + vs
        if total == 0:
            return None
        h = 0.0
        for part in (vb, vs):
            if 0 < part < total:
                h -= part / total * math.log2(part / total)
        return min(max(h, 0.0), 1.0)

    out = []
    for r, zf, zr in zip(records, z_flow, z_rv, strict=True):
        if r["bin"] < start_us:
            continue
        cb = sum(r[f"c_buy_{z}"] for z in SIZES)
        cs = sum(r[f"c_sell_{z}"] for z in SIZES)
        row = {
            "time": r["bin"],
            "taker_buy_volume": r["vb"],
            "taker_sell_volume": r["vs"],
            "taker_buy_count": cb,
            "taker_sell_count": cs,
            "volume_delta": r["vb"] - r["vs"],
            "volume_delta_notional": r["nb"] - r["ns"],
            "flow_entropy": entropy(r["vb"], r["vs"]),
            "flow_toxicity_score": zf * zr if zf is not None and zr is not None else None,
            "taker_buy_sell_ratio": ratio(r["vb"], r["vs"]),
            "taker_buy_sell_count_ratio": ratio(cb, cs),
            "taker_buy_sell_percentage": ratio(r["vb"], r["vb"] + r["vs"]),
            "taker_buy_sell_count_percentage": ratio(cb, cb + cs),
        }
        side_notional = {"buy": r["nb"], "sell": r["ns"]}
        side_count = {"buy": cb, "sell": cs}
        for side in SIDES:
            for size in SIZES:
                n, c = r[f"n_{side}_{size}"], r[f"c_{side}_{size}"]
                row[bucket_field(side, size, "order_volume")] = n
                row[bucket_field(side, size, "order_count")] = c
                row[bucket_field(side, size, "order_percentage")] = ratio(n, side_notional[side])
                row[bucket_field(side, size, "order_count_percentage")] = ratio(c, side_count[side])
        out.append(row)
    frame = pl.DataFrame(out, schema={"time": pl.Int64, **{f: BAR_SCHEMA[f] for f in FLOW_FIELDS}})
    return frame.with_columns(pl.col("time").cast(pl.Datetime("us")))
