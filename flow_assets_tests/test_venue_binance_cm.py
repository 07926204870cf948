"""Binance COIN-M perpetuals (``binance-futures-cm``): grammar, parser, catalog, end to end."""

from __future__ import annotations

import shutil
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import requests

from flow_assets.catalog.mirror import CatalogServer
from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics.schema import TRADE_SCHEMA, UTC_MICROS
from flow_assets.orchestration.resources import FlowStore
from flow_assets.sources import MalformedCsvError, fetch_month
from flow_assets.sources.csvstream import read_trades
from flow_assets.sources.errors import MissingContractValueError
from flow_assets.sources.mirror import sample_trades, utc
from flow_assets.sources.report import month_bounds
from flow_assets.symbology import SymbolError, from_native, to_native
from flow_assets.venues.binance_futures_cm import (
    NAME,
    CoinMCsv,
    cm_symbol,
    fetch_catalog,
    parse_catalog,
    sample,
    write_archive,
)
from flow_assets_tests.archive_fixtures import REAL_DATA, Mirror
from flow_assets_tests.venue_runs import (
    assert_bars_match_reference,
    published_trades,
    run_months,
)

BTC = "perpetual-BTC-USD:BTC"
ETH = "perpetual-ETH-USD:ETH"
REAL_DAY = REAL_DATA / "binance_cm_aggtrades" / "BTCUSD_PERP-aggTrades-2026-05-08.zip"
HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "BTCUSD_PERP-aggTrades-2024-01-02.csv"
    path.write_text(text)
    return path


def _read(path: Path, symbol: str = BTC) -> pl.DataFrame:
    return pl.concat(list(read_trades(path, CoinMCsv(symbol))))


@pytest.mark.parametrize("header", [True, False])
def test_parser_converts_contracts_of_the_contract_size(tmp_path: Path, header: bool) -> None:
    """Documented sample rows (with and without a header; 1e1 in scientific notation): BTC
    contracts are 100 USD, so 3 contracts at 40,000 are 300 USD and 0.0075 BTC."""
    rows = "11,40000.0,3,20,22,1704153600123,false\n12,40001.5,1e1,23,23,1704153600124,true\n"
    frame = _read(_csv(tmp_path, (HEADER + "\n") * header + rows))
    assert frame.schema == pl.Schema(TRADE_SCHEMA)
    assert frame["trade_id"].to_list() == [11, 12]
    assert frame["notional"].to_list() == [300.0, 1000.0]
    assert frame["base_qty"].to_list() == pytest.approx([300 / 40000.0, 1000 / 40001.5])
    assert frame["is_taker_buy"].to_list() == [True, False]
    assert frame["exchange_ts"][0] == utc(2024, 1, 2).replace(microsecond=123_000)


def test_parser_uses_ten_usd_contracts_and_the_history_given(tmp_path: Path) -> None:
    path = _csv(tmp_path, "1,2000.0,4,1,1,1704153600000,false\n")
    assert _read(path, ETH)["notional"].to_list() == [40.0]
    history = pl.DataFrame(
        {"valid_from": [utc(2024, 1, 3)], "valid_to": [None], "ct_val": [10.0]},
        schema={"valid_from": UTC_MICROS, "valid_to": UTC_MICROS, "ct_val": pl.Float64},
    )
    with pytest.raises(MissingContractValueError, match="BTCUSD_PERP"):
        pl.concat(list(read_trades(path, CoinMCsv(BTC, contract_values=history))))


def test_parser_reads_the_trades_header_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    trades = "id,price,qty,base_qty,time,is_buyer_maker\n7,40000.0,2,0.005,1704153600000,true\n"
    path = _csv(tmp_path, trades)
    frame = pl.concat(list(read_trades(path, CoinMCsv(BTC, "trades"))))
    assert frame.select("trade_id", "notional", "is_taker_buy").row(0) == (7, 200.0, False)
    path = _csv(
        tmp_path, HEADER.replace("quantity", "qty") + "\n1,2000.0,4,1,1,1704153600000,false\n"
    )
    with pytest.raises(
        MalformedCsvError, match=r"aggTrades-2024-01-02\.csv.*unknown COIN-M header"
    ):
        _read(path)


def test_parser_refuses_an_unknown_width_naming_the_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, "1,2000.0,4,1,1\n")
    with pytest.raises(MalformedCsvError, match=r"BTCUSD_PERP-aggTrades-2024-01-02\.csv"):
        _read(path)


def test_atlas_round_trips_over_the_listing() -> None:
    listing = parse_catalog(sample())
    assert listing.height == 27  # 26 perpetuals and a settling one; the quarterly is dropped
    for native, symbol in listing.select("native", "symbol").iter_rows():
        assert to_native(NAME, symbol) == native
        assert str(from_native(NAME, native)) == symbol
    assert to_native(NAME, BTC) == "BTCUSD_PERP"
    assert str(from_native(NAME, "btcusd_perp")) == BTC
    for bad in ("perpetual-BTC-USDT:USDT", "future-BTC-USD:BTC-20261225"):
        with pytest.raises(SymbolError, match="USD_PERP"):
            to_native(NAME, bad)
    with pytest.raises(SymbolError):
        from_native(NAME, "BTCUSD_261225")


def test_catalog_from_the_dapi_exchange_info() -> None:
    quarterly = cm_symbol("ETH", onboard=utc(2024, 1, 1), contract_size=10,
                          contract_type="NEXT_QUARTER", suffix="270326")  # fmt: skip
    document = sample()
    document["symbols"].append(quarterly)
    with CatalogServer({NAME: document}) as server, requests.Session() as session:
        frame = fetch_catalog(server.url, session)
        assert server.log[-1][:2] == ("/dapi/v1/exchangeInfo", "")
    btc = frame.filter(pl.col("native") == "BTCUSD_PERP").row(0, named=True)
    assert (btc["symbol"], btc["kind"], btc["ct_val"], btc["settle"]) == (
        BTC,
        "inverse",
        100,
        "BTC",
    )
    assert frame.filter(pl.col("native") == "ETHUSD_PERP")["ct_val"].to_list() == [10.0]
    ftm = frame.filter(pl.col("native") == "FTMUSD_PERP").row(0, named=True)
    assert ftm["status"] == "SETTLING"
    assert ftm["delisted"] == utc(2025, 1, 13, 9)
    assert "ETHUSD_270326" not in frame["native"].to_list()


@pytest.mark.parametrize("dataset", ["aggTrades", "trades"])
def test_a_month_of_daily_files_only(mirror: Mirror, dataset: str) -> None:
    """No monthly file: a finished month reads its daily files, checksums verified."""
    start, stop = month_bounds(date(2024, 2, 1))
    trades = _contracts(sample_trades(start, stop, 300, seed=5))
    write_archive(trades, mirror.root, ETH, dataset=dataset)
    assert not list(mirror.root.glob("data/futures/cm/monthly/**/*.zip"))
    got = fetch_month(
        NAME, ETH, date(2024, 2, 1), base_url=mirror.url, session=mirror.session, dataset=dataset
    )
    assert got.report.complete
    assert all(f.checksum_verified for f in got.report.files)
    assert len(got.report.files) == 29
    assert got.trades["notional"].to_list() == pytest.approx(trades["notional"].to_list())


def _contracts(trades: pl.DataFrame, size: float = 10.0) -> pl.DataFrame:
    """Trades of whole contracts of ``size`` USD (what COIN-M files hold)."""
    notional = (pl.col("notional") / size).ceil() * size
    return trades.with_columns(notional=notional, base_qty=notional / pl.col("price"))


def _real_day() -> pl.DataFrame:
    """The real COIN-M day read independently of the parsers (quantity x 100 USD)."""
    with zipfile.ZipFile(REAL_DAY) as archive:
        raw = pl.read_csv(archive.read(archive.namelist()[0]))
    notional = pl.col("quantity") * 100.0
    return raw.select(
        pl.from_epoch("transact_time", time_unit="ms").cast(UTC_MICROS).alias("exchange_ts"),
        pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
        pl.col("agg_trade_id").alias("trade_id"),
        pl.col("price").cast(pl.Float64),
        (notional / pl.col("price")).alias("base_qty"),
        notional.alias("notional"),
        pl.col("is_buyer_maker").not_().alias("is_taker_buy"),
        "first_trade_id",
        "last_trade_id",
    )


@pytest.mark.skipif(not REAL_DAY.exists(), reason=f"real data not found at {REAL_DAY}")
def test_the_real_coin_m_day_through_dagster(
    tmp_path: Path, mirror_root: Path, archive_server
) -> None:
    """The real BTCUSD_PERP day 2026-05-08 (zip + CHECKSUM as published), served as an archive
    beside synthetic files for May's other days, materialized through Dagster; every
    interval's bars equal the reference computed from the real CSV read independently."""
    month = date(2026, 5, 1)
    start, stop = month_bounds(month)
    day = pl.col("exchange_ts").dt.date() == date(2026, 5, 8)
    others = _contracts(sample_trades(start, stop, 900, seed=11), 100.0).filter(~day)
    write_archive(others, mirror_root, BTC)
    folder = mirror_root / "data/futures/cm/daily/aggTrades/BTCUSD_PERP"
    for path in (REAL_DAY, REAL_DAY.with_name(REAL_DAY.name + ".CHECKSUM")):
        shutil.copy(path, folder / path.name)
    store = FlowStore(url=str(tmp_path / "store"))
    entry = InstrumentEntry(NAME, BTC)
    run_months(store, archive_server.url, [entry], month)
    real = _real_day()
    expected = pl.concat([others, real]).sort("exchange_ts", "trade_id")
    got = published_trades(store, NAME, BTC, month)
    assert got.filter(day).height == real.height == 105_280
    assert got["notional"].sum() == pytest.approx(expected["notional"].sum(), rel=1e-12)
    assert_bars_match_reference(store, NAME, BTC, month, expected, utc(2026, 5, 8, 12))
