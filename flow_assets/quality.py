"""Data-quality findings on trades and bars, as plain data (no I/O, no Dagster).

* :func:`reconcile` — "nothing lost": the bars of a month hold exactly the month's trades.
* :func:`upstream_defects` — archive problems: days on one side only, days missing inside a
  month, and what the sources' row policies repaired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from flow_assets.metrics.schema import TIMESTAMP_COLUMNS

ONE_SIDED_MIN_TRADES = 10  # a day with at least this many trades all on one side is a defect
VOLUME_TOLERANCE = 1e-9


def source_totals(
    trades: pl.LazyFrame, start: datetime, end: datetime, timestamp: str = "exchange"
) -> dict[str, float | int]:
    """Trade count and taker buy/sell base volume of the trades whose time is in [start, end).

    Aggregated by the streaming engine: a month's file is never collected whole.
    """
    column = pl.col(TIMESTAMP_COLUMNS[timestamp])
    buy = pl.col("is_taker_buy")
    row = (
        trades.filter(column.is_between(start, end, closed="left"))
        .select(
            pl.len().alias("trades"),
            pl.col("base_qty").filter(buy).sum().alias("taker_buy_volume"),
            pl.col("base_qty").filter(~buy).sum().alias("taker_sell_volume"),
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    return {k: (int(v) if k == "trades" else float(v or 0.0)) for k, v in row.items()}


def reconcile(bars: pl.DataFrame, totals: dict[str, float | int]) -> tuple[bool, dict[str, Any]]:
    """Whether the bars' counts equal the source's (exactly) and volumes too (to rounding)."""
    counted = int(bars["taker_buy_count"].sum() + bars["taker_sell_count"].sum())
    findings: dict[str, Any] = {"trades_in_source": totals["trades"], "trades_in_bars": counted}
    passed = counted == totals["trades"]
    for name in ("taker_buy_volume", "taker_sell_volume"):
        in_bars = float(bars[name].sum())
        findings[f"{name}_source"] = totals[name]
        findings[f"{name}_bars"] = in_bars
        scale = max(abs(in_bars), abs(float(totals[name])), 1e-300)
        passed &= abs(in_bars - float(totals[name])) <= VOLUME_TOLERANCE * scale
    return passed, findings


def upstream_defects(
    trades: pl.DataFrame | pl.LazyFrame, report: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Severity (``ok``, ``warn`` or ``error``) and findings for a month of source trades.

    ``error``: a UTC day with at least ``ONE_SIDED_MIN_TRADES`` trades all on one side (the
    Binance ``trades`` archive defect), or days missing inside the month. ``warn``: rows the
    source repaired (duplicates, zero quantities, unordered rows), or trades that arrived before
    their exchange time (a collector clock behind the exchange's: near a month edge such a trade
    sits in the next month's file while its arrival time belongs to this month).

    A LazyFrame (e.g. a scan of a month's file) is aggregated by the streaming engine, a day's
    counts at a time, never collected whole.
    """
    per_day = (
        trades.lazy()
        .group_by(pl.col("exchange_ts").dt.date().alias("day"))
        .agg(
            pl.len().alias("trades"),
            pl.col("is_taker_buy").sum().alias("buys"),
            (pl.col("arrival_ts") < pl.col("exchange_ts")).sum().alias("early"),
        )
        .collect(engine="streaming")
    )
    one_sided_days = per_day.filter(
        (pl.col("trades") >= ONE_SIDED_MIN_TRADES)
        & ((pl.col("buys") == 0) | (pl.col("buys") == pl.col("trades")))
    ).sort("day")
    one_sided = [d.isoformat() for d in one_sided_days["day"].to_list()]
    missing = list(report.get("days_missing", []))
    repaired = list(report.get("defects", []))
    early = int(per_day["early"].sum() or 0)
    findings = {
        "one_sided_days": one_sided,
        "days_missing": missing,
        "repaired": repaired,
        "rows_dropped": report.get("rows_dropped", {}),
        "arrived_before_exchange_time": early,
    }
    if one_sided or missing:
        return "error", findings
    return ("warn" if repaired or early else "ok"), findings
