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
    # The exchange's underlying trades an aggregated record stands for (Binance aggTrades:
    # first_trade_id..last_trade_id); null where the source has no such ids (one fill each).
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
}
FILL_ID_COLUMNS = ("first_trade_id", "last_trade_id")


def with_fill_ids(frame: pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` with the fill ids null where it has none (trades stored before they were kept,
    raw-trades code version 2 and older), so old and new trades concatenate."""
    present = frame.collect_schema().names()
    missing = [pl.lit(None, dtype=pl.Int64()).alias(c) for c in FILL_ID_COLUMNS if c not in present]
    return frame.with_columns(missing) if missing else frame


TIMESTAMP_COLUMNS = {"exchange": "exchange_ts", "true": "arrival_ts"}

# What one contract of an instrument is worth over time (the catalog gives it, the parsers of
# exchanges whose sizes are contracts use it): ``ct_val`` in ``[valid_from, valid_to)``; a null
# ``valid_from`` means since listing, a null ``valid_to`` still valid. Rows do not overlap.
CONTRACT_VALUES_SCHEMA = pl.Schema(
    {"valid_from": UTC_MICROS, "valid_to": UTC_MICROS, "ct_val": pl.Float64()}
)

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

TRADE_DESCRIPTIONS: dict[str, str] = {
    "exchange_ts": "Time the exchange reports for the trade (UTC).",
    "arrival_ts": "Time the trade reached the collector (UTC); only sources that record it.",
    "trade_id": "The exchange's trade id; ties in time are ordered by it.",
    "price": "Trade price in the quote currency.",
    "base_qty": "Quantity in the base asset (contracts converted with the value in force).",
    "notional": "Value in the quote currency (USD or a USD stablecoin).",
    "is_taker_buy": "True when the aggressor (taker) bought.",
    "first_trade_id": "First underlying exchange trade of an aggregated trade (Binance aggTrades); "
    "null where the source records single fills.",
    "last_trade_id": "Last underlying exchange trade of an aggregated trade; null as above.",
}

_HEADLINE_DESCRIPTIONS = {
    "taker_buy_volume": "Base-asset volume of taker buys in the bar (0 on empty bars).",
    "taker_sell_volume": "Base-asset volume of taker sells in the bar (0 on empty bars).",
    "taker_buy_count": "Number of taker-buy trades in the bar.",
    "taker_sell_count": "Number of taker-sell trades in the bar.",
    "volume_delta": "taker_buy_volume - taker_sell_volume (base asset).",
    "volume_delta_notional": "Taker buy notional - taker sell notional (USD).",
    "flow_entropy": "Binary Shannon entropy (bits) of the buy share of base volume, in [0, 1]; "
    "null on empty bars.",
    "flow_toxicity_score": "z(volume_delta_notional) x z(realized volatility over k bars), "
    "z-scores over the last W bars (defaults W=60, k=5); null during warm-up or at a zero std.",
    "taker_buy_sell_ratio": "taker_buy_volume / taker_sell_volume; null when no sells.",
    "taker_buy_sell_count_ratio": "taker_buy_count / taker_sell_count; null when no sells.",
    "taker_buy_sell_percentage": "Buy share of base volume, a fraction in [0, 1]; null on empty "
    "bars.",
    "taker_buy_sell_count_percentage": "Buy share of the trade count, in [0, 1]; null on empty "
    "bars.",
}
_BUCKET_TEMPLATES = {
    "order_volume": "Notional (USD) of taker {side}s of {size} size ({range}).",
    "order_count": "Number of taker {side}s of {size} size ({range}).",
    "order_percentage": "Share of the taker {side} notional in {size} trades ({range}); null "
    "when that side has none.",
    "order_count_percentage": "Share of the taker {side} count in {size} trades ({range}); null "
    "when that side has none.",
}
_SIZE_RANGES = {
    "small": f"notional < {SMALL_MEDIUM_EDGE:g} USD",
    "medium": f"{SMALL_MEDIUM_EDGE:g} <= notional < {MEDIUM_LARGE_EDGE:g} USD",
    "large": f"notional >= {MEDIUM_LARGE_EDGE:g} USD",
}
BAR_DESCRIPTIONS: dict[str, str] = {
    "time": "Bar open time, UTC wall clock (no zone); the bar is [time, time + interval).",
    **_HEADLINE_DESCRIPTIONS,
    **{
        bucket_field(side, size, metric): template.format(
            side=side, size=size, range=_SIZE_RANGES[size]
        )
        for metric, template in _BUCKET_TEMPLATES.items()
        for side in SIDES
        for size in SIZES
    },
}
assert set(BAR_DESCRIPTIONS) == set(BAR_SCHEMA)
