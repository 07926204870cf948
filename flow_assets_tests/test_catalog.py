"""Instrument catalogs fetched over a real socket from a local server in the exchanges' shapes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests

from flow_assets.catalog import (
    CatalogFetchError,
    CatalogShapeError,
    UnknownContractError,
    contract_values,
    fetch_catalog,
    load_catalog,
    merge_snapshot,
    resolve_api_url,
    seed_history,
    update_catalog,
    value_at,
)
from flow_assets.catalog.mirror import CatalogServer
from flow_assets.loopback import Fault
from flow_assets.sources.http import make_session
from flow_assets.sources.okx import ContractValues
from flow_assets.store import LocalStore
from flow_assets.symbology import from_native, to_native
from flow_assets.venues import binance_futures
from flow_assets.venues.okx_perps import OkxApiError, okx_instrument
from flow_assets.venues.okx_perps import sample as okx_sample

binance_sample = binance_futures.sample
OKX, BINANCE = "okx-perps", "binance-futures"

OKX_PATH = "/api/v5/public/instruments"
BINANCE_PATH = "/fapi/v1/exchangeInfo"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def server() -> Iterator[CatalogServer]:
    with CatalogServer({"binance-futures": binance_sample(), "okx-perps": okx_sample()}) as running:
        yield running


@pytest.fixture
def session() -> requests.Session:
    return make_session(retries=2, backoff=0.01, backoff_max=0.02, timeout=(2.0, 5.0))


def row(frame: pl.DataFrame, native: str) -> dict[str, Any]:
    return frame.filter(pl.col("native") == native).row(0, named=True)


def okx_with(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": items}


def test_fetch_both_catalogs_from_the_local_server(
    server: CatalogServer, session: requests.Session
) -> None:
    binance = fetch_catalog(BINANCE, server.url, session)
    okx = fetch_catalog("okx-perps", server.url, session)
    assert binance.height > 200
    assert okx.height > 200
    assert "BTCUSDT_261225" not in binance["native"].to_list()  # a quarterly, not a perpetual
    btc = row(binance, "BTCUSDT")
    assert (btc["symbol"], btc["settle"], btc["kind"], btc["ct_val"], btc["ct_val_ccy"]) == (
        "perpetual-BTC-USDT:USDT", "USDT", "linear", 1.0, "BTC"
    )  # fmt: skip
    assert row(binance, "ETHBTC")["symbol"] == "perpetual-ETH-BTC:BTC"
    inverse = row(okx, "BTC-USD-SWAP")
    assert (inverse["symbol"], inverse["kind"], inverse["ct_val"], inverse["ct_val_ccy"]) == (
        "perpetual-BTC-USD:BTC", "inverse", 100.0, "USD"
    )  # fmt: skip
    assert row(okx, "BTC-USD_UM-SWAP")["symbol"] == "perpetual-BTC-USD:USD"
    assert (OKX_PATH, "instType=SWAP", 200) in server.log


def test_base_urls_from_the_environment(
    server: CatalogServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_api_url("binance-futures") == "https://fapi.binance.com"
    assert resolve_api_url("okx-perps", "http://x/") == "http://x"
    monkeypatch.setenv("FLOW_ASSETS_OKX_API_URL", server.url + "/")
    monkeypatch.setenv("FLOW_ASSETS_BINANCE_API_URL", server.url)
    assert resolve_api_url("okx-perps") == server.url
    assert fetch_catalog(OKX, session=session).height > 200
    assert fetch_catalog(BINANCE, session=session).height > 200


def test_okx_error_code_is_a_clear_error(server: CatalogServer, session: requests.Session) -> None:
    server.documents["okx-perps"] = {"code": "50011", "msg": "Too Many Requests", "data": []}
    with pytest.raises(OkxApiError, match=r"50011.*Too Many Requests") as error:
        fetch_catalog(OKX, server.url, session)
    assert error.value.code == "50011"


def test_http_500_after_retries(server: CatalogServer, session: requests.Session) -> None:
    server.inject(BINANCE_PATH, *[Fault(status=500)] * 3)
    with pytest.raises(CatalogFetchError, match="HTTP 500"):
        fetch_catalog(BINANCE, server.url, session)
    assert [entry[2] for entry in server.log] == [500, 500, 500]


def test_a_passing_503_is_retried(server: CatalogServer, session: requests.Session) -> None:
    server.inject(OKX_PATH, Fault(status=503))
    assert fetch_catalog(OKX, server.url, session).height > 200
    assert [entry[2] for entry in server.log] == [503, 200]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"<html>maintenance</html>", CatalogFetchError, "did not answer JSON"),
        (b'{"symbols": "none"}', CatalogShapeError, "'symbols' list"),
        (b'{"symbols": [{"symbol": "BTCUSDT", "contractType": "PERPETUAL"}]}',
         CatalogShapeError, "BTCUSDT: missing field"),
        (b'{"symbols": []}', CatalogShapeError, "no perpetual at all"),
    ],
)  # fmt: skip
def test_malformed_binance_answers(
    server: CatalogServer, session: requests.Session, body: bytes, error: type, message: str
) -> None:
    server.inject(BINANCE_PATH, Fault(body=body))
    with pytest.raises(error, match=message):
        fetch_catalog(BINANCE, server.url, session)


def test_malformed_okx_answers(server: CatalogServer, session: requests.Session) -> None:
    server.inject(OKX_PATH, Fault(body=b"[1, 2]"), Fault(body=b'{"code": "0", "data": {}}'))
    with pytest.raises(CatalogShapeError, match="'code'"):
        fetch_catalog(OKX, server.url, session)
    with pytest.raises(CatalogShapeError, match="'data' list"):
        fetch_catalog(OKX, server.url, session)
    bad = okx_instrument("SOL-USDT-SWAP", "one", listed=at(2024, 1, 1))
    server.documents["okx-perps"] = okx_with([bad])
    with pytest.raises(CatalogShapeError, match="SOL-USDT-SWAP: expected a number"):
        fetch_catalog(OKX, server.url, session)


def test_listing_in_the_middle_of_a_month_keeps_its_exact_time(
    server: CatalogServer, session: requests.Session
) -> None:
    listed = datetime(2024, 5, 17, 9, 31, 12, 345000, tzinfo=UTC)
    server.documents["okx-perps"] = okx_with([okx_instrument("JUP-USDT-SWAP", "10", listed=listed)])
    snapshot = fetch_catalog(OKX, server.url, session)
    assert row(snapshot, "JUP-USDT-SWAP")["listed"] == listed
    values = contract_values(merge_snapshot(seed_history(), snapshot, at(2024, 6, 1)),
                             "okx-perps", "JUP-USDT-SWAP")  # fmt: skip
    assert values.rows() == [(listed, None, 10.0)]


def test_binance_delistings_from_status_and_delivery_date(
    server: CatalogServer, session: requests.Session
) -> None:
    binance = fetch_catalog(BINANCE, server.url, session)
    settling, closed = row(binance, "AGIXUSDT"), row(binance, "OCEANUSDT")
    assert (settling["status"], settling["delisted"]) == ("SETTLING", at(2026, 9, 15, 9))
    assert (closed["status"], closed["delisted"]) == ("CLOSE", at(2024, 9, 3, 9, 30))
    assert row(binance, "BTCUSDT")["delisted"] is None  # deliveryDate 2100-12-25: no end
    assert row(binance, "NEWCOINUSDT")["status"] == "PENDING_TRADING"


def test_okx_delisting_by_absence_and_by_exp_time(
    server: CatalogServer, session: requests.Session, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path)
    first_seen, second_seen = at(2026, 10, 1, 0, 5), at(2026, 10, 2, 0, 5)
    update_catalog(store, "okx-perps", fetch_catalog(OKX, server.url, session), first_seen)
    server.documents["okx-perps"] = okx_with(
        [i for i in okx_sample()["data"] if i["instId"] != "ANT-USDT-SWAP"]
    )
    catalog = update_catalog(
        store, "okx-perps", fetch_catalog(OKX, server.url, session), second_seen
    )
    gone = row(catalog.instruments, "ANT-USDT-SWAP")
    assert (gone["status"], gone["delisted"]) == ("delisted", second_seen)
    suspended = row(catalog.instruments, "LOOM-USDT-SWAP")  # expTime announced
    assert (suspended["status"], suspended["delisted"]) == ("suspend", at(2026, 10, 3, 8))
    assert row(catalog.instruments, "BTC-USDT-SWAP")["delisted"] is None
    reloaded = load_catalog(store, "okx-perps")
    assert reloaded.instruments.equals(catalog.instruments)
    assert reloaded.contracts.equals(catalog.contracts)


def test_contract_value_change_seen_by_two_snapshots(
    server: CatalogServer, session: requests.Session, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path)
    listed, changed_seen = at(2021, 9, 7), at(2024, 4, 18, 8, 0, 30)
    server.documents["okx-perps"] = okx_with(
        [okx_instrument("AGLD-USDT-SWAP", "0.001", listed=listed)]
    )
    update_catalog(store, "okx-perps", fetch_catalog(OKX, server.url, session), at(2024, 4, 17, 8))
    server.documents["okx-perps"] = okx_with(
        [okx_instrument("AGLD-USDT-SWAP", "0.0001", listed=listed)]
    )
    catalog = update_catalog(
        store, "okx-perps", fetch_catalog(OKX, server.url, session), changed_seen
    )
    values = contract_values(catalog.contracts, "okx-perps", "AGLD-USDT-SWAP")
    assert values.rows() == [(listed, changed_seen, 0.001), (changed_seen, None, 0.0001)]
    assert value_at(values, at(2024, 4, 18, 8)) == 0.001
    assert value_at(values, changed_seen) == 0.0001
    with pytest.raises(UnknownContractError, match="2021-09-06"):
        value_at(values, at(2021, 9, 6), "AGLD-USDT-SWAP")


def test_seeded_2020_changes_survive_snapshots(
    server: CatalogServer, session: requests.Session, tmp_path: Path
) -> None:
    catalog = update_catalog(
        LocalStore(tmp_path), "okx-perps", fetch_catalog(OKX, server.url, session), at(2026, 10, 1)
    )
    btc = contract_values(catalog.contracts, "okx-perps", "BTC-USDT-SWAP")
    change = at(2020, 3, 20, 8)
    assert btc.rows() == [(None, change, 0.0001), (change, None, 0.01)]
    inverse = contract_values(catalog.contracts, "okx-perps", "BTC-USD-SWAP")
    assert inverse.rows() == [(None, None, 100.0)]


def test_swaps_not_in_contracts_csv_come_from_the_catalog(
    server: CatalogServer, session: requests.Session
) -> None:
    snapshot = fetch_catalog(OKX, server.url, session)
    with pytest.raises(UnknownContractError, match="SOL-USDT-SWAP on okx-perps"):
        contract_values(seed_history(), "okx-perps", "SOL-USDT-SWAP")
    history = merge_snapshot(seed_history(), snapshot, at(2026, 10, 1))
    for native, symbol, value in [
        ("SOL-USDT-SWAP", "perpetual-SOL-USDT:USDT", 1.0),
        ("DOGE-USDT-SWAP", "perpetual-DOGE-USDT:USDT", 1000.0),
    ]:
        listing = row(snapshot, native)
        assert listing["symbol"] == symbol
        assert to_native("okx-perps", symbol) == native
        assert str(from_native("okx-perps", native)) == symbol
        values = contract_values(history, "okx-perps", native)
        assert values.rows() == [(listing["listed"], None, value)]


def test_binance_values_match_any_letter_case(
    server: CatalogServer, session: requests.Session
) -> None:
    history = merge_snapshot(
        seed_history(), fetch_catalog(BINANCE, server.url, session), at(2026, 10, 1)
    )
    assert contract_values(history, "binance-futures", "btcusdt")["ct_val"].to_list() == [1.0]
    # an unlisted Binance id falls back to the seed's "*" row (USD-M sizes are base units)
    assert contract_values(history, "binance-futures", "NOPEUSDT").rows() == [(None, None, 1.0)]


def test_the_okx_parser_converts_with_the_catalogs_value_in_force_per_trade() -> None:
    history = seed_history()
    values = contract_values(history, "okx-perps", "ETH-USDT-SWAP")
    times = [at(2020, 3, 19, 7, 59), at(2020, 3, 19, 8), at(2025, 1, 1)]
    frame = pl.DataFrame({"ts": times}, schema={"ts": pl.Datetime("us", "UTC")})
    in_force = ContractValues("ETH-USDT-SWAP", values).expr(pl.col("ts"))
    got = frame.select(in_force.alias("v"))["v"].to_list()
    assert got == [value_at(values, t) for t in times] == [0.001, 0.1, 0.1]


def test_the_server_swaps_snapshots_without_restarting(server: CatalogServer) -> None:
    original = copy.deepcopy(server.documents["okx-perps"])
    server.documents["okx-perps"] = okx_with([])
    answer = requests.get(server.url + OKX_PATH, params={"instType": "SWAP"}, timeout=5).json()
    assert answer == {"code": "0", "msg": "", "data": []}
    missing = requests.get(server.url + OKX_PATH, timeout=5).json()
    assert missing["code"] == "50014"
    assert original is not None
    assert set(original["data"][0]) >= {
        "alias", "baseCcy", "category", "ctMult", "ctType", "ctVal", "ctValCcy", "expTime",
        "instFamily", "instId", "instType", "lever", "listTime", "lotSz", "maxIcebergSz",
        "maxLmtSz", "minSz", "settleCcy", "state", "tickSz", "uly",
    }  # fmt: skip
