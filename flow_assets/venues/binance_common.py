"""What Binance's two futures venues share in their catalogs: the ``exchangeInfo`` document.

USD-M (``GET /fapi/v1/exchangeInfo``) and COIN-M (``GET /dapi/v1/exchangeInfo``) answer one
document holding every symbol (no pagination, no parameters), each symbol with the same core
fields; a ``deliveryDate`` of 2100-12-25 08:00 UTC means no delisting is planned. Here: the
shared reading of that date, the fetch and the mirror's answer of one such document, and the
builders of its exact shape (for tests, samples and the demo). Each venue's module adds its own
fields and row mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import requests

from flow_assets.catalog.fetch import get_json, non_empty
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import EPOCH, from_ms

NO_DELIVERY_MS = 4133404800000  # deliveryDate of a perpetual with no delisting planned
_NO_DELIVERY = EPOCH + timedelta(milliseconds=NO_DELIVERY_MS)
_STABLES = ("USDT", "USDC", "FDUSD", "BUSD")


def delisted(delivery_date: object, where: str) -> datetime | None:
    """The announced delisting time: ``deliveryDate`` unless it is the 2100 no-end date."""
    delivery = from_ms(delivery_date, where)
    return delivery if delivery and delivery < _NO_DELIVERY else None


def fetch_exchange_info(
    base: str, path: str, session: requests.Session, parse: Callable[[object], pl.DataFrame]
) -> pl.DataFrame:
    """The perpetuals of one ``exchangeInfo`` answer (one request), refused when empty."""
    url = base + path
    return non_empty(parse(get_json(session, url)), url)


def document_at(path: str) -> Callable[[str, dict[str, list[str]], Any], tuple[int, Any]]:
    """The mirror's routing of one ``exchangeInfo`` path: the whole document, no parameters."""

    def answer(request_path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
        if request_path != path:
            return 404, {"code": -1, "msg": "Not Found"}
        return 200, document

    return answer


def _filters(tick: str, step: str) -> list[dict[str, Any]]:
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
        "filters": _filters("0.10", "0.001"),
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
