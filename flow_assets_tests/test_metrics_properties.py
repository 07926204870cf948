"""Hypothesis properties of the engine.

Prices are multiples of 1/4 and quantities of 1/64, so every notional and every sum is exact
in binary floating point whatever the order of summation. That makes "chunked == unchunked"
and "a month with its predecessor's trades == the cut from one run" exact equalities; the
comparison with the naive reference uses the spec's tolerances (1e-9 relative, 1e-6 for
toxicity) because the two compute logs and z-scores along different paths.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from flow_assets.metrics import ALL_INTERVALS, FLOW_FIELDS, FlowBarsEngine, flow_bars, flow_bars_all
from flow_assets.validation import validate_bars
from flow_assets_tests.reference import reference_bars
from flow_assets_tests.trade_frames import trades_frame, utc

PROPERTY_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def trade_sets(
    draw: st.DrawFn, begin: datetime, span: timedelta, max_trades: int = 120
) -> pl.DataFrame:
    """Trades in ``[begin, begin + span)``: bursts, ties in time, quiet gaps, heavy-ish tails."""
    n = draw(st.integers(0, max_trades))
    span_us = int(span / timedelta(microseconds=1))
    anchors = draw(st.lists(st.integers(0, span_us - 1), min_size=1, max_size=6))
    offsets = draw(
        st.lists(
            st.one_of(
                st.sampled_from(anchors),  # ties and bursts around a few instants
                st.integers(0, span_us - 1),
            ),
            min_size=n,
            max_size=n,
        )
    )
    ids = draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n, unique=True))
    prices = draw(st.lists(st.integers(4, 8000), min_size=n, max_size=n))
    quantities = draw(
        st.lists(st.one_of(st.integers(1, 64), st.integers(1, 4096)), min_size=n, max_size=n)
    )
    sides = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rows = [
        (begin + timedelta(microseconds=o), i, p / 4, q / 64, s)
        for o, i, p, q, s in zip(offsets, ids, prices, quantities, sides, strict=True)
    ]
    return trades_frame(rows)


def _assert_close_to_reference(engine: pl.DataFrame, reference: pl.DataFrame) -> None:
    others = [f for f in FLOW_FIELDS if f != "flow_toxicity_score"]
    assert_frame_equal(
        engine.select("time", *others),
        reference.select("time", *others),
        rel_tol=1e-9,
        abs_tol=1e-9,
    )
    assert_frame_equal(
        engine.select("flow_toxicity_score"),
        reference.select("flow_toxicity_score"),
        rel_tol=1e-6,
        abs_tol=1e-6,
    )


HOUR_START = utc(2024, 2, 29, 23)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    trades=trade_sets(HOUR_START - timedelta(minutes=20), timedelta(minutes=80)),
    window=st.sampled_from([2, 3, 10, 60]),
    horizon=st.sampled_from([1, 2, 5]),
)
def test_fine_intervals_equal_their_direct_computation(trades, window, horizon) -> None:
    end = HOUR_START + timedelta(hours=1)
    intervals = ("1s", "15s", "30s", "1m", "5m")
    bars = flow_bars_all(
        trades, HOUR_START, end, intervals=intervals, window=window, horizon=horizon
    )
    for interval in intervals:
        expected = reference_bars(trades, interval, HOUR_START, end, window=window, horizon=horizon)
        _assert_close_to_reference(bars[interval], expected)


DAYS_START = utc(2024, 2, 27)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(
    trades=trade_sets(DAYS_START - timedelta(days=2), timedelta(days=5), max_trades=80),
    window=st.sampled_from([2, 3, 5]),
    horizon=st.sampled_from([1, 2]),
)
def test_coarse_intervals_equal_their_direct_computation(trades, window, horizon) -> None:
    end = DAYS_START + timedelta(days=3)
    intervals = ("15m", "30m", "1h", "4h", "1d")
    bars = flow_bars_all(
        trades, DAYS_START, end, intervals=intervals, window=window, horizon=horizon
    )
    for interval in intervals:
        expected = reference_bars(trades, interval, DAYS_START, end, window=window, horizon=horizon)
        _assert_close_to_reference(bars[interval], expected)


DAY = utc(2024, 3, 31)


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(trades=trade_sets(DAY - timedelta(hours=2), timedelta(hours=26)))
def test_rolled_up_intervals_equal_each_interval_computed_alone(trades) -> None:
    end = DAY + timedelta(days=1)
    together = flow_bars_all(trades, DAY, end, window=3, horizon=2)
    for interval in ALL_INTERVALS:
        alone = flow_bars(trades, interval, DAY, end, window=3, horizon=2)
        assert_frame_equal(together[interval], alone, check_exact=True)


@settings(PROPERTY_SETTINGS, max_examples=15)
@given(
    trades=trade_sets(DAY - timedelta(hours=1), timedelta(hours=26)),
    cuts=st.lists(st.integers(1, 10**6), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_chunked_equals_unchunked(trades, cuts, seed) -> None:
    """Chunks cut anywhere (bars split between chunks) and fed in any order."""
    end = DAY + timedelta(days=1)
    whole = flow_bars_all(trades, DAY, end, window=4, horizon=2)
    positions = sorted({c % (trades.height + 1) for c in cuts} | {0, trades.height})
    chunks = [trades.slice(a, b - a) for a, b in itertools.pairwise(positions)]
    random.Random(seed).shuffle(chunks)
    chunked = flow_bars_all(iter(chunks), DAY, end, window=4, horizon=2)
    for interval in ALL_INTERVALS:
        assert_frame_equal(chunked[interval], whole[interval], check_exact=True)


@settings(PROPERTY_SETTINGS, max_examples=15)
@given(
    trades=trade_sets(DAY - timedelta(hours=1), timedelta(hours=26)),
    cuts=st.lists(st.integers(1, 24 * 60), min_size=1, max_size=5, unique=True),
    at_least=st.sampled_from([1, 3, 100]),
)
def test_bars_made_piece_by_piece_equal_the_whole(trades, cuts, at_least) -> None:
    """Trades fed in time order, bars taken after each cut (bars_before), then the rest: the
    same bars, bit for bit, as at once; a trade before a cut already made is refused."""
    end = DAY + timedelta(days=1)
    whole = flow_bars_all(trades, DAY, end, window=4, horizon=2)
    engine = FlowBarsEngine(DAY, end, window=4, horizon=2)
    made: dict[str, list[pl.DataFrame]] = {i: [] for i in ALL_INTERVALS}
    low = None
    for minutes in sorted(cuts):
        cut = DAY + timedelta(minutes=minutes)
        inside = pl.col("exchange_ts") < cut
        if low is not None:
            inside &= pl.col("exchange_ts") >= low
        engine.add(trades.filter(inside))
        for interval, bars in engine.bars_before(cut, at_least=at_least):
            made[interval].append(bars)
        low = cut
    early = trades.filter(pl.col("exchange_ts") < low)
    if early.height:
        with pytest.raises(ValueError, match="came after the bars before"):
            engine.add(early.tail(1))
    engine.add(trades.filter(pl.col("exchange_ts") >= low))
    for interval, bars in engine.iter_bars():
        made[interval].append(bars)
    for interval in ALL_INTERVALS:
        assert_frame_equal(pl.concat(made[interval]), whole[interval], check_exact=True)


@settings(PROPERTY_SETTINGS, max_examples=10)
@given(trades=trade_sets(utc(2024, 2, 28, 12), timedelta(hours=36), max_trades=200))
def test_a_month_with_its_predecessors_trades_equals_the_cut_from_one_run(trades) -> None:
    """February and March as partitions (March fed February's trades) vs one long run."""
    feb, mar, apr = utc(2024, 2, 28), utc(2024, 2, 29), utc(2024, 3, 1)
    intervals = ("1s", "15s", "1m", "5m", "1h", "4h", "1d")
    one_run = flow_bars_all(trades, feb, apr, intervals=intervals, window=8, horizon=3)
    second = flow_bars_all(trades, mar, apr, intervals=intervals, window=8, horizon=3)
    cut = mar.replace(tzinfo=None)
    for interval in intervals:
        assert_frame_equal(
            second[interval], one_run[interval].filter(pl.col("time") >= cut), check_exact=True
        )


@settings(PROPERTY_SETTINGS, max_examples=15)
@given(trades=trade_sets(DAY - timedelta(minutes=30), timedelta(hours=3), max_trades=300))
def test_invariants_hold_and_nothing_is_lost(trades) -> None:
    start, end = DAY, DAY + timedelta(hours=2)
    engine = FlowBarsEngine(start, end, intervals=("1s", "1m", "1h"))
    engine.add(trades)
    bars = engine.finish()
    in_range = trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left"))
    assert engine.trades_in_range == in_range.height
    for interval, frame in bars.items():
        validate_bars(frame, interval)
        assert frame["taker_buy_count"].sum() + frame["taker_sell_count"].sum() == in_range.height
        buys = in_range.filter("is_taker_buy")
        assert frame["taker_buy_volume"].sum() == buys["base_qty"].sum()
        assert (
            frame["taker_buy_medium_order_count"].sum()
            == buys.filter(pl.col("notional").is_between(100, 1000, closed="left")).height
        )


@settings(PROPERTY_SETTINGS, max_examples=10)
@given(
    quantities=st.lists(st.integers(1, 10**6), min_size=1, max_size=400),
    price=st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False),
)
def test_flat_prices_give_zero_rv_and_null_toxicity_never_nan(quantities, price) -> None:
    rows = [
        (DAY + timedelta(seconds=i), i, price, q / 1000, i % 3 != 0)
        for i, q in enumerate(quantities)
    ]
    bars = flow_bars(
        trades_frame(rows), "1s", DAY, DAY + timedelta(minutes=10), window=5, horizon=2
    )
    assert bars["flow_toxicity_score"].null_count() == bars.height
    floats = bars.select(pl.col(pl.Float64))
    assert (
        floats.select(pl.any_horizontal(pl.all().is_nan() | pl.all().is_infinite()).any()).item()
        is False
    )


def test_dense_history_is_trimmed_to_exactly_what_the_rolling_fields_reach() -> None:
    """Every second traded for 10 minutes before and after the cut (defaults W=60, k=5).

    The split run keeps only the last W + k + 1 history bars per interval: toxicity at the
    cut needs closes 64 bars back, so keeping fewer would change the first bars.
    """
    cut = utc(2024, 3, 1)
    rows = [
        (
            cut + timedelta(seconds=s),
            10_000 + s,
            100 + (s * 7919 % 13) / 4,
            1 + s % 5 / 64,
            s % 3 == 0,
        )
        for s in range(-600, 600)
    ]
    trades = trades_frame(rows)
    end = cut + timedelta(minutes=10)
    one_run = flow_bars_all(trades, cut - timedelta(minutes=10), end, intervals=("1s", "15s"))
    split = flow_bars_all(trades, cut, end, intervals=("1s", "15s"))
    for interval in ("1s", "15s"):
        expected = one_run[interval].filter(pl.col("time") >= cut.replace(tzinfo=None))
        if interval == "1s":
            assert expected["flow_toxicity_score"].head(3).null_count() == 0
        assert_frame_equal(split[interval], expected, check_exact=True)


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(
    trades=trade_sets(utc(2024, 3, 1), timedelta(days=5), max_trades=250),
    lengths=st.lists(st.integers(1, 2), min_size=4, max_size=4),
)
def test_periods_computed_one_by_one_from_carried_state_equal_one_long_run(trades, lengths) -> None:
    """Four consecutive periods, each seeded only with the state its predecessor carried.

    Every interval, 1s to 1d: with W = 8 and k = 3 the 1d rolling fields reach 11 days back,
    across every earlier period, so the carried state alone must hold what they need.
    """
    bounds = [utc(2024, 3, 1)]
    for days in lengths:
        bounds.append(bounds[-1] + timedelta(days=days))
    one_run = flow_bars_all(trades, bounds[0], bounds[-1], window=8, horizon=3)
    state = None
    for start, end in itertools.pairwise(bounds):
        engine = FlowBarsEngine(start, end, window=8, horizon=3)
        if state is not None:
            engine.seed(state)
        engine.add(trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left")))
        state = engine.carry()
        period = engine.finish()
        naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))
        for interval in ALL_INTERVALS:
            expected = one_run[interval].filter(pl.col("time").is_between(*naive, closed="left"))
            assert_frame_equal(period[interval], expected, check_exact=True)


def test_calendar_months_from_carried_state_equal_one_long_run_at_the_default_settings() -> None:
    """Five calendar months at W = 60, k = 5: the 1d toxicity of May reaches back into February."""
    starts = [utc(2024, m, 1) for m in range(1, 7)]
    rows = [
        (
            starts[0] + timedelta(hours=7 * i, seconds=i % 13),
            i,
            100 + (i * 37 % 29) / 4,
            1 + i % 5,
            i % 3 != 0,
        )
        for i in range(int((starts[-1] - starts[0]) / timedelta(hours=7)))
    ]
    trades = trades_frame(rows)
    intervals = ("1h", "4h", "1d")
    one_run = flow_bars_all(trades, starts[0], starts[-1], intervals=intervals)
    state = None
    for start, end in itertools.pairwise(starts):
        engine = FlowBarsEngine(start, end, intervals=intervals)
        if state is not None:
            engine.seed(state)
        engine.add(trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left")))
        state = engine.carry()
        month = engine.finish()
        naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))
        for interval in intervals:
            expected = one_run[interval].filter(pl.col("time").is_between(*naive, closed="left"))
            assert_frame_equal(month[interval], expected, check_exact=True)
    may_1d = month["1d"]["flow_toxicity_score"]
    assert may_1d.drop_nulls().len() == 31  # every day of May has its 65-day reach filled
