"""What a venue is: one description the generic mechanisms take (no I/O here).

A :class:`Venue` names everything particular to one exchange market: its slug, its Atlas
grammar both ways, its trade archive (:class:`~flow_assets.sources.archive.Exchange`: URLs, daily
and/or monthly files, zip or gzip, checksum location or none, day offset, CSV parser, trade-id
kind, whether sizes are contracts, how the archive sensor probes it), its catalog reader (REST
root, environment variable, the fetch and, for the local mirror, the venue's own routing and a
realistic sample answer) and its mirror writer (the venue's exact file layout from normalized
trades). The archive loop, the CSV streaming, the catalog storage, the Dagster layer, the API
and the demo iterate the registry (:data:`flow_assets.venues.VENUES`) and never name a venue.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import requests

from flow_assets.metrics.exchange_check import ExchangeFigures
from flow_assets.sources.archive import Exchange

if TYPE_CHECKING:
    from flow_assets.catalog.contract_dating import ContractDating
from flow_assets.symbology import Instrument

# (path, query) of a catalog request and the document served -> (HTTP status, JSON answer)
CatalogAnswer = Callable[[str, dict[str, list[str]], Any], tuple[int, Any]]


@dataclass(frozen=True)
class CatalogReader:
    """How a venue lists its instruments: REST root (``url_env``, else ``default_url``),
    ``fetch(base, session)`` giving a catalog frame, and for the local mirror ``answer`` (the
    venue's routing, parameters and pagination over a served document) and ``sample`` (a
    realistic answer document); ``date_contracts`` (optional) reads contract values from the
    venue's own candles."""

    default_url: str
    url_env: str
    fetch: Callable[[str, requests.Session], pl.DataFrame]
    answer: CatalogAnswer
    sample: Callable[[], Any]
    # (base, session, listings, state, pace) -> the contract values its candles show, for a
    # venue whose sizes are contracts and whose candles count contracts and base units
    date_contracts: Callable[..., ContractDating] | None = None

    def base_url(self, value: str | None = None) -> str:
        """The REST root: ``value``, else the environment variable, else the public one."""
        return (value or os.environ.get(self.url_env) or self.default_url).rstrip("/")


# (base URL, session, native id, the span of the month's bars) -> the exchange's figures
FiguresReader = Callable[[str, requests.Session, str, tuple[datetime, datetime]], ExchangeFigures]


@dataclass(frozen=True)
class ExchangeAggregation:
    """The venue's own aggregation of its trades that judges the bars: the bars of ``interval``
    it is compared with, read by ``read`` from the venue's ``root`` (``archive``: the trades
    archive's base URL; ``api``: its catalog's REST root); ``what`` names it for people."""

    interval: str
    root: str
    read: FiguresReader
    what: str
    # for the local catalog mirror (root "api"): its document also answering these figures for
    # normalized ``trades`` of an Atlas ``symbol`` (the demo); "archive" figures are written by
    # the venue's ``write_archive``
    serve: Callable[[Any, str, pl.DataFrame], Any] | None = None

    def __post_init__(self) -> None:
        if self.root not in ("archive", "api"):
            raise ValueError(f"{self.what}: root must be archive or api")


@dataclass(frozen=True)
class Venue:
    """One venue: its slug ``name`` and everything particular to it.

    ``to_native`` / ``from_native`` are the Atlas grammar (None: not of this venue's grammar),
    ``grammar_help`` says what is supported; ``ids_case_insensitive``: native ids match in any
    letter case. ``write_archive(trades, root, symbol, **options)`` writes the venue's exact
    archive files for normalized trades (the mirror, for tests and the demo).
    ``exchange_figures``: the venue's own aggregation each month's bars must agree with (None:
    the venue publishes none; the bars are not reconciled).
    """

    name: str
    to_native: Callable[[Instrument], str | None]
    from_native: Callable[[str], Instrument | None]
    grammar_help: str
    archive: Exchange
    catalog: CatalogReader
    write_archive: Callable[..., list[Path]]
    ids_case_insensitive: bool = False
    exchange_figures: ExchangeAggregation | None = None

    @property
    def slug(self) -> str:
        """The venue as an asset-key prefix and group name, e.g. ``binance_futures``."""
        return self.name.replace("-", "_")

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool of its archive downloads."""
        return f"archive_{self.slug}"

    def same_native(self, a: str, b: str) -> bool:
        """Whether two native ids name the same instrument on this venue."""
        return a.upper() == b.upper() if self.ids_case_insensitive else a == b
