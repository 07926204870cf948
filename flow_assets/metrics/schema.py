"""Names and dtypes of the normalized trades and of the flow bars (the spec's contract).

A *trade* is one record of the source: one fill of a raw trade file or one aggregated taker
trade of an aggTrades file. A *bar* is the half-open window ``[time, time + interval)``,
aligned to the UTC epoch, with the 36 flow fields below.
"""

from __future__ import annotations

import polars as pl

UTC_MICROS = pl.Datetime("us", "UTC")

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "exchange_ts": UTC_MICROS,  # time the exchange reports for the trade
    "arrival_ts": UTC_MICROS,  # time the trade reached the collector (nullable)
    "trade_id": pl.Int64(),  # exchange trade id; ties in time are ordered by it
    "price": pl.Float64(),  # quote currency per base unit, > 0
    "base_qty": pl.Float64(),  # base-asset quantity, > 0 (contracts already converted)
    "notional": pl.Float64(),  # quote-currency (USD) value, > 0
    "is_taker_buy": pl.Boolean(),  # the aggressor bought
}

TIMESTAMP_COLUMNS = {"exchange": "exchange_ts", "true": "arrival_ts"}

SIDES = ("buy", "sell")
SIZES = ("small", "medium", "large")
# Size buckets by per-trade notional in USD: small < 100 <= medium < 1000 <= large.
SMALL_MEDIUM_EDGE = 100.0
MEDIUM_LARGE_EDGE = 1000.0
BUCKET_METRICS = ("order_volume", "order_count", "order_percentage", "order_count_percentage")


def bucket_field(side: str, size: str, metric: str) -> str:
    """Name of one size-bucket field, e.g. ``taker_buy_small_order_volume``."""
    return f"taker_{side}_{size}_{metric}"


HEADLINE_FIELDS = (
    "taker_buy_volume",
    "taker_sell_volume",
    "taker_buy_count",
    "taker_sell_count",
    "volume_delta",
    "volume_delta_notional",
    "flow_entropy",
    "flow_toxicity_score",
    "taker_buy_sell_ratio",
    "taker_buy_sell_count_ratio",
    "taker_buy_sell_percentage",
    "taker_buy_sell_count_percentage",
)
# The spec's table lists the bucket templates in this order; each expands over side, then size.
BUCKET_FIELDS = tuple(
    bucket_field(side, size, metric)
    for metric in BUCKET_METRICS
    for side in SIDES
    for size in SIZES
)
FLOW_FIELDS: tuple[str, ...] = HEADLINE_FIELDS + BUCKET_FIELDS
assert len(FLOW_FIELDS) == 36

COUNT_FIELDS = frozenset(
    ["taker_buy_count", "taker_sell_count"]
    + [bucket_field(side, size, "order_count") for side in SIDES for size in SIZES]
)

BAR_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Datetime("us"),  # bar open, UTC wall clock, no zone (the product's file schema)
    **{name: (pl.Int64() if name in COUNT_FIELDS else pl.Float64()) for name in FLOW_FIELDS},
}
