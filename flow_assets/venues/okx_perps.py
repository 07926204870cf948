"""``okx-perps``: OKX perpetual swaps.

* Atlas: ``<BASE>-USDT|USDC-SWAP`` linear (``perpetual-<BASE>-<QUOTE>:<QUOTE>``),
  ``<BASE>-USD-SWAP`` inverse (``perpetual-<BASE>-USD:<BASE>``), ``<BASE>-USD_UM-SWAP`` linear
  settled in USD (``perpetual-<BASE>-USD:USD``).
* Archive: ``static.okx.com`` daily zips on UTC+8 days, no checksums, integer trade ids, sizes
  in contracts converted with the catalog's contract values (:mod:`flow_assets.sources.okx`);
  base ``FLOW_ASSETS_OKX_URL``.
* Catalog: ``GET /api/v5/public/instruments?instType=SWAP``
  (:func:`flow_assets.catalog.model.parse_okx`); base ``FLOW_ASSETS_OKX_API_URL``.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from flow_assets.catalog.fetch import OKX_PATH, OKX_URL, OKX_URL_ENV, fetch_okx
from flow_assets.catalog.samples import okx_sample
from flow_assets.sources.mirror import write_okx
from flow_assets.sources.okx import OKX
from flow_assets.symbology import Instrument
from flow_assets.venues.base import CatalogReader, Venue

NAME = "okx-perps"
_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+)-(?P<quote>USDT|USDC|USD|USD_UM)-SWAP$")
HELP = (
    f"{NAME} supports perpetual swaps 'perpetual-<BASE>-USDT:USDT' <-> '<BASE>-USDT-SWAP' "
    "(also USDC), 'perpetual-<BASE>-USD:<BASE>' <-> '<BASE>-USD-SWAP' (inverse) and "
    "'perpetual-<BASE>-USD:USD' <-> '<BASE>-USD_UM-SWAP' (USD-margined), "
    "e.g. BTC-USDT-SWAP, BTC-USD-SWAP"
)


def to_native(inst: Instrument) -> str | None:
    """``BTC-USDT-SWAP`` for ``perpetual-BTC-USDT:USDT``; None outside the grammar."""
    if inst.kind != "perpetual":
        return None
    if inst.is_linear and inst.quote in ("USDT", "USDC"):
        return f"{inst.base}-{inst.quote}-SWAP"
    if inst.quote == "USD" and inst.settle == "USD":
        return f"{inst.base}-USD_UM-SWAP"
    if inst.is_inverse and inst.quote == "USD":
        return f"{inst.base}-USD-SWAP"
    return None


def from_native(native: str) -> Instrument | None:
    """The perpetual of an OKX swap id (case as OKX publishes it)."""
    match = _NATIVE.match(native)
    if match is None:
        return None
    base, quote = match["base"], match["quote"]
    if quote == "USD_UM":
        return Instrument("perpetual", base, "USD", "USD")
    return Instrument("perpetual", base, quote, base if quote == "USD" else quote)


def answer(path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
    """``GET /api/v5/public/instruments``: ``instType`` required, only SWAP listed here."""
    if path != OKX_PATH:
        return 404, {"msg": "Not Found", "code": 404}
    inst_type = query.get("instType", [""])[0]
    if not inst_type:
        return 200, {"code": "50014", "msg": "Parameter instType can not be empty", "data": []}
    if inst_type != "SWAP":
        return 200, {"code": "0", "msg": "", "data": []}
    return 200, document


def _fetch(base: str, session: requests.Session) -> Any:
    return fetch_okx(base, session)


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=OKX,
    catalog=CatalogReader(OKX_URL, OKX_URL_ENV, _fetch, answer, okx_sample),
    write_archive=write_okx,
)
