"""Atlas ids, exchange-native ids and contract specs with their history."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime

import polars as pl
import pytest

from flow_assets.symbology import (
    Instrument,
    SymbolError,
    contract_spec,
    contract_value,
    format_symbol,
    from_native,
    parse_symbol,
    perpetual,
    to_native,
)
from flow_assets.venues import NAMES, binance_futures, okx_perps


@pytest.mark.parametrize(
    ("text", "instrument"),
    [
        ("perpetual-BTC-USDT:USDT", Instrument("perpetual", "BTC", "USDT", "USDT")),
        ("perpetual-BTC-USD:BTC", Instrument("perpetual", "BTC", "USD", "BTC")),
        ("spot-BTC-USDT", Instrument("spot", "BTC", "USDT")),
        (
            "future-BTC-USD:BTC-20250328",
            Instrument("future", "BTC", "USD", "BTC", date(2025, 3, 28)),
        ),
        ("perpetual-1000PEPE-USDT:USDT", Instrument("perpetual", "1000PEPE", "USDT", "USDT")),
    ],
)
def test_parse_and_format_round_trip(text: str, instrument: Instrument) -> None:
    assert parse_symbol(text) == instrument
    assert format_symbol(instrument) == text
    assert str(instrument) == text


def test_linear_and_inverse() -> None:
    assert parse_symbol("perpetual-BTC-USDT:USDT").is_linear
    assert parse_symbol("perpetual-BTC-USD:BTC").is_inverse
    assert not parse_symbol("spot-BTC-USDT").is_linear


@pytest.mark.parametrize(
    "bad",
    [
        "BTCUSDT",
        "perpetual-BTC-USDT",  # no settle
        "perp-BTC-USDT:USDT",  # unknown type
        "perpetual-btc-usdt:usdt",
        "perpetual-BTC-USDT:ETH",  # settle is neither base nor quote
        "spot-BTC-USDT:USDT",
        "future-BTC-USD:BTC",  # no expiry
        "future-BTC-USD:BTC-20251341",
        "",
    ],
)
def test_malformed_symbols_are_clear_errors(bad: str) -> None:
    with pytest.raises(SymbolError, match=r"perpetual-BTC-USDT:USDT|settle|expiry|spot"):
        parse_symbol(bad)


@pytest.mark.parametrize(
    ("exchange", "atlas", "native"),
    [
        ("binance-futures", "perpetual-BTC-USDT:USDT", "BTCUSDT"),
        ("binance-futures", "perpetual-1000PEPE-USDT:USDT", "1000PEPEUSDT"),
        ("binance-futures", "perpetual-ETH-USDC:USDC", "ETHUSDC"),
        ("okx-perps", "perpetual-BTC-USDT:USDT", "BTC-USDT-SWAP"),
        ("okx-perps", "perpetual-BTC-USD:BTC", "BTC-USD-SWAP"),
        ("okx-perps", "perpetual-ETH-USD:ETH", "ETH-USD-SWAP"),
    ],
)
def test_native_round_trip(exchange: str, atlas: str, native: str) -> None:
    assert to_native(exchange, atlas) == native
    assert str(from_native(exchange, native)) == atlas


@pytest.mark.parametrize(
    ("exchange", "symbol"),
    [
        ("binance-futures", "perpetual-BTC-USD:BTC"),  # COIN-M is not USD-M
        ("binance-futures", "spot-BTC-USDT"),
        ("okx-perps", "perpetual-BTC-EUR:EUR"),
        ("okx-perps", "spot-BTC-USDT"),
    ],
)
def test_unsupported_instruments_list_what_is_supported(exchange: str, symbol: str) -> None:
    with pytest.raises(SymbolError, match="supports"):
        to_native(exchange, symbol)


def test_unknown_native_and_exchange() -> None:
    with pytest.raises(SymbolError, match="BTC-USDT-SWAP"):
        from_native("okx-perps", "BTCUSDT")
    with pytest.raises(SymbolError, match="supports"):
        from_native("binance-futures", "BTCEUR")
    with pytest.raises(SymbolError, match=", ".join(NAMES)):
        to_native("kraken", "perpetual-BTC-USDT:USDT")
    assert NAMES[:2] == ("binance-futures", "okx-perps")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("symbol", "when", "value"),
    [
        ("perpetual-BTC-USDT:USDT", at(2020, 3, 20, 7, 59, 59), 0.0001),
        ("perpetual-BTC-USDT:USDT", at(2020, 3, 20, 8), 0.01),
        ("perpetual-BTC-USDT:USDT", at(2026, 1, 1), 0.01),
        ("perpetual-ETH-USDT:USDT", at(2020, 3, 19, 7, 59), 0.001),
        ("perpetual-ETH-USDT:USDT", at(2020, 3, 19, 8), 0.1),
        ("perpetual-BTC-USD:BTC", at(2024, 1, 1), 100.0),
        ("perpetual-ETH-USD:ETH", at(2024, 1, 1), 10.0),
    ],
)
def test_okx_contract_values_with_history(symbol: str, when: datetime, value: float) -> None:
    assert contract_value("okx-perps", symbol, when) == value


def test_contract_spec_kinds_and_binance() -> None:
    assert contract_spec("okx-perps", "perpetual-BTC-USD:BTC", at(2024, 1, 1)).kind == "inverse"
    assert contract_spec("okx-perps", "perpetual-BTC-USDT:USDT", at(2024, 1, 1)).kind == "linear"
    assert contract_value("binance-futures", "perpetual-BTC-USDT:USDT", at(2024, 1, 1)) == 1.0
    with pytest.raises(SymbolError, match="contract spec"):
        contract_value("okx-perps", "perpetual-SOL-USDT:USDT", at(2024, 1, 1))
    with pytest.raises(ValueError, match="zone-aware"):
        contract_value("okx-perps", "perpetual-BTC-USDT:USDT", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("exchange", "native", "atlas"),
    [
        ("binance-futures", "btcusdc", "perpetual-BTC-USDC:USDC"),
        ("binance-futures", "1000pepeUSDT", "perpetual-1000PEPE-USDT:USDT"),
        ("binance-futures", "1000000MOGUSDT", "perpetual-1000000MOG-USDT:USDT"),
        ("binance-futures", "BTCDOMUSDT", "perpetual-BTCDOM-USDT:USDT"),
        ("binance-futures", "WBTCUSDT", "perpetual-WBTC-USDT:USDT"),
        ("binance-futures", "ETHBTC", "perpetual-ETH-BTC:BTC"),  # BTC-margined: linear in BTC
        ("okx-perps", "SOL-USDT-SWAP", "perpetual-SOL-USDT:USDT"),
        ("okx-perps", "DOGE-USDC-SWAP", "perpetual-DOGE-USDC:USDC"),
        ("okx-perps", "BTC-USD_UM-SWAP", "perpetual-BTC-USD:USD"),
        ("okx-perps", "TON-USD-SWAP", "perpetual-TON-USD:TON"),
    ],
)
def test_any_native_id_of_the_grammar(exchange: str, native: str, atlas: str) -> None:
    assert str(from_native(exchange, native)) == atlas
    assert to_native(exchange, atlas) == (
        native.upper() if exchange == "binance-futures" else native
    )


def test_okx_ids_are_case_sensitive_and_perpetual_checks_assets() -> None:
    with pytest.raises(SymbolError, match="unknown okx-perps symbol"):
        from_native("okx-perps", "btc-usdt-swap")
    assert str(perpetual("eth", "btc", "btc")) == "perpetual-ETH-BTC:BTC"
    with pytest.raises(SymbolError, match="neither the base"):
        perpetual("ETH", "BTC", "USDT")
    with pytest.raises(SymbolError, match="Atlas grammar"):
        perpetual("币安人生", "USDT", "USDT")


@pytest.mark.parametrize(
    ("exchange", "document", "parse"),
    [
        ("binance-futures", binance_futures.sample, binance_futures.parse_catalog),
        ("okx-perps", okx_perps.sample, okx_perps.parse_catalog),
    ],
)
def test_round_trip_of_a_whole_catalog(
    exchange: str, document: Callable[[], dict], parse: Callable[[object], pl.DataFrame]
) -> None:
    catalog = parse(document())
    assert catalog.height > 200
    assert catalog["symbol"].null_count() == 0
    for native, symbol in catalog.select("native", "symbol").iter_rows():
        assert str(from_native(exchange, native)) == symbol
        assert to_native(exchange, symbol) == native
        if exchange == "binance-futures":  # Binance ids in any case (Atlas stores them lower)
            assert str(from_native(exchange, native.lower())) == symbol


def test_catalog_rows_outside_the_atlas_grammar_have_no_symbol() -> None:
    document = binance_futures.sample()
    odd = copy.deepcopy(document["symbols"][0])
    odd.update(symbol="币安人生USDT", pair="币安人生USDT", baseAsset="币安人生")
    document["symbols"].append(odd)
    catalog = binance_futures.parse_catalog(document)
    assert catalog.filter(pl.col("native") == "币安人生USDT")["symbol"].to_list() == [None]
