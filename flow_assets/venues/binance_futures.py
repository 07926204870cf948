"""``binance-futures``: Binance USD-M perpetuals.

* Atlas: ``<BASE><QUOTE>`` (any letter case) <-> ``perpetual-<BASE>-<QUOTE>:<QUOTE>``, linear,
  quoted and margined in USDT, USDC, FDUSD, BUSD or BTC (``ETHBTC``); stablecoins are tried first,
  so a base ending in "BTC" (``WBTCUSDT``) keeps its name.
* Archive: ``data.binance.vision`` ``data/futures/um/{monthly|daily}/{aggTrades|trades}/...``,
  zip + ``.CHECKSUM``, UTC days, integer trade ids, quantities in the base asset
  (:mod:`flow_assets.sources.binance`); base ``FLOW_ASSETS_BINANCE_URL``.
* Catalog: ``GET {base}/fapi/v1/exchangeInfo`` (base ``FLOW_ASSETS_BINANCE_API_URL``, else
  ``https://fapi.binance.com``): one answer holds every symbol (no pagination, no parameters;
  request weight 1 against the per-IP limit its ``rateLimits`` state); symbols with
  ``contractType == "PERPETUAL"`` kept, ``baseAsset``, ``quoteAsset``, ``marginAsset``,
  ``onboardDate``, ``deliveryDate`` (:mod:`flow_assets.venues.binance_common`), ``status``;
  sizes are base units (``ct_val`` 1 of the base).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import requests

from flow_assets.catalog.model import atlas_id, field, from_ms, instruments_frame, items_of
from flow_assets.catalog.samples import COINS, MULTIPLIED, SNAPSHOT_AT, listed
from flow_assets.sources.binance import BINANCE
from flow_assets.sources.mirror import write_binance
from flow_assets.symbology import Instrument, SymbolError, perpetual
from flow_assets.venues.base import CatalogReader, Venue
from flow_assets.venues.binance_common import (
    binance_exchange_info,
    binance_symbol,
    delisted,
    document_at,
    fetch_exchange_info,
)

NAME = "binance-futures"
QUOTES: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "BUSD", "BTC")
_NATIVE = re.compile(r"^[A-Z0-9]+$")
HELP = (
    f"{NAME} supports linear perpetuals quoted and settled in {'/'.join(QUOTES)}: "
    "'perpetual-<BASE>-<QUOTE>:<QUOTE>' <-> '<BASE><QUOTE>' (e.g. BTCUSDT, 1000PEPEUSDC)"
)


def to_native(inst: Instrument) -> str | None:
    """``BTCUSDT`` for ``perpetual-BTC-USDT:USDT``; None outside the grammar."""
    if inst.kind == "perpetual" and inst.is_linear and inst.quote in QUOTES:
        return f"{inst.base}{inst.quote}"
    return None


def from_native(native: str) -> Instrument | None:
    """The perpetual of a USD-M id split at a known quote (any letter case)."""
    upper = native.upper()
    if _NATIVE.match(upper):
        for quote in QUOTES:
            base = upper.removesuffix(quote)
            if base != upper and base:
                return Instrument("perpetual", base, quote, quote)
    return None


# --- catalog --------------------------------------------------------------------------------

API_URL = "https://fapi.binance.com"
API_ENV = "FLOW_ASSETS_BINANCE_API_URL"
API_PATH = "/fapi/v1/exchangeInfo"


def _row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(field(item, "symbol", "binance exchangeInfo symbol"))
    where = f"binance exchangeInfo symbol {native}"
    base = str(field(item, "baseAsset", where))
    quote = str(field(item, "quoteAsset", where))
    settle = str(field(item, "marginAsset", where))
    try:
        symbol = atlas_id(NAME, native, perpetual(base, quote, settle))
    except SymbolError:
        symbol = None
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "kind": "linear",  # USD-M quantities are base units whatever the margin asset
        "ct_val": 1.0,
        "ct_val_ccy": base,
        "listed": from_ms(field(item, "onboardDate", where), where),
        "delisted": delisted(field(item, "deliveryDate", where), where),
        "status": str(field(item, "status", where)),
    }


def parse_catalog(document: object) -> pl.DataFrame:
    """The perpetuals (``contractType == "PERPETUAL"``) of a ``/fapi/v1/exchangeInfo`` answer."""
    items = items_of(document, "symbols", "binance exchangeInfo")
    return instruments_frame([_row(i) for i in items if i.get("contractType") == "PERPETUAL"])


def fetch_catalog(base: str, session: requests.Session) -> pl.DataFrame:
    """Every USD-M perpetual now (one request)."""
    return fetch_exchange_info(base, API_PATH, session, parse_catalog)


_USDC_TWINS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "LINK", "SUI", "1000PEPE",
               "1000BONK", "1000SHIB", "WIF", "AAVE", "ORDI", "TRUMP"]  # fmt: skip
# Symbols on their way out: status and the delivery (delisting) time announced.
_LEAVING = {
    "AGIX": ("SETTLING", datetime(2026, 9, 15, 9, tzinfo=UTC)),
    "OCEAN": ("CLOSE", datetime(2024, 9, 3, 9, 30, tzinfo=UTC)),
}


def sample() -> dict[str, Any]:
    """A realistic exchangeInfo: ~300 USD-M perpetuals (USDC twins, BTC-margined ``ETHBTC``,
    a settling, a closed and a pending symbol) plus one quarterly contract."""
    pairs = [(c, "USDT") for c in dict.fromkeys(COINS + MULTIPLIED + ["BTCDOM"])]
    pairs += [(c, "USDC") for c in _USDC_TWINS] + [("ETH", "BTC"), ("BNB", "BTC")]
    symbols = [
        binance_symbol(f"{base}{quote}", base, quote, onboard=listed(n))
        for n, (base, quote) in enumerate(pairs)
    ]
    symbols.append(
        binance_symbol("BTCUSDT_261225", "BTC", "USDT", onboard=listed(1),
                       delivery=datetime(2026, 12, 25, 8, tzinfo=UTC),
                       contract_type="CURRENT_QUARTER")
    )  # fmt: skip
    for n, (base, (status, delivery)) in enumerate(_LEAVING.items()):
        symbols.append(
            binance_symbol(f"{base}USDT", base, "USDT", onboard=listed(n + 3), status=status,
                           delivery=delivery)
        )  # fmt: skip
    symbols.append(
        binance_symbol("NEWCOINUSDT", "NEWCOIN", "USDT", onboard=SNAPSHOT_AT + timedelta(hours=6),
                       status="PENDING_TRADING")
    )  # fmt: skip
    return binance_exchange_info(symbols, SNAPSHOT_AT)


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=BINANCE,
    catalog=CatalogReader(API_URL, API_ENV, fetch_catalog, document_at(API_PATH), sample),
    write_archive=write_binance,
    ids_case_insensitive=True,
)
