"""Hand-computed flow bars: every field, edges of buckets, bars, days and months, and errors."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.metrics import ALL_INTERVALS, BAR_SCHEMA, FLOW_FIELDS, flow_bars, flow_bars_all
from flow_assets.metrics.schema import SIDES, SIZES, bucket_field
from flow_assets.validation import validate_bars
from flow_assets_tests.trade_frames import trades_frame, utc

T0 = utc(2024, 1, 31, 23, 59, 0)


def _bar(bars: pl.DataFrame, when: datetime) -> dict:
    naive = when.astimezone(UTC).replace(tzinfo=None)
    rows = bars.filter(pl.col("time") == naive).to_dicts()
    assert len(rows) == 1, f"no single bar at {naive}"
    return rows[0]


def test_output_schema_is_time_then_the_36_fields_in_spec_order() -> None:
    bars = flow_bars(trades_frame([(T0, 1, 100.0, 1.0, True)]), "1m", T0, T0 + timedelta(minutes=3))
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.columns == ["time", *FLOW_FIELDS]
    assert bars["time"].to_list() == [
        T0.replace(tzinfo=None) + timedelta(minutes=i) for i in range(3)
    ]


def test_empty_bars_have_zero_volumes_and_null_ratios() -> None:
    bars = flow_bars(trades_frame([]), "1s", T0, T0 + timedelta(seconds=2))
    row = bars.row(0, named=True)
    for name in FLOW_FIELDS:
        zero = name.endswith(("_volume", "_count", "volume_delta", "volume_delta_notional"))
        assert row[name] == (0 if zero else None), name
    validate_bars(bars, "1s")


def test_single_trade_every_field() -> None:
    bars = flow_bars(trades_frame([(T0, 7, 250.0, 2.0, True)]), "1m", T0, T0 + timedelta(minutes=1))
    row = bars.row(0, named=True)
    expected = {
        "taker_buy_volume": 2.0,
        "taker_sell_volume": 0.0,
        "taker_buy_count": 1,
        "taker_sell_count": 0,
        "volume_delta": 2.0,
        "volume_delta_notional": 500.0,
        "flow_entropy": 0.0,
        "flow_toxicity_score": None,
        "taker_buy_sell_ratio": None,
        "taker_buy_sell_count_ratio": None,
        "taker_buy_sell_percentage": 1.0,
        "taker_buy_sell_count_percentage": 1.0,
    }
    for side in SIDES:
        for size in SIZES:
            hit = side == "buy" and size == "medium"
            expected[bucket_field(side, size, "order_volume")] = 500.0 if hit else 0.0
            expected[bucket_field(side, size, "order_count")] = int(hit)
            on_side = side == "buy"
            expected[bucket_field(side, size, "order_percentage")] = float(hit) if on_side else None
            expected[bucket_field(side, size, "order_count_percentage")] = (
                float(hit) if on_side else None
            )
    assert {k: row[k] for k in expected} == expected


def test_two_sided_bar_ratios_entropy_and_buckets() -> None:
    rows = [
        (T0, 1, 50.0, 1.0, True),  # notional 50: small buy
        (T0 + timedelta(seconds=1), 2, 100.0, 1.0, True),  # exactly 100: medium
        (T0 + timedelta(seconds=2), 3, 100.0, 10.0, False),  # exactly 1000: large sell
        (T0 + timedelta(seconds=3), 4, 99.99, 1.0, False),  # 99.99: small sell
    ]
    row = flow_bars(trades_frame(rows), "1m", T0, T0 + timedelta(minutes=1)).row(0, named=True)
    vb, vs = 2.0, 11.0
    p = vb / (vb + vs)
    assert row["taker_buy_volume"] == vb
    assert row["taker_sell_volume"] == vs
    assert row["volume_delta"] == vb - vs
    assert row["volume_delta_notional"] == pytest.approx(150.0 - 1099.99, rel=1e-12)
    assert row["flow_entropy"] == pytest.approx(-p * math.log2(p) - (1 - p) * math.log2(1 - p))
    assert row["taker_buy_sell_ratio"] == pytest.approx(vb / vs)
    assert row["taker_buy_sell_count_ratio"] == 1.0
    assert row["taker_buy_sell_percentage"] == pytest.approx(p)
    assert row["taker_buy_sell_count_percentage"] == 0.5
    assert row["taker_buy_small_order_volume"] == 50.0
    assert row["taker_buy_medium_order_volume"] == 100.0
    assert row["taker_sell_large_order_volume"] == 1000.0
    assert row["taker_sell_small_order_volume"] == pytest.approx(99.99)
    assert row["taker_sell_medium_order_count"] == 0
    assert row["taker_buy_small_order_percentage"] == pytest.approx(50 / 150)
    assert row["taker_sell_large_order_percentage"] == pytest.approx(1000 / 1099.99)
    assert row["taker_sell_large_order_count_percentage"] == 0.5


def test_ties_in_time_take_the_close_of_the_highest_trade_id() -> None:
    """window=2, horizon=1: z of a 2-bar window is ±1/√2, so toxicity is ±0.5 by signs alone.

    Bar 1 holds two trades at the same instant, ids 5 (110) and 4 (90), given out of order.
    Close 110 (id 5) gives returns ln 1.1 then 0: rv falls, vdn rises: toxicity -0.5.
    Close 90 would give rv rising (ln 0.9 then ln 110/90): toxicity +0.5.
    """
    tie = T0 + timedelta(seconds=1, microseconds=250)
    rows = [
        (T0, 1, 100.0, 1.0, True),
        (tie, 5, 110.0, 1.0, False),
        (tie, 4, 90.0, 1.0, True),
        (T0 + timedelta(seconds=2), 6, 110.0, 3.0, True),
    ]
    bars = flow_bars(trades_frame(rows), "1s", T0, T0 + timedelta(seconds=3), window=2, horizon=1)
    assert bars["flow_toxicity_score"].to_list() == [None, None, pytest.approx(-0.5)]


def test_toxicity_matches_a_hand_computation() -> None:
    """window=3, horizon=2 on five 1m bars with one trade each."""
    prices = [100.0, 101.0, 99.0, 102.0, 102.5]
    qty_side = [(1.0, True), (2.0, False), (1.5, True), (0.5, False), (3.0, True)]
    rows = [
        (T0 + timedelta(minutes=i), i, p, q, s)
        for i, (p, (q, s)) in enumerate(zip(prices, qty_side, strict=True))
    ]
    end = T0 + timedelta(minutes=5)
    bars = flow_bars(trades_frame(rows), "1m", T0, end, window=3, horizon=2)
    vdn = [p * q * (1 if s else -1) for p, (q, s) in zip(prices, qty_side, strict=True)]
    r = [None] + [math.log(b / a) for a, b in itertools.pairwise(prices)]
    rv = [None, None] + [math.sqrt(r[t - 1] ** 2 + r[t] ** 2) for t in range(2, 5)]

    def z(xs: list, t: int) -> float | None:
        window = xs[t - 2 : t + 1]
        if t < 2 or None in window:
            return None
        mean = sum(window) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in window) / 2)
        return (xs[t] - mean) / std

    expected = [
        z(vdn, t) * z(rv, t) if z(vdn, t) is not None and z(rv, t) is not None else None
        for t in range(5)
    ]
    assert expected[:4] == [None] * 4
    assert expected[4] is not None
    assert bars["flow_toxicity_score"].to_list() == [None] * 4 + [
        pytest.approx(expected[4], rel=1e-12)
    ]


def test_flat_prices_give_null_toxicity_never_nan() -> None:
    rows = [(T0 + timedelta(seconds=i), i, 100.0, 1.0 + i % 3, i % 2 == 0) for i in range(200)]
    bars = flow_bars(trades_frame(rows), "1s", T0, T0 + timedelta(seconds=200))
    assert bars["flow_toxicity_score"].null_count() == 200
    assert not bars.select(pl.col(pl.Float64).is_nan().any()).row(0).count(True)
    validate_bars(bars, "1s")


def test_midnight_and_month_edges() -> None:
    """A bar is [t, t + interval): 23:59:59.999999 is January, 00:00:00 is February."""
    last_jan = utc(2024, 1, 31, 23, 59, 59, 999_999)
    first_feb = utc(2024, 2, 1)
    rows = [(last_jan, 1, 100.0, 1.0, True), (first_feb, 2, 100.0, 2.0, False)]
    january = flow_bars_all(trades_frame(rows), utc(2024, 1, 1), first_feb)
    for interval, bars in january.items():
        assert bars["taker_buy_count"].sum() == 1, interval
        assert bars["taker_sell_count"].sum() == 0, interval
        assert bars["time"][-1] + timedelta(microseconds=1) <= first_feb.replace(tzinfo=None)
    assert january["1d"].height == 31
    assert january["4h"].height == 31 * 6
    assert _bar(january["1s"], utc(2024, 1, 31, 23, 59, 59))["taker_buy_volume"] == 1.0
    february = flow_bars(trades_frame(rows), "1d", first_feb, utc(2024, 3, 1))
    assert february.height == 29  # leap year
    assert february["taker_sell_volume"].to_list() == [2.0] + [0.0] * 28
    assert february["taker_buy_count"].sum() == 0  # January's trade is history only


def test_timestamp_true_bins_by_arrival_time() -> None:
    rows = [
        (T0, 1, 100.0, 1.0, True, T0 + timedelta(seconds=61)),
        (T0 + timedelta(seconds=1), 2, 100.0, 1.0, False, T0 + timedelta(seconds=2)),
    ]
    trades = trades_frame(rows, with_arrival=True)
    end = T0 + timedelta(minutes=2)
    by_exchange = flow_bars(trades, "1m", T0, end)
    by_arrival = flow_bars(trades, "1m", T0, end, timestamp="true")
    assert by_exchange["taker_buy_count"].to_list() == [1, 0]
    assert by_arrival["taker_buy_count"].to_list() == [0, 1]


def test_timestamp_true_without_arrival_is_an_error() -> None:
    trades = trades_frame([(T0, 1, 100.0, 1.0, True)])
    with pytest.raises(ValueError, match=r"null arrival_ts \(this source records no arrival"):
        flow_bars(trades, "1m", T0, T0 + timedelta(minutes=1), timestamp="true")


def test_naive_start_means_utc_and_aware_start_is_converted() -> None:
    trades = trades_frame([(T0, 1, 100.0, 1.0, True)])
    naive = flow_bars(
        trades, "1m", T0.replace(tzinfo=None), T0.replace(tzinfo=None) + timedelta(minutes=1)
    )
    plus_one = timezone(timedelta(hours=1))
    aware = flow_bars(
        trades, "1m", T0.astimezone(plus_one), T0.astimezone(plus_one) + timedelta(minutes=1)
    )
    assert_frame_equal(naive, aware)
    assert naive["taker_buy_count"].to_list() == [1]


def test_a_lazyframe_and_a_dataframe_give_the_same_bars() -> None:
    trades = trades_frame(
        [(T0 + timedelta(seconds=i), i, 100.0 + i, 1.0, i % 2 == 0) for i in range(90)]
    )
    end = T0 + timedelta(minutes=2)
    assert_frame_equal(flow_bars(trades, "15s", T0, end), flow_bars(trades.lazy(), "15s", T0, end))


GOOD = trades_frame([(T0, 1, 100.0, 1.0, True)])
END = T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("trades", "interval", "start", "end", "error", "match"),
    [
        (GOOD.drop("notional"), "1m", T0, END, ValueError, r"missing column\(s\) \['notional'\]"),
        (
            GOOD.with_columns(pl.col("price").cast(pl.Utf8)),
            "1m",
            T0,
            END,
            TypeError,
            "'price' must be Float64",
        ),
        (
            GOOD.with_columns(pl.col("exchange_ts").dt.replace_time_zone(None)),
            "1m",
            T0,
            END,
            ValueError,
            "must hold UTC times",
        ),
        (
            GOOD.with_columns(pl.col("exchange_ts").dt.convert_time_zone("Asia/Hong_Kong")),
            "1m",
            T0,
            END,
            ValueError,
            "must hold UTC times",
        ),
        (GOOD, "2m", T0, END, ValueError, "unknown interval '2m'; supported: 1s, 15s"),
        (GOOD, "1m", END, T0, ValueError, "end .* must be after start"),
        (GOOD, "1m", T0, T0, ValueError, "end .* must be after start"),
        (GOOD, "1h", T0, END, ValueError, "aligned to the 1h bars"),
        (
            GOOD.with_columns(price=pl.lit(0.0)),
            "1m",
            T0,
            END,
            ValueError,
            "price that is null, not finite or <= 0",
        ),
        (GOOD.with_columns(base_qty=pl.lit(float("nan"))), "1m", T0, END, ValueError, "base_qty"),
        (
            GOOD.with_columns(trade_id=pl.lit(None, pl.Int64)),
            "1m",
            T0,
            END,
            ValueError,
            "null trade_id",
        ),
        ("not a frame", "1m", T0, END, TypeError, "polars DataFrame or LazyFrame"),
    ],
)
def test_bad_input_is_a_clear_error(trades, interval, start, end, error, match) -> None:
    with pytest.raises(error, match=match):
        flow_bars(trades, interval, start, end)


def test_all_intervals_cover_a_day_densely() -> None:
    trades = trades_frame(
        [(utc(2024, 3, 10, h, 30), h, 100.0 + h, 1.0, h % 2 == 0) for h in range(24)]
    )
    bars = flow_bars_all(trades, utc(2024, 3, 10), utc(2024, 3, 11))
    assert list(bars) == list(ALL_INTERVALS)
    for interval, frame in bars.items():
        validate_bars(frame, interval)
        assert frame["taker_buy_count"].sum() + frame["taker_sell_count"].sum() == 24, interval
