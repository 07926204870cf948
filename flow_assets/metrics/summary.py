"""Daily cross-exchange flow: one row per day and base asset, summed over exchanges.

Built from the ``1d`` flow bars of every instrument (pure maths, no I/O). Notionals are in
USD (quote currency), so instruments of one base asset on different exchanges add up.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from flow_assets.metrics.schema import SIZES, bucket_field

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Datetime("us"),
    "base": pl.Utf8(),
    "exchanges": pl.UInt32(),
    "taker_buy_notional": pl.Float64(),
    "taker_sell_notional": pl.Float64(),
    "net_taker_notional": pl.Float64(),
    "taker_buy_share": pl.Float64(),
    "trades": pl.Int64(),
    "large_order_share": pl.Float64(),
}
SUMMARY_DESCRIPTIONS: dict[str, str] = {
    "time": "Open of the UTC day (no zone, UTC wall clock), as the 1d bars' time.",
    "base": "Base asset (BTC, ETH, ...): every tracked instrument of that base, all exchanges.",
    "exchanges": "How many exchanges had published 1d bars of this base for the day.",
    "taker_buy_notional": "Notional (USD) of taker buys, summed over instruments and exchanges.",
    "taker_sell_notional": "Notional (USD) of taker sells, summed over instruments and exchanges.",
    "net_taker_notional": "taker_buy_notional - taker_sell_notional (USD): net taker flow.",
    "taker_buy_share": "taker_buy_notional / (buy + sell notional); null on a day without trades.",
    "trades": "Taker trades (buy + sell counts) of the day over instruments and exchanges.",
    "large_order_share": "Notional share of trades of 1000 USD or more (both sides); null on a "
    "day without trades.",
}


def daily_flow_summary(daily_bars: Iterable[tuple[str, str, pl.DataFrame]]) -> pl.DataFrame:
    """``(exchange, base, 1d bars)`` triples to the daily summary (``SUMMARY_SCHEMA``).

    ``taker_buy_share`` is buy notional over all taker notional (null on a day without trades);
    ``large_order_share`` is the notional share of trades of 1000 USD or more.
    """
    buy = pl.sum_horizontal(bucket_field("buy", z, "order_volume") for z in SIZES)
    sell = pl.sum_horizontal(bucket_field("sell", z, "order_volume") for z in SIZES)
    large = pl.col("taker_buy_large_order_volume") + pl.col("taker_sell_large_order_volume")
    frames = [
        bars.select(
            "time",
            pl.lit(base).alias("base"),
            pl.lit(exchange).alias("exchange"),
            buy.alias("buy"),
            sell.alias("sell"),
            large.alias("large"),
            (pl.col("taker_buy_count") + pl.col("taker_sell_count")).alias("trades"),
        )
        for exchange, base, bars in daily_bars
    ]
    if not frames:
        return pl.DataFrame(schema=SUMMARY_SCHEMA)
    total = pl.col("taker_buy_notional") + pl.col("taker_sell_notional")
    return (
        pl.concat(frames)
        .group_by("time", "base")
        .agg(
            pl.col("exchange").n_unique().alias("exchanges"),
            pl.col("buy").sum().alias("taker_buy_notional"),
            pl.col("sell").sum().alias("taker_sell_notional"),
            pl.col("trades").sum(),
            pl.col("large").sum(),
        )
        .with_columns(
            (pl.col("taker_buy_notional") - pl.col("taker_sell_notional")).alias(
                "net_taker_notional"
            ),
            pl.when(total > 0).then(pl.col("taker_buy_notional") / total).alias("taker_buy_share"),
            pl.when(total > 0).then(pl.col("large") / total).alias("large_order_share"),
        )
        .select(list(SUMMARY_SCHEMA))
        .cast(SUMMARY_SCHEMA)
        .sort("time", "base")
    )
