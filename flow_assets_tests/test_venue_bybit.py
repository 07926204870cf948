"""Bybit perpetuals (``bybit-perps``): grammar, parser, catalog pages, archive, end to end."""

from __future__ import annotations

import gzip
import io
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import requests

from flow_assets.api.app import create_app
from flow_assets.api.server import ServerThread
from flow_assets.catalog.mirror import CatalogServer
from flow_assets.instruments import InstrumentEntry, InstrumentsConfig, SelectionRule
from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.orchestration.resources import FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.quality import upstream_defects
from flow_assets.sources import MalformedCsvError, fetch_month, probe_month
from flow_assets.sources.csvstream import read_trades
from flow_assets.sources.mirror import sample_trades, utc
from flow_assets.sources.report import KEY_COLUMNS, month_bounds
from flow_assets.symbology import SymbolError, from_native, to_native
from flow_assets.tracked import resolve_instruments
from flow_assets.venues import VENUES
from flow_assets.venues.binance_futures_cm import parse_catalog
from flow_assets.venues.binance_futures_cm import sample as cm_sample
from flow_assets.venues.bybit_perps import (
    NAME,
    BybitCsv,
    bybit_csv,
    fetch_catalog,
    instrument,
    sample,
    write_archive,
)
from flow_assets_tests.archive_fixtures import Mirror
from flow_assets_tests.test_api import make_keys, settings_for
from flow_assets_tests.venue_runs import assert_bars_match_reference, published_trades, run_months

LINEAR = "perpetual-BTC-USDT:USDT"
INVERSE = "perpetual-BTC-USD:BTC"
HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,"
    "foreignNotional"
)
ROWS = (  # newest first, as many Bybit days are; fractional and integer seconds
    "1585180800.4918,BTCUSDT,Sell,1.5e-03,6699.5,ZeroMinusTick,"
    "8f9a8d43-8f2a-5a7e-8b4c-2cf2b9f4d1a1,1004925,0.0015,10.04925\n"
    "1585180800.4918,BTCUSDT,Buy,0.25,6700,PlusTick,"
    "0b1c2d3e-4f50-5617-8899-aabbccddeeff,167500000000,0.25,1675\n"
    "1585180800,BTCUSDT,Buy,2,6700,ZeroPlusTick,"
    "00000000-0000-0000-0000-000000000001,1340000000000,2,13400\n"
)


def _file(tmp_path: Path, text: str, name: str = "BTCUSDT2020-03-26.csv.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    return path


def _read(path: Path, symbol: str = LINEAR) -> pl.DataFrame:
    return pl.concat(list(read_trades(path, BybitCsv(symbol), kind="gzip")))


@pytest.mark.parametrize("header", [True, False])
def test_parser_on_documented_rows(tmp_path: Path, header: bool) -> None:
    """Seconds with a fraction (or none) exact to the µs, taker side, sizes in scientific
    notation; ties in time keep the file's order read from its oldest end (newest-first)."""
    frame = _read(_file(tmp_path, (HEADER + "\n") * header + ROWS))
    trades = frame.drop(KEY_COLUMNS)
    assert trades.schema == pl.Schema(TRADE_SCHEMA)
    assert trades["exchange_ts"].to_list() == [
        utc(2020, 3, 26).replace(microsecond=491_800),
        utc(2020, 3, 26).replace(microsecond=491_800),
        utc(2020, 3, 26),
    ]
    assert trades["base_qty"].to_list() == [0.0015, 0.25, 2.0]
    assert trades["notional"].to_list() == pytest.approx([10.04925, 1675.0, 13400.0])
    assert trades["is_taker_buy"].to_list() == [False, True, True]
    ids = trades["trade_id"].to_list()
    assert ids[0] > ids[1] > ids[2]  # the last row is the oldest: file order from that end
    assert frame.row(2, named=True)[KEY_COLUMNS[1]] == 1


def test_inverse_sizes_are_one_usd_contracts(tmp_path: Path) -> None:
    rows = ROWS.replace("BTCUSDT", "BTCUSD")
    frame = _read(_file(tmp_path, HEADER + "\n" + rows, "BTCUSD2020-03-26.csv.gz"), INVERSE)
    assert frame["notional"].to_list() == [0.0015, 0.25, 2.0]
    assert frame["base_qty"].to_list() == pytest.approx([0.0015 / 6699.5, 0.25 / 6700, 2 / 6700])


def test_an_unknown_header_is_refused_naming_the_file(tmp_path: Path) -> None:
    header = HEADER.replace("trdMatchID", "tradeId")
    path = _file(tmp_path, header + "\n" + ROWS)
    with pytest.raises(MalformedCsvError, match=r"BTCUSDT2020-03-26\.csv\.gz.*tradeId"):
        _read(path)


@pytest.mark.parametrize(
    ("change", "where"),
    [("BTCUSDT,Buy,0.25", "ETHUSDT,Buy,0.25"), ("0b1c2d3e-4f50", "not-a-uuid")],
)
def test_a_bad_row_is_refused_with_its_line(tmp_path: Path, change: str, where: str) -> None:
    path = _file(tmp_path, HEADER + "\n" + ROWS.replace(change, where))
    with pytest.raises(MalformedCsvError, match="line 3"):
        _read(path)


def test_atlas_round_trips_over_the_listing() -> None:
    listing = sample()
    perpetuals = [i for c in listing.values() for i in c if i["contractType"].endswith("Perpetual")]
    assert len(perpetuals) == 43
    for item in perpetuals:
        native = item["symbol"]
        assert to_native(NAME, str(from_native(NAME, native))) == native
    examples = {
        "BTCUSDT": "perpetual-BTC-USDT:USDT",
        "BTCPERP": "perpetual-BTC-USDC:USDC",
        "BTCUSD": "perpetual-BTC-USD:BTC",
        "1000PEPEUSDT": "perpetual-1000PEPE-USDT:USDT",
    }
    for native, symbol in examples.items():
        assert str(from_native(NAME, native)) == symbol
        assert to_native(NAME, symbol) == native
    with pytest.raises(SymbolError, match="BTCPERP"):
        to_native(NAME, "perpetual-BTC-USD:USD")
    with pytest.raises(SymbolError):
        from_native(NAME, "BTC-26DEC26")


def test_catalog_over_three_pages_per_category() -> None:
    """Cursor pagination until the cursor is empty, in each category; futures dropped."""
    listing = sample()
    with CatalogServer({NAME: listing}) as server, requests.Session() as session:
        frame = fetch_catalog(server.url, session, limit=15)
        queries = [query for path, query, _ in server.log]
    linear_pages = [q for q in queries if "category=linear" in q]
    assert len(linear_pages) == 3  # 39 linear instruments, 15 a page
    assert "cursor" not in linear_pages[0]
    assert all("cursor=next" in q for q in linear_pages[1:])
    assert len([q for q in queries if "category=inverse" in q]) == 1
    assert frame.height == 43
    assert "BTC-26DEC26" not in frame["native"].to_list()
    assert "BTCUSDZ26" not in frame["native"].to_list()
    btc = frame.filter(pl.col("native") == "BTCUSD").row(0, named=True)
    assert (btc["symbol"], btc["kind"], btc["settle"]) == (INVERSE, "inverse", "BTC")
    perp = frame.filter(pl.col("native") == "BTCPERP").row(0, named=True)
    assert (perp["symbol"], perp["kind"]) == ("perpetual-BTC-USDC:USDC", "linear")
    luna = frame.filter(pl.col("native") == "LUNA2USDT").row(0, named=True)
    assert (luna["status"], luna["delisted"]) == ("Settling", utc(2026, 10, 20, 8))


def test_a_bybit_error_answer_is_a_clear_error() -> None:
    with CatalogServer({NAME: {"linear": [], "inverse": []}}) as server, requests.Session() as s:
        with pytest.raises(Exception, match="lists no perpetual"):
            fetch_catalog(server.url, s)
        document = {"linear": [instrument("X", "X", "USDT", "USDT", "LinearPerpetual",
                                          launched=utc(2024, 1, 1))]}  # fmt: skip
        del document["linear"][0]["baseCoin"]
        server.documents[NAME] = document
        with pytest.raises(Exception, match="baseCoin"):
            fetch_catalog(server.url, s)


def test_a_month_shuffled_newest_first_and_duplicated(mirror: Mirror) -> None:
    """Days newest-first, one shuffled, one with integer seconds only, exact duplicate rows:
    the month equals its trades once, sorted; the version is the servers' HEAD answers."""
    month = date(2024, 2, 1)
    start, stop = month_bounds(month)
    trades = sample_trades(start, stop, 580, seed=21)
    whole = pl.col("exchange_ts").dt.truncate("1s")
    trades = trades.with_columns(
        pl.when(pl.col("exchange_ts").dt.day() == 7).then(whole).otherwise("exchange_ts")
    )
    write_archive(trades, mirror.root, LINEAR)
    folder = mirror.root / "trading/BTCUSDT"
    day3 = trades.filter(pl.col("exchange_ts").dt.day() == 3)
    shuffled = pl.concat([day3, day3.head(4)]).sample(fraction=1.0, shuffle=True, seed=2)
    (folder / "BTCUSDT2024-02-03.csv.gz").write_bytes(gzip.compress(bybit_csv(shuffled, LINEAR)))
    assert "BTCUSDT2024-02-03.csv.gz" in requests.get(f"{mirror.url}/trading/BTCUSDT/").text
    got = fetch_month(NAME, LINEAR, month, base_url=mirror.url, session=mirror.session)
    assert got.report.rows_dropped == {"duplicate_id": 4}
    assert len(got.report.files) == 29
    assert not any(f.checksum_verified for f in got.report.files)
    assert got.trades.select("exchange_ts", "price", "notional").equals(
        trades.sort("exchange_ts", "trade_id").select("exchange_ts", "price", "notional")
    )
    version = probe_month(NAME, LINEAR, month, base_url=mirror.url, session=mirror.session)
    assert version is not None
    assert version.startswith("bybit:29:")


def _month_with_ties(month: date, seed: int) -> pl.DataFrame:
    """A month of trades, those of the 5th at whole 6 hours (many equal timestamps)."""
    start, stop = month_bounds(month)
    trades = sample_trades(start, stop, 620, seed=seed)
    whole = pl.col("exchange_ts").dt.truncate("6h")
    return trades.with_columns(
        pl.when(pl.col("exchange_ts").dt.day() == 5).then(whole).otherwise("exchange_ts")
    )


def test_newest_first_days_are_the_normal_layout_not_a_defect(mirror: Mirror) -> None:
    """Every day newest-first, as Bybit publishes: sorted, equal times in file order from the
    oldest end (the close is the last of them), and nothing reported as reordered."""
    month = date(2024, 4, 1)
    trades = _month_with_ties(month, seed=31)
    assert trades.filter(pl.col("exchange_ts").is_duplicated()).height > 10  # ties exist
    write_archive(trades, mirror.root, LINEAR, newest_first=True)
    got = fetch_month(NAME, LINEAR, month, base_url=mirror.url, session=mirror.session)
    assert got.report.rows_reordered == 0
    assert got.report.defects == []
    assert upstream_defects(got.trades, got.report.to_metadata())[0] == "ok"
    expected = trades.sort("exchange_ts", "trade_id")  # ties: the file's oldest end first
    assert got.trades.select("exchange_ts", "price", "notional").equals(
        expected.select("exchange_ts", "price", "notional")
    )


def test_real_disorder_in_a_newest_first_venue_is_still_reported(mirror: Mirror) -> None:
    """A shuffled day and a day written oldest-first are out of Bybit's order: counted, warned,
    and sorted all the same."""
    month = date(2024, 4, 1)
    trades = _month_with_ties(month, seed=32)
    write_archive(trades, mirror.root, LINEAR, newest_first=True)
    folder = mirror.root / "trading/BTCUSDT"
    day10 = trades.filter(pl.col("exchange_ts").dt.day() == 10).sort("exchange_ts", "trade_id")
    (folder / "BTCUSDT2024-04-10.csv.gz").write_bytes(gzip.compress(bybit_csv(day10, LINEAR)))
    got = fetch_month(NAME, LINEAR, month, base_url=mirror.url, session=mirror.session)
    assert got.report.rows_reordered == day10.height - 1  # each row after the first
    day20 = trades.filter(pl.col("exchange_ts").dt.day() == 20)
    shuffled = day20.sample(fraction=1.0, shuffle=True, seed=5)
    (folder / "BTCUSDT2024-04-20.csv.gz").write_bytes(gzip.compress(bybit_csv(shuffled, LINEAR)))
    got = fetch_month(NAME, LINEAR, month, base_url=mirror.url, session=mirror.session)
    assert got.report.rows_reordered > day10.height - 1
    assert any("newest-first file order" in d for d in got.report.defects)
    assert upstream_defects(got.trades, got.report.to_metadata())[0] == "warn"
    assert got.trades["exchange_ts"].is_sorted()
    assert got.trades.height == trades.height


def test_bybit_and_the_other_venues_side_by_side_through_dagster(
    tmp_path: Path, mirror_root: Path, archive_server
) -> None:
    """One month of every venue in one instance, each in its exact layout, its catalog in its
    exact shape; Bybit linear and inverse bars equal the reference on every interval."""
    month = date(2024, 3, 1)
    start, stop = month_bounds(month)
    symbols = {
        "binance-futures": LINEAR,
        "okx-perps": LINEAR,
        "binance-futures-cm": INVERSE,
        NAME: LINEAR,
    }
    trades = {}
    for n, (exchange, symbol) in enumerate(symbols.items()):
        trades[exchange] = sample_trades(start, stop, 300, seed=40 + n)
        if exchange == "binance-futures-cm":
            notional = (pl.col("notional") / 100).ceil() * 100
            trades[exchange] = trades[exchange].with_columns(
                notional=notional, base_qty=notional / pl.col("price")
            )
        VENUES[exchange].write_archive(trades[exchange], mirror_root, symbol)
    inverse = sample_trades(start, stop, 300, seed=60).with_columns(
        notional=pl.col("notional").round(0), base_qty=pl.col("notional").round(0) / pl.col("price")
    )
    write_archive(inverse, mirror_root, INVERSE)
    entries = [InstrumentEntry(e, s) for e, s in symbols.items()] + [InstrumentEntry(NAME, INVERSE)]
    store = FlowStore(url=str(tmp_path / "store"))
    run_months(store, archive_server.url, entries, month)
    for exchange, symbol in symbols.items():
        got = published_trades(store, exchange, symbol, month)
        assert got["notional"].to_list() == pytest.approx(trades[exchange]["notional"].to_list())
    window = start + timedelta(days=9)
    assert_bars_match_reference(store, NAME, LINEAR, month, trades[NAME], window)
    assert_bars_match_reference(store, NAME, INVERSE, month, inverse, window)
    _served_by_the_api(store, tmp_path)


def _served_by_the_api(store: FlowStore, tmp_path: Path) -> None:
    """The new venues through the HTTP API: symbols, a month's file, the catalog."""
    keys = make_keys(str(tmp_path / "keys"))
    settings = settings_for(store.open().url, str(tmp_path / "keys"))
    with ServerThread(create_app(settings)) as server:
        base, headers = f"{server.url}/api/v1", {"X-API-KEY": keys["alice"]}

        def get(path: str, **params: str) -> dict:
            response = requests.get(base + path, params=params, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()

        assert sorted(get("/metadata/symbols", exchange=NAME)["symbols"]) == [INVERSE, LINEAR]
        cm = get("/metadata/symbols", exchange="binance-futures-cm")
        assert cm["symbols"] == [INVERSE]
        month = {"start_date": "2024-03-01", "end_date": "2024-03-31", "timestamp": "exchange"}
        files = get("/data/flow", exchange=NAME, symbol=INVERSE, interval="1h", **month)
        [only] = files["files"]
        body = requests.get(only["url"], timeout=10).content
        published = read_manifest(store.open(), "flow", NAME, INVERSE, date(2024, 3, 1))
        expected = store.open().read_parquet(published.key_of(flow_file("exchange", "1h")))
        assert pl.read_parquet(io.BytesIO(body)).equals(expected)
        coverage = get("/metadata/catalog")["metrics"][0]["coverage"]
        venues = {(c["exchange"], c["symbol"]) for c in coverage}
        assert (NAME, LINEAR) in venues
        assert ("binance-futures-cm", INVERSE) in venues


def test_selection_rules_on_the_new_venues_catalogs() -> None:
    """``settle``, ``base`` and ``kind`` select from Bybit's and COIN-M's listings."""
    with CatalogServer({NAME: sample()}) as server, requests.Session() as session:
        bybit = fetch_catalog(server.url, session)
    rules = (
        SelectionRule(NAME, settle=("USDC",)),
        SelectionRule(NAME, base=("BTC",), kind="inverse"),
        SelectionRule("binance-futures-cm", base=("BTC", "ETH")),
    )
    catalogs = {NAME: bybit, "binance-futures-cm": parse_catalog(cm_sample())}
    tracked = resolve_instruments(InstrumentsConfig(rules=rules), catalogs).tracked
    assert sorted(tracked[NAME]) == [
        "BTC-USD:BTC", "BTC-USDC:USDC", "ETH-USDC:USDC", "SOL-USDC:USDC", "XRP-USDC:USDC",
    ]  # fmt: skip
    assert sorted(tracked["binance-futures-cm"]) == ["BTC-USD:BTC", "ETH-USD:ETH"]
