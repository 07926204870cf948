"""``binance-futures``: Binance USD-M perpetuals.

* Atlas: ``<BASE><QUOTE>`` (any letter case) <-> ``perpetual-<BASE>-<QUOTE>:<QUOTE>``, linear,
  quoted and margined in USDT, USDC, FDUSD, BUSD or BTC (``ETHBTC``); stablecoins are tried first,
  so a base ending in "BTC" (``WBTCUSDT``) keeps its name.
* Archive: ``data.binance.vision`` ``data/futures/um/{monthly|daily}/{aggTrades|trades}/...``,
  zip + ``.CHECKSUM``, UTC days, integer trade ids, quantities in the base asset
  (:mod:`flow_assets.sources.binance`); base ``FLOW_ASSETS_BINANCE_URL``.
* Catalog: ``GET /fapi/v1/exchangeInfo`` (:func:`flow_assets.catalog.model.parse_binance`); base
  ``FLOW_ASSETS_BINANCE_API_URL``.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from flow_assets.catalog.fetch import BINANCE_PATH, BINANCE_URL, BINANCE_URL_ENV, fetch_binance
from flow_assets.catalog.samples import binance_sample
from flow_assets.sources.binance import BINANCE
from flow_assets.sources.mirror import write_binance
from flow_assets.symbology import Instrument
from flow_assets.venues.base import CatalogReader, Venue

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


def answer(path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
    """``GET /fapi/v1/exchangeInfo``: the whole document, no parameters."""
    return (200, document) if path == BINANCE_PATH else (404, {"code": -1, "msg": "Not Found"})


def _fetch(base: str, session: requests.Session) -> Any:
    return fetch_binance(base, session)


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=BINANCE,
    catalog=CatalogReader(BINANCE_URL, BINANCE_URL_ENV, _fetch, answer, binance_sample),
    write_archive=write_binance,
    ids_case_insensitive=True,
)
