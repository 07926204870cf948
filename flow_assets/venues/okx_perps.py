"""``okx-perps``: OKX perpetual swaps.

* Atlas: ``<BASE>-USDT|USDC-SWAP`` linear (``perpetual-<BASE>-<QUOTE>:<QUOTE>``),
  ``<BASE>-USD-SWAP`` inverse (``perpetual-<BASE>-USD:<BASE>``), ``<BASE>-USD_UM-SWAP`` linear
  settled in USD (``perpetual-<BASE>-USD:USD``).
* Archive: ``static.okx.com`` daily zips on UTC+8 days, no checksums, integer trade ids, sizes
  in contracts converted with the catalog's contract values (:mod:`flow_assets.sources.okx`);
  base ``FLOW_ASSETS_OKX_URL``.
* Catalog: ``GET {base}/api/v5/public/instruments?instType=SWAP`` (base
  ``FLOW_ASSETS_OKX_API_URL``, else ``https://www.okx.com``): one answer holds every swap (no
  pagination; 20 requests per 2 s per IP), ``{"code": "0", "msg": "", "data": [...]}``; another
  ``code`` is an :class:`OkxApiError`. Fields: ``instId``, ``ctType`` (linear/inverse),
  ``ctVal * ctMult`` in ``ctValCcy`` (the contract value), ``settleCcy``, ``listTime``,
  ``expTime``, ``state``.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime
from typing import Any

import polars as pl
import requests

from flow_assets.catalog.fetch import CatalogFetchError, get_json, non_empty
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import (
    CatalogShapeError,
    field,
    from_ms,
    instruments_frame,
    items_of,
    number,
)
from flow_assets.catalog.samples import COINS, listed
from flow_assets.sources.mirror import write_okx
from flow_assets.sources.okx import OKX
from flow_assets.symbology import Instrument, format_symbol
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


# --- catalog --------------------------------------------------------------------------------

API_URL = "https://www.okx.com"
API_ENV = "FLOW_ASSETS_OKX_API_URL"
API_PATH = "/api/v5/public/instruments"


class OkxApiError(CatalogFetchError):
    """OKX answered with a ``code`` other than ``"0"``; ``code`` and ``msg`` are its own."""

    def __init__(self, url: str, code: object, msg: object) -> None:
        super().__init__(f"OKX error code {code!r} from {url}: {msg!r}")
        self.code = code
        self.msg = msg


def _row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(field(item, "instId", "okx instrument"))
    where = f"okx instrument {native}"
    kind = field(item, "ctType", where)
    if kind not in ("linear", "inverse"):
        raise CatalogShapeError(f"{where}: ctType must be linear or inverse, got {kind!r}")
    ct_val = number(field(item, "ctVal", where), where)
    ct_val *= number(item.get("ctMult"), where, default=1.0)
    inst = from_native(native)
    if inst is not None:
        symbol, base, quote = format_symbol(inst), inst.base, inst.quote
    else:
        symbol = None
        family = str(item.get("instFamily") or item.get("uly") or "-")
        base, _, quote = family.partition("-")
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": str(field(item, "settleCcy", where)),
        "kind": kind,
        "ct_val": ct_val,
        "ct_val_ccy": str(field(item, "ctValCcy", where)),
        "listed": from_ms(field(item, "listTime", where), where),
        "delisted": from_ms(item.get("expTime"), where),
        "status": str(field(item, "state", where)),
    }


def parse_catalog(document: object) -> pl.DataFrame:
    """The swaps of a ``/api/v5/public/instruments?instType=SWAP`` answer (``code`` "0")."""
    items = items_of(document, "data", "okx instruments")
    return instruments_frame([_row(i) for i in items if i.get("instType", "SWAP") == "SWAP"])


def fetch_catalog(base: str, session: requests.Session) -> pl.DataFrame:
    """Every OKX swap now (one request)."""
    url = base + API_PATH
    document = get_json(session, url, {"instType": "SWAP"})
    if not isinstance(document, dict) or "code" not in document:
        raise CatalogShapeError(f"{url}: expected an object with 'code', got {document!r:.200}")
    if str(document["code"]) != "0":
        raise OkxApiError(url, document["code"], document.get("msg"))
    return non_empty(parse_catalog(document), url)


def answer(path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
    """``GET /api/v5/public/instruments``: ``instType`` required, only SWAP listed here."""
    if path != API_PATH:
        return 404, {"msg": "Not Found", "code": 404}
    inst_type = query.get("instType", [""])[0]
    if not inst_type:
        return 200, {"code": "50014", "msg": "Parameter instType can not be empty", "data": []}
    if inst_type != "SWAP":
        return 200, {"code": "0", "msg": "", "data": []}
    return 200, document


def okx_instrument(
    inst_id: str,
    ct_val: str,
    *,
    listed: datetime,
    state: str = "live",
    exp: datetime | None = None,
    ct_val_ccy: str | None = None,
    settle: str | None = None,
) -> dict[str, Any]:
    """One ``data`` entry of the SWAP instruments answer (ctVal as OKX writes it, a string).

    ``X-USDT-SWAP``/``X-USDC-SWAP`` are linear in X, ``X-USD-SWAP`` inverse (ctVal in USD,
    settled in X), ``X-USD_UM-SWAP`` linear settled in USD.
    """
    base, family_quote, _ = inst_id.split("-")
    quote = family_quote.removesuffix("_UM")
    inverse = family_quote == "USD"
    default_settle = base if inverse else quote
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": "",
        "category": "1",
        "contTdSwTime": "",
        "ctMult": "1",
        "ctType": "inverse" if inverse else "linear",
        "ctVal": ct_val,
        "ctValCcy": ct_val_ccy or ("USD" if inverse else base),
        "expTime": "" if exp is None else str(ms(exp)),
        "futureSettlement": False,
        "groupId": "1",
        "instFamily": f"{base}-{family_quote}",
        "instId": inst_id,
        "instIdCode": zlib.crc32(inst_id.encode()) % 10_000_000,
        "instType": "SWAP",
        "lever": "100" if base in ("BTC", "ETH") else "50",
        "listTime": str(ms(listed)),
        "lotSz": "0.01",
        "maxIcebergSz": "100000000.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "100000000",
        "maxMktAmt": "",
        "maxMktSz": "12000",
        "maxStopSz": "12000",
        "maxTriggerSz": "100000000.0000000000000000",
        "maxTwapSz": "100000000.0000000000000000",
        "minSz": "0.01",
        "openType": "",
        "optType": "",
        "preMktSwTime": "",
        "quoteCcy": "",
        "ruleType": "normal",
        "settleCcy": settle or default_settle,
        "state": state,
        "stk": "",
        "tickSz": "0.1",
        "tradeQuoteCcyList": [],
        "uly": f"{base}-{quote}",
    }


def okx_instruments(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole answer: ``{"code": "0", "msg": "", "data": items}``."""
    return {"code": "0", "msg": "", "data": items}


_CT_VAL = {"BTC": "0.01", "ETH": "0.1", "SOL": "1", "DOGE": "1000", "XRP": "100", "BNB": "0.01",
           "ADA": "100", "TRX": "1000", "LTC": "1", "BCH": "0.1", "LINK": "1", "DOT": "1",
           "AVAX": "1", "PEPE": "10000000", "SHIB": "1000000", "BONK": "100000",
           "FLOKI": "100", "SATS": "10000000", "1INCH": "1", "ORDI": "0.1",
           "TON": "1"}  # fmt: skip
_INVERSE = {"BTC": "100", "ETH": "10", "SOL": "10", "DOGE": "10", "XRP": "10", "LTC": "10",
            "ADA": "10", "TRX": "10", "DOT": "10", "LINK": "10", "BCH": "10", "ETC": "10",
            "FIL": "10", "TON": "10"}  # fmt: skip
_USDC = ["BTC", "ETH", "SOL", "XRP", "DOGE", "PEPE", "SUI", "WIF"]
_UM = ["BTC", "ETH", "SOL"]


def _ct_val(base: str, n: int) -> str:
    return _CT_VAL.get(base, ("1", "10", "100", "0.1")[n % 4])


def sample() -> dict[str, Any]:
    """A realistic SWAP instruments answer: ~220 swaps of every kind OKX lists (linear USDT and
    USDC, inverse USD, USD-margined ``_UM``) with their ctVal, and a suspended one."""
    bases = [c for c in dict.fromkeys(COINS) if c not in ("BTCDOM", "4", "42")]
    bases += ["PEPE", "SHIB", "BONK", "FLOKI"]
    items = [
        okx_instrument(f"{base}-USDT-SWAP", _ct_val(base, n), listed=listed(n))
        for n, base in enumerate(bases)
    ]
    items += [
        okx_instrument(f"{base}-USD-SWAP", value, listed=listed(n))
        for n, (base, value) in enumerate(_INVERSE.items())
    ]
    items += [
        okx_instrument(f"{base}-USDC-SWAP", _ct_val(base, n), listed=listed(n + 7))
        for n, base in enumerate(_USDC)
    ]
    items += [
        okx_instrument(f"{base}-USD_UM-SWAP", _ct_val(base, n), listed=listed(n + 11),
                       settle="USD")
        for n, base in enumerate(_UM)
    ]  # fmt: skip
    items.append(
        okx_instrument("LOOM-USDT-SWAP", "10", listed=listed(3), state="suspend",
                       exp=datetime(2026, 10, 3, 8, tzinfo=UTC))
    )  # fmt: skip
    return okx_instruments(items)


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=OKX,
    catalog=CatalogReader(API_URL, API_ENV, fetch_catalog, answer, sample),
    write_archive=write_okx,
)
