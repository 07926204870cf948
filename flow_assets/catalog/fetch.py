"""Fetch the instrument catalogs from the exchanges' public REST metadata.

:func:`fetch_catalog` asks the venue's own reader (:mod:`flow_assets.venues`); the readers of
Binance USD-M and OKX are here, the others in their venue's module:

* Binance USD-M: ``GET {base}/fapi/v1/exchangeInfo`` (base ``base_url``, else
  ``$FLOW_ASSETS_BINANCE_API_URL``, else ``https://fapi.binance.com``). One answer holds every
  symbol (no pagination, no parameters); request weight 1 against the per-IP weight limit the
  answer's ``rateLimits`` state. Only ``contractType == "PERPETUAL"`` symbols are kept.
* OKX: ``GET {base}/api/v5/public/instruments?instType=SWAP`` (base ``base_url``, else
  ``$FLOW_ASSETS_OKX_API_URL``, else ``https://www.okx.com``). One answer holds every swap (no
  pagination; the limit is 20 requests per 2 s per IP). The body is
  ``{"code": "0", "msg": "", "data": [...]}``; another ``code`` is an :class:`OkxApiError`.

Both are fetched once per call with the retries of :func:`flow_assets.sources.http.make_session`
(connection errors, 429 and 5xx, with backoff). What is still wrong after the retries raises:
:class:`CatalogFetchError` (transport, HTTP status, not JSON), :class:`OkxApiError`, or
:class:`~flow_assets.catalog.model.CatalogShapeError` (unexpected shape, or no perpetual at all).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import polars as pl
import requests

from flow_assets.catalog.model import (
    CatalogError,
    CatalogShapeError,
    parse_binance,
    parse_okx,
)

if TYPE_CHECKING:
    from flow_assets.venues.base import Venue

BINANCE_URL = "https://fapi.binance.com"
OKX_URL = "https://www.okx.com"
BINANCE_URL_ENV = "FLOW_ASSETS_BINANCE_API_URL"
OKX_URL_ENV = "FLOW_ASSETS_OKX_API_URL"
BINANCE_PATH = "/fapi/v1/exchangeInfo"
OKX_PATH = "/api/v5/public/instruments"


class CatalogFetchError(CatalogError):
    """The exchange could not be asked, or did not answer 200 with JSON (after retries)."""


class OkxApiError(CatalogFetchError):
    """OKX answered with a ``code`` other than ``"0"``; ``code`` and ``msg`` are its own."""

    def __init__(self, url: str, code: object, msg: object) -> None:
        super().__init__(f"OKX error code {code!r} from {url}: {msg!r}")
        self.code = code
        self.msg = msg


def resolve_api_url(exchange: str, value: str | None = None) -> str:
    """The REST root of ``exchange``: the argument, else its env variable, else the public one."""
    return _venue(exchange).catalog.base_url(value)


def _venue(exchange: str) -> Venue:
    from flow_assets.venues import VENUES  # noqa: PLC0415 (the venues import this module)

    if exchange not in VENUES:
        raise ValueError(f"unknown exchange {exchange!r}; catalogs exist for {sorted(VENUES)}")
    return VENUES[exchange]


def catalog_session() -> requests.Session:
    # Imported here: flow_assets.sources may come to import the catalog (one-way at run time).
    from flow_assets.sources.http import make_session  # noqa: PLC0415

    return make_session(retries=4, backoff=0.5, backoff_max=10.0, timeout=(10.0, 30.0))


def get_json(session: requests.Session, url: str, params: dict[str, str] | None = None) -> object:
    """The decoded JSON answer of a GET; :class:`CatalogFetchError` for anything else."""
    try:
        response = session.get(url, params=params, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise CatalogFetchError(f"cannot fetch {url}: {exc}") from exc
    if response.status_code != 200:
        snippet = response.text[:200]
        raise CatalogFetchError(
            f"HTTP {response.status_code} from {response.url} (after retries): {snippet!r}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise CatalogFetchError(
            f"{response.url} did not answer JSON: {response.text[:200]!r}"
        ) from exc


def non_empty(frame: pl.DataFrame, url: str) -> pl.DataFrame:
    if frame.is_empty():
        raise CatalogShapeError(f"{url} lists no perpetual at all: refusing an empty catalog")
    return frame


def fetch_binance(
    base_url: str | None = None, session: requests.Session | None = None
) -> pl.DataFrame:
    """Every Binance USD-M perpetual as a catalog frame."""
    url = (base_url or os.environ.get(BINANCE_URL_ENV) or BINANCE_URL).rstrip("/") + BINANCE_PATH
    document = get_json(session or catalog_session(), url)
    return non_empty(parse_binance(document), url)


def fetch_okx(base_url: str | None = None, session: requests.Session | None = None) -> pl.DataFrame:
    """Every OKX swap as a catalog frame."""
    url = (base_url or os.environ.get(OKX_URL_ENV) or OKX_URL).rstrip("/") + OKX_PATH
    document = get_json(session or catalog_session(), url, {"instType": "SWAP"})
    if not isinstance(document, dict) or "code" not in document:
        raise CatalogShapeError(f"{url}: expected an object with 'code', got {document!r:.200}")
    if str(document["code"]) != "0":
        raise OkxApiError(url, document["code"], document.get("msg"))
    return non_empty(parse_okx(document), url)


def fetch_catalog(
    exchange: str, base_url: str | None = None, session: requests.Session | None = None
) -> pl.DataFrame:
    """The catalog of the venue ``exchange`` as it is now (its own reader)."""
    reader = _venue(exchange).catalog
    return reader.fetch(reader.base_url(base_url), session or catalog_session())
