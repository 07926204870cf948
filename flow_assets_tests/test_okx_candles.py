"""OKX contract values dated by the exchange's own candles: the pure dating, the mirror's
history-candles in OKX's format over a real socket, the client's pagination, the inverse case."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flow_assets.catalog import contract_values, merge_snapshot, seed_history
from flow_assets.catalog.contract_dating import Timeline, empty_state, timeline
from flow_assets.catalog.mirror import CatalogServer
from flow_assets.loopback import Fault
from flow_assets.sources.http import make_session
from flow_assets.venues import okx_candles
from flow_assets.venues.okx_candles import (
    CandleClient,
    daily_volumes,
    date_contracts,
    minute_candles,
    step_value,
    with_candles,
)
from flow_assets.venues.okx_perps import okx_instrument, okx_instruments, parse_catalog

D0 = datetime(2024, 3, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
VALUES = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
PATH = okx_candles.PATH


def minute_trades(
    start: datetime, minutes: int, value_at: Callable[[datetime], float], inverse: bool = False
) -> pl.DataFrame:
    """One trade a minute (7 s in), 1 to 5 whole contracts at the value in force."""
    times = [start + i * MIN + timedelta(seconds=7) for i in range(minutes)]
    contracts = [1 + i % 5 for i in range(minutes)]
    prices = [100.0 + (i % 13) for i in range(minutes)]
    worth = [c * value_at(t) for c, t in zip(contracts, times, strict=True)]
    notional = worth if inverse else [w * p for w, p in zip(worth, prices, strict=True)]
    base = [n / p for n, p in zip(notional, prices, strict=True)] if inverse else worth
    return pl.DataFrame(
        {"exchange_ts": times, "price": prices, "base_qty": base, "notional": notional},
        schema={"exchange_ts": pl.Datetime("us", "UTC"), "price": pl.Float64,
                "base_qty": pl.Float64, "notional": pl.Float64},
    )  # fmt: skip


def pure_fetch(trades: pl.DataFrame, value_at: Callable[[datetime], float], inverse: bool):
    """The candles of ``trades`` by bar, as a fetch function (no socket)."""
    bars = with_candles({}, {"X": minute_candles(trades, inverse, value_at)})["_candles"]["X"]

    def fetch(bar: str, start: datetime, end: datetime) -> pl.DataFrame:
        frame = bars[bar].filter(pl.col("time").is_between(start, end, closed="left"))
        return frame.select("time", "vol", "vol_ccy", "vol_ccy_quote").with_columns(
            confirmed=pl.lit(True)
        )

    return fetch


def read(trades, value_at, inverse, *, start_value=None, final_value=None) -> Timeline:
    fetch = pure_fetch(trades, value_at, inverse)
    daily = fetch("1Dutc", D0, D0 + timedelta(days=30))
    return timeline(daily, since=D0, start_value=start_value, final_value=final_value,
                    inverse=inverse, fetch=fetch)  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    minute=st.integers(min_value=0, max_value=3 * 1440 - 1),
    pair=st.lists(st.sampled_from(VALUES), min_size=2, max_size=2, unique=True),
    inverse=st.booleans(),
    known=st.booleans(),
)
@example(minute=1440, pair=[1000.0, 100.0], inverse=False, known=False)  # at midnight
@example(minute=1, pair=[10.0, 100.0], inverse=True, known=False)  # first minute
@example(minute=0, pair=[10.0, 100.0], inverse=False, known=True)  # a reading's first instant
def test_a_change_at_any_minute_is_dated_to_that_minute(
    minute: int, pair: list[float], inverse: bool, known: bool
) -> None:
    before, after = pair
    change = D0 + minute * MIN
    value_at = step_value(before, after, change)
    trades = minute_trades(D0, 3 * 1440, value_at, inverse)
    line = read(trades, value_at, inverse, start_value=before if known else None,
                final_value=after)  # fmt: skip
    assert line.segments == (((D0, before),) if minute else ()) + ((change, after),)
    assert line.through == D0 + timedelta(days=3)


@pytest.mark.parametrize("inverse", [False, True])
def test_no_change_is_one_value(inverse: bool) -> None:
    trades = minute_trades(D0, 2 * 1440, lambda _: 0.1, inverse)
    assert read(trades, lambda _: 0.1, inverse).segments == ((D0, 0.1),)
    assert read(trades.clear(), lambda _: 0.1, inverse).segments == ()


def test_the_candles_date_the_history_and_the_snapshot_only_falls_back() -> None:
    """A first reading gives the older value back to listing; a value the candles have not
    traded yet is dated by the snapshot, marked so."""
    listed, change = D0, D0 + timedelta(days=1, hours=13, minutes=37)
    value_at = step_value(1000.0, 100.0, change)
    line = read(minute_trades(D0, 3 * 1440, value_at), value_at, False, final_value=100.0)
    snapshot = parse_catalog(okx_instruments([
        okx_instrument("A-USDT-SWAP", "100", listed=listed),
        okx_instrument("B-USDT-SWAP", "10", listed=listed),
    ]))  # fmt: skip
    seen = D0 + timedelta(days=40)
    b_line = Timeline(D0, ((D0, 1.0),), D0 + timedelta(days=3))  # candles: 1; snapshot: 10
    history = merge_snapshot(seed_history(), snapshot, seen, {"A-USDT-SWAP": line,
                                                            "B-USDT-SWAP": b_line})  # fmt: skip
    rows = history.filter(pl.col("native") == "A-USDT-SWAP").select(
        "valid_from", "valid_to", "ct_val", "dated_by"
    )
    assert rows.rows() == [(listed, change, 1000.0, "listing"), (change, None, 100.0, "candles")]
    b_rows = history.filter(pl.col("native") == "B-USDT-SWAP")
    assert b_rows.select("valid_from", "ct_val", "dated_by").rows() == [
        (listed, 1.0, "listing"), (seen, 10.0, "snapshot")
    ]  # fmt: skip
    # the next reading dates it by the candles: the snapshot-dated start is replaced
    later = Timeline(D0 + timedelta(days=3), ((D0 + timedelta(days=3), 1.0),
                     (D0 + timedelta(days=39, hours=2), 10.0)), seen)  # fmt: skip
    history = merge_snapshot(history, snapshot, seen + timedelta(days=1), {"B-USDT-SWAP": later})
    values = contract_values(history, "okx-perps", "B-USDT-SWAP")
    assert values.rows() == [(listed, D0 + timedelta(days=39, hours=2), 1.0),
                             (D0 + timedelta(days=39, hours=2), None, 10.0)]  # fmt: skip
    dated = history.filter(pl.col("native") == "B-USDT-SWAP")["dated_by"].to_list()
    assert dated == ["listing", "candles"]


# --------------------------------------------------------------------------- over a socket

LINEAR_ID, INVERSE_ID = "ABC-USDT-SWAP", "BTC-USD-SWAP"


@pytest.fixture
def server() -> Iterator[CatalogServer]:
    linear_at = step_value(10.0, 1.0, D0 + timedelta(hours=30, minutes=11))
    inverse_at = step_value(100.0, 10.0, D0 + timedelta(days=2, hours=5, minutes=58))
    minutes = {
        LINEAR_ID: minute_candles(minute_trades(D0, 3 * 1440, linear_at), False, linear_at),
        INVERSE_ID: minute_candles(minute_trades(D0, 3 * 1440, inverse_at, True), True, inverse_at),
    }
    document = okx_instruments([
        okx_instrument(LINEAR_ID, "1", listed=D0),
        okx_instrument(INVERSE_ID, "10", listed=D0),
        okx_instrument("NEW-USDT-SWAP", "1", listed=D0 + timedelta(days=2)),
    ])  # fmt: skip
    with CatalogServer({"okx-perps": with_candles(document, minutes)}) as running:
        yield running


@pytest.fixture
def session() -> requests.Session:
    return make_session(retries=2, backoff=0.01, backoff_max=0.02, timeout=(2.0, 5.0))


def get(server: CatalogServer, **params: str) -> dict:
    return requests.get(server.url + PATH, params=params, timeout=5).json()


def test_the_mirror_answers_in_okx_format(server: CatalogServer) -> None:
    answer = get(server, instId=LINEAR_ID, bar="1m")
    assert answer["code"] == "0"
    assert len(answer["data"]) == 100
    newest = answer["data"][0]
    assert len(newest) == 9
    assert all(isinstance(v, str) for v in newest)
    assert int(newest[0]) == okx_candles.ms(D0 + timedelta(days=3) - MIN)  # newest first
    assert newest[8] == "1"
    ts = [int(row[0]) for row in answer["data"]]
    assert ts == sorted(ts, reverse=True)
    older = get(server, instId=LINEAR_ID, bar="1m", after=str(ts[-1]))["data"]
    assert int(older[0][0]) == ts[-1] - 60_000  # after is exclusive
    daily = get(server, instId=INVERSE_ID, bar="1Dutc")["data"]
    assert [int(row[0]) for row in daily] == [okx_candles.ms(D0 + timedelta(days=d))
                                              for d in (2, 1, 0)]  # fmt: skip
    assert get(server, instId=LINEAR_ID, bar="1m", limit="101")["code"] == "51000"
    assert get(server, instId="NOPE-USDT-SWAP", bar="1m") == {"code": "0", "msg": "", "data": []}
    instruments = requests.get(server.url + "/api/v5/public/instruments",
                               params={"instType": "SWAP"}, timeout=5).json()  # fmt: skip
    assert set(instruments) == {"code", "msg", "data"}


def test_pagination_over_more_than_a_page(server: CatalogServer, session) -> None:
    client = CandleClient(server.url, session, pace=0)
    start, end = D0 + timedelta(hours=1), D0 + timedelta(hours=1, minutes=250)
    candles = client.candles(LINEAR_ID, "1m", start, end)
    assert client.requests == 3
    assert candles["time"].to_list() == [start + i * MIN for i in range(250)]
    assert candles["confirmed"].all()
    expected = [1 + i % 5 for i in range(60, 310)]
    assert candles["vol"].to_list() == pytest.approx(expected)


def test_every_swap_dated_over_the_socket_linear_and_inverse(server, session) -> None:
    listings = parse_catalog(server.documents["okx-perps"])
    dating = date_contracts(server.url, session, listings, empty_state(), pace=0)
    assert dating.unavailable == []
    lines = dating.timelines
    assert lines[LINEAR_ID].segments == ((D0, 10.0), (D0 + timedelta(hours=30, minutes=11), 1.0))
    assert lines[INVERSE_ID].segments == (
        (D0, 100.0), (D0 + timedelta(days=2, hours=5, minutes=58), 10.0)
    )  # fmt: skip
    assert lines["NEW-USDT-SWAP"].segments == ()
    # first reading: one daily page per swap, two per change (1H of the day, 1m of the hour),
    # and two more where the first day differs from the second (ABC: its change is on day 2)
    assert dating.requests == 3 + 2 * 2 + 2
    state = dating.state.sort("native")
    assert state.rows() == [
        ("okx-perps", LINEAR_ID, D0 + timedelta(days=3), 1.0),
        ("okx-perps", INVERSE_ID, D0 + timedelta(days=3), 10.0),
        ("okx-perps", "NEW-USDT-SWAP", D0 + timedelta(days=2), None),
    ]
    again = date_contracts(server.url, session, listings, dating.state, pace=0)
    assert again.requests == 3  # a daily run: one page per swap
    assert again.timelines[LINEAR_ID] == Timeline(
        D0 + timedelta(days=3), (), D0 + timedelta(days=3)
    )
    assert again.state.equals(dating.state)


def test_daily_volumes_inverse_are_base_and_usd(server: CatalogServer, session) -> None:
    inverse_at = step_value(100.0, 10.0, D0 + timedelta(days=2, hours=5, minutes=58))
    trades = minute_trades(D0, 3 * 1440, inverse_at, True)
    days = daily_volumes(server.url, session, INVERSE_ID, D0.date())
    expected = (
        trades.group_by(pl.col("exchange_ts").dt.truncate("1d").alias("time"))
        .agg(pl.col("base_qty").sum().alias("volume"), pl.col("notional").sum().alias("q"))
        .sort("time")
    )
    assert days["time"].to_list() == expected["time"].to_list()
    assert days["volume"].to_list() == pytest.approx(expected["volume"].to_list(), rel=1e-9)
    assert days["quote_volume"].to_list() == pytest.approx(expected["q"].to_list(), rel=1e-12)
    assert days["confirmed"].all()
    assert days.schema["volume_decimals"] == pl.Int32
    assert (days["volume_decimals"] <= 10).all()


def test_candles_that_cannot_be_had_fall_back_to_the_snapshot(server, session) -> None:
    """A swap whose candle requests keep failing is named; the others are still read."""
    server.inject(PATH, *[Fault(status=500)] * 3)  # the first swap's request and 2 retries
    listings = parse_catalog(server.documents["okx-perps"])
    dating = date_contracts(server.url, session, listings, empty_state(), pace=0)
    assert dating.unavailable == [LINEAR_ID]
    assert set(dating.timelines) == {INVERSE_ID, "NEW-USDT-SWAP"}
    history = merge_snapshot(seed_history(), listings, D0 + timedelta(days=5), dating.timelines)
    linear = history.filter(pl.col("native") == LINEAR_ID)
    assert linear.select("ct_val", "dated_by").rows() == [(1.0, "listing")]  # today's value
    assert dating.state["native"].to_list() == [INVERSE_ID, "NEW-USDT-SWAP"]
