"""A local stand-in for the exchanges' instrument metadata, for tests and the demo.

Builders write documents in the exchanges' exact JSON shapes (every field the real answers
carry): :func:`binance_symbol` / :func:`binance_exchange_info` for ``GET /fapi/v1/exchangeInfo``
and :func:`okx_instrument` / :func:`okx_instruments` for
``GET /api/v5/public/instruments?instType=SWAP`` (the other venues' builders are in their
modules). :class:`CatalogServer` serves every venue's document on ``127.0.0.1`` (a free port)
and lets a test swap a snapshot (a changed ctVal, a new listing, a delisting) or queue faults
(an HTTP status, a raw body, a delay).
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flow_assets.loopback import LoopbackServer

NO_DELIVERY_MS = 4133404800000  # Binance's deliveryDate of a perpetual with no end planned
_STABLES = ("USDT", "USDC", "FDUSD", "BUSD")


def ms(at: datetime) -> int:
    """Epoch milliseconds of a zone-aware datetime."""
    return round(at.timestamp() * 1000)


def _binance_filters(tick: str, step: str) -> list[dict[str, Any]]:
    return [
        {"filterType": "PRICE_FILTER", "maxPrice": "4529764", "minPrice": tick, "tickSize": tick},
        {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": step, "stepSize": step},
        {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": step, "stepSize": step},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": "5"},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": "1.0500",
            "multiplierDown": "0.9500",
            "multiplierDecimal": "4",
        },
    ]


def binance_symbol(
    symbol: str,
    base: str,
    quote: str,
    *,
    onboard: datetime,
    margin: str | None = None,
    status: str = "TRADING",
    delivery: datetime | None = None,
    contract_type: str = "PERPETUAL",
) -> dict[str, Any]:
    """One ``symbols`` entry of exchangeInfo; ``delivery`` None is the 2100 no-end date."""
    return {
        "symbol": symbol,
        "pair": symbol.split("_", maxsplit=1)[0],
        "contractType": contract_type,
        "deliveryDate": NO_DELIVERY_MS if delivery is None else ms(delivery),
        "onboardDate": ms(onboard),
        "status": status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": margin or quote,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": _binance_filters("0.10", "0.001"),
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def binance_exchange_info(symbols: list[dict[str, Any]], server_time: datetime) -> dict[str, Any]:
    """The whole exchangeInfo document around ``symbols``."""
    margins = sorted({s["marginAsset"] for s in symbols} | {"USDT", "USDC", "BTC"})
    return {
        "timezone": "UTC",
        "serverTime": ms(server_time),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000" if a in _STABLES
             else "0"}
            for a in margins
        ],
        "symbols": symbols,
    }  # fmt: skip


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


class CatalogServer(LoopbackServer):
    """Every venue's metadata endpoints on 127.0.0.1 (free port); a context manager.

    ``documents`` maps a venue to the document it serves now (assign to swap a snapshot; a
    venue without one answers 404); each venue's own routing, parameters and pagination are its
    catalog reader's ``answer`` (:mod:`flow_assets.venues`). ``inject(path, *faults)`` queues
    faults for a URL path; ``log`` lists ``(path, query, status)`` of every request.
    """

    def __init__(self, documents: dict[str, Any] | None = None) -> None:
        self.documents: dict[str, Any] = dict(documents or {})
        super().__init__()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        """Status and JSON document for a request: the first venue whose routing knows it."""
        from flow_assets.venues import VENUES  # noqa: PLC0415 (the venues import this module)

        for name, document in self.documents.items():
            if document is not None:
                status, body = VENUES[name].catalog.answer(path, query, document)
                if status != 404:
                    return status, body
        return 404, {"msg": "Not Found", "code": 404}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fault = server._next_fault(parts.path)
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status:
                    status, body = fault.status, b'{"msg":"injected"}'
                elif fault and fault.body is not None:
                    status, body = 200, fault.body
                else:
                    status, document = server.answer(parts.path, parse_qs(parts.query))
                    body = json.dumps(document).encode()
                server.log.append((parts.path, parts.query, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
