"""Contract-value histories built from any sequence of snapshots stay ordered and exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from flow_assets.catalog import (
    INSTRUMENT_SCHEMA,
    check_history,
    contract_values,
    empty_history,
    merge_snapshot,
    seed_history,
    value_at,
)
from flow_assets.catalog.contract_dating import Timeline

LISTED = datetime(2021, 1, 1, tzinfo=UTC)
FIRST_SEEN = datetime(2022, 1, 1, tzinfo=UTC)
NATIVES = ("BTC-USDT-SWAP", "SOL-USDT-SWAP", "DOGE-USDT-SWAP")

# One snapshot: hours since the previous one, and each instrument's ctVal (None = not listed).
snapshots = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=48),
        st.tuples(*[st.sampled_from([None, 0.01, 0.1, 1.0, 1000.0])] * len(NATIVES)),
    ),
    min_size=1,
    max_size=12,
)


def snapshot_frame(values: tuple[float | None, ...]) -> pl.DataFrame:
    rows = [
        {"exchange": "okx-perps", "native": native, "symbol": None, "base": "X", "quote": "USDT",
         "settle": "USDT", "kind": "linear", "ct_val": value, "ct_val_ccy": "X",
         "listed": LISTED, "delisted": None, "status": "live"}
        for native, value in zip(NATIVES, values, strict=True)
        if value is not None
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=INSTRUMENT_SCHEMA, orient="row")


def replay(history: pl.DataFrame, steps: list) -> tuple[pl.DataFrame, list]:
    seen = []
    at = FIRST_SEEN
    for hours, values in steps:
        at += timedelta(hours=hours)
        history = merge_snapshot(history, snapshot_frame(values), at)
        seen.append((at, values))
    return history, seen


@settings(max_examples=150, deadline=None)
@given(steps=snapshots)
def test_any_snapshots_give_gap_free_exact_values(steps: list) -> None:
    history, seen = replay(empty_history(), steps)
    check_history(history)  # ordered, no overlap, no gap, per instrument
    for i, native in enumerate(NATIVES):
        observed = [(at, values[i]) for at, values in seen if values[i] is not None]
        if not observed:
            continue
        values = contract_values(history, "okx-perps", native)
        assert values["valid_from"][0] == LISTED  # a new instrument opens at its listing
        assert value_at(values, LISTED) == observed[0][1]
        for at, _ in seen:
            for t in (at, at + timedelta(minutes=30)):
                latest = [value for when, value in observed if when <= t]
                if latest:
                    assert value_at(values, t) == latest[-1]


@settings(max_examples=60, deadline=None)
@given(steps=snapshots)
def test_the_seed_keeps_its_past(steps: list) -> None:
    history, _ = replay(seed_history(), steps)
    check_history(history)
    btc = contract_values(history, "okx-perps", "BTC-USDT-SWAP")
    assert value_at(btc, datetime(2020, 3, 20, 7, 59, tzinfo=UTC)) == 0.0001
    assert value_at(btc, datetime(2021, 6, 1, tzinfo=UTC)) == 0.01
    assert contract_values(history, "okx-perps", "BTC-USD-SWAP").rows() == [(None, None, 100.0)]


# One reading: hours since the previous one, the snapshot's value, and the candles' changes
# since the previous reading (minutes into the period, value), or None (candles unavailable).
readings = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=72),
        st.sampled_from([0.01, 0.1, 1.0, 1000.0]),
        st.none()
        | st.lists(
            st.tuples(st.integers(min_value=0, max_value=60 * 72), st.sampled_from([0.1, 10.0])),
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(steps=readings)
def test_candle_timelines_and_snapshots_keep_the_history_exact(steps: list) -> None:
    """Whatever the candles say between snapshots, the history stays gap-free, says what the
    last candles said over their period, and ends at the snapshot's value."""
    native = NATIVES[1]
    history, since, at = seed_history(), LISTED, FIRST_SEEN
    for hours, value, changes in steps:
        at += timedelta(hours=hours)
        lines, expected = {}, []
        if changes is not None:
            starts = sorted({since + timedelta(minutes=m) for m, _ in changes if
                             since + timedelta(minutes=m) < at})  # fmt: skip
            values = [v for _, v in changes][: len(starts)]
            segments = ((since, value), *zip(starts, values, strict=True)) if starts else ()
            lines = {native: Timeline(since, tuple(segments), at)}
            expected = list(segments)
            since = at
        history = merge_snapshot(history, snapshot_frame((None, value, None)), at, lines)
        check_history(history)
        values = contract_values(history, "okx-perps", native)
        for i, (start, ct_val) in enumerate(expected):  # the candles, over their period
            if i + 1 == len(expected) or expected[i + 1][0] > start:
                assert value_at(values, start) == ct_val
        assert value_at(values, at) == value
    dated = history.filter(pl.col("native") == native)["dated_by"].to_list()
    assert set(dated) <= {"listing", "candles", "snapshot"}
