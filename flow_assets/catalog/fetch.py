"""Fetch a venue's instrument catalog from its public REST metadata: the generic part.

:func:`fetch_catalog` asks the venue's own reader (its module in :mod:`flow_assets.venues`
knows the REST path, the parameters, the pagination and the field mapping) at the REST root
:func:`resolve_api_url` gives: the argument, else the venue's environment variable, else its
public root. Readers use :func:`get_json` (one GET, decoded) and :func:`non_empty`.

Requests go through the retries of :func:`flow_assets.sources.http.make_session` (connection
errors, 429 and 5xx, with backoff). What is still wrong after the retries raises:
:class:`CatalogFetchError` (transport, HTTP status, not JSON, or an error the venue's answer
states), or :class:`~flow_assets.catalog.model.CatalogShapeError` (unexpected shape, or no
perpetual at all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import requests

from flow_assets.catalog.model import CatalogError, CatalogShapeError

if TYPE_CHECKING:
    from flow_assets.catalog.contract_dating import ContractDating
    from flow_assets.venues.base import Venue


class CatalogFetchError(CatalogError):
    """The exchange could not be asked, or did not answer 200 with JSON (after retries)."""


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
    """``frame``, refused when the answer of ``url`` listed no perpetual at all."""
    if frame.is_empty():
        raise CatalogShapeError(f"{url} lists no perpetual at all: refusing an empty catalog")
    return frame


def fetch_catalog(
    exchange: str, base_url: str | None = None, session: requests.Session | None = None
) -> pl.DataFrame:
    """The catalog of the venue ``exchange`` as it is now (its own reader)."""
    reader = _venue(exchange).catalog
    return reader.fetch(reader.base_url(base_url), session or catalog_session())


def date_contracts(
    exchange: str,
    snapshot: pl.DataFrame,
    state: pl.DataFrame,
    base_url: str | None = None,
    pace: float | None = None,
    session: requests.Session | None = None,
) -> ContractDating | None:
    """The contract values the venue's own candles show since ``state`` for the swaps of
    ``snapshot`` (None: the venue has no such candles)."""
    reader = _venue(exchange).catalog
    if reader.date_contracts is None:
        return None
    options = {} if pace is None else {"pace": pace}
    return reader.date_contracts(
        reader.base_url(base_url), session or catalog_session(), snapshot, state, **options
    )
