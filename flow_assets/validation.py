"""pandera (polars backend) models of the normalized trades and of the flow bars.

Validate *collected* DataFrames: on a LazyFrame pandera only checks the schema. Both
validators run with ``lazy=True`` so every failure is reported at once in one
``pandera.errors.SchemaErrors`` (its ``failure_cases`` is a polars frame).

The bar checks are the spec's invariants: dtypes and nullability, volumes, notionals and
counts >= 0, percentages and entropy in [0, 1], no NaN or infinity, ``time`` strictly increasing
and evenly spaced by the interval, ``volume_delta == taker_buy_volume - taker_sell_volume``,
and small + medium + large == side total (counts exactly, notionals to rounding).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from flow_assets.metrics.intervals import interval_micros
from flow_assets.metrics.schema import (
    BAR_SCHEMA,
    COUNT_FIELDS,
    FLOW_FIELDS,
    SIDES,
    SIZES,
    TRADE_SCHEMA,
    bucket_field,
)

# Fields that may be null (undefined), and when: see the spec's "null when" column.
_NULLABLE_FIELDS = frozenset(
    name
    for name in FLOW_FIELDS
    if name in {"flow_entropy", "flow_toxicity_score"} or "ratio" in name or "percentage" in name
)
_UNIT_INTERVAL_FIELDS = frozenset(
    name for name in FLOW_FIELDS if name == "flow_entropy" or "percentage" in name
)
_NON_NEGATIVE_FIELDS = frozenset(
    name
    for name in FLOW_FIELDS
    if name in COUNT_FIELDS or name.endswith("_volume") or name.endswith("_ratio")
)
# Relative tolerance for sums that are equal in exact arithmetic but rounded differently.
ROUNDING_TOLERANCE = 1e-9


def _frame_check(name: str, expr: pl.Expr) -> pa.Check:
    """A dataframe-level check: ``expr`` (one boolean per row) must be true on every row."""

    def check(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(expr.fill_null(True).alias(name))

    return pa.Check(check, name=name, error=name)


def _close(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """``a`` and ``b`` equal to rounding (relative to their size, with an absolute floor)."""
    scale = pl.max_horizontal(a.abs(), b.abs(), pl.lit(1e-300))
    return (a - b).abs() <= ROUNDING_TOLERANCE * scale


def _finite(column: str) -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(pl.col(data.key).is_finite().fill_null(True)),
        name="finite",
        error=f"{column} must be finite (undefined values are null, never NaN or inf)",
    )


TRADES_SCHEMA = pa.DataFrameSchema(
    {
        "exchange_ts": pa.Column(TRADE_SCHEMA["exchange_ts"], nullable=False),
        "arrival_ts": pa.Column(TRADE_SCHEMA["arrival_ts"], nullable=True, required=False),
        "trade_id": pa.Column(pl.Int64, nullable=False),
        "price": pa.Column(pl.Float64, [pa.Check.gt(0), _finite("price")], nullable=False),
        "base_qty": pa.Column(pl.Float64, [pa.Check.gt(0), _finite("base_qty")], nullable=False),
        "notional": pa.Column(pl.Float64, [pa.Check.gt(0), _finite("notional")], nullable=False),
        "is_taker_buy": pa.Column(pl.Boolean, nullable=False),
        "first_trade_id": pa.Column(pl.Int64, nullable=True, required=False),
        "last_trade_id": pa.Column(pl.Int64, nullable=True, required=False),
    },
    name="normalized trades",
    strict=True,
    ordered=False,
)


def _field_column(name: str) -> pa.Column:
    checks: list[pa.Check] = []
    if name not in COUNT_FIELDS:
        checks.append(_finite(name))
    if name in _NON_NEGATIVE_FIELDS:
        checks.append(pa.Check.ge(0))
    if name in _UNIT_INTERVAL_FIELDS:
        checks.append(pa.Check.in_range(0.0, 1.0))
    return pa.Column(BAR_SCHEMA[name], checks, nullable=name in _NULLABLE_FIELDS)


def _invariant_checks(interval: str) -> list[pa.Check]:
    width = interval_micros(interval)
    step = pl.col("time").diff().dt.total_microseconds()
    checks = [
        _frame_check(f"time strictly increasing, spaced by {interval}", step == width),
        _frame_check(
            "volume_delta == taker_buy_volume - taker_sell_volume",
            pl.col("volume_delta") == pl.col("taker_buy_volume") - pl.col("taker_sell_volume"),
        ),
        _frame_check(
            "bar open aligned to the interval", pl.col("time").dt.epoch("us") % width == 0
        ),
    ]
    side_counts = {"buy": pl.col("taker_buy_count"), "sell": pl.col("taker_sell_count")}
    for side in SIDES:
        count_sum = pl.sum_horizontal(bucket_field(side, z, "order_count") for z in SIZES)
        checks.append(
            _frame_check(
                f"{side} bucket counts sum to taker_{side}_count", count_sum == side_counts[side]
            )
        )
        percentage_sum = pl.sum_horizontal(bucket_field(side, z, "order_percentage") for z in SIZES)
        checks.append(
            _frame_check(
                f"{side} bucket notional percentages sum to 1",
                pl.when(side_counts[side] > 0).then(_close(percentage_sum, pl.lit(1.0))),
            )
        )
    notional_delta = pl.sum_horizontal(
        bucket_field("buy", z, "order_volume") for z in SIZES
    ) - pl.sum_horizontal(bucket_field("sell", z, "order_volume") for z in SIZES)
    checks.append(
        _frame_check(
            "volume_delta_notional == buy bucket notional - sell bucket notional",
            _close(pl.col("volume_delta_notional"), notional_delta),
        )
    )
    return checks


def bars_schema(interval: str) -> pa.DataFrameSchema:
    """The pandera schema of one interval's flow bars (the spec's file schema and invariants)."""
    columns = {"time": pa.Column(BAR_SCHEMA["time"], nullable=False, unique=True)}
    columns |= {name: _field_column(name) for name in FLOW_FIELDS}
    return pa.DataFrameSchema(
        columns,
        checks=_invariant_checks(interval),
        name=f"flow bars {interval}",
        strict=True,
        ordered=True,
    )


def validate_trades(trades: pl.DataFrame) -> pl.DataFrame:
    """Validate collected normalized trades; raises ``SchemaErrors`` listing every failure."""
    return TRADES_SCHEMA.validate(_collected(trades), lazy=True)


def validate_bars(bars: pl.DataFrame, interval: str) -> pl.DataFrame:
    """Validate collected bars of ``interval``; raises ``SchemaErrors`` listing every failure."""
    return bars_schema(interval).validate(_collected(bars), lazy=True)


def _collected(frame: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(
            f"validate a collected polars DataFrame (a LazyFrame only checks the schema), "
            f"got {type(frame).__name__}"
        )
    return frame
