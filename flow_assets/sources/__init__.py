"""Exchange archive sources: one UTC month of normalized trades with a report.

``ingest_month(exchange, symbol, month, dest)`` streams the month's archive files into one
Parquet file ``dest`` (trades in ``TRADE_SCHEMA`` sorted by ``(exchange_ts, trade_id)``, row
groups within a UTC day; see :mod:`.ingest`) and returns the :class:`FetchReport`, never holding
the month in memory. ``fetch_month`` returns the same as a :class:`FetchResult` in memory.
``probe_month`` is the cheap remote check a sensor uses. Exchanges: ``binance-futures``
(:mod:`.binance`), ``okx-perps`` (:mod:`.okx`); Tardis CSVs: :mod:`.tardis`
(``ingest_tardis_month``, ``read_tardis_csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import requests

from flow_assets.sources import binance, okx
from flow_assets.sources.errors import (
    ArchiveDefectError,
    ChecksumMismatchError,
    CorruptArchiveError,
    DownloadError,
    MalformedCsvError,
    MissingFileError,
    NotPublishedError,
    SourceError,
)
from flow_assets.sources.http import make_session
from flow_assets.sources.ingest import read_back
from flow_assets.sources.report import FetchReport, FetchResult, FileRecord
from flow_assets.symbology import SUPPORTED_EXCHANGES, SymbolError

__all__ = [
    "ArchiveDefectError",
    "ChecksumMismatchError",
    "CorruptArchiveError",
    "DownloadError",
    "FetchReport",
    "FetchResult",
    "FileRecord",
    "MalformedCsvError",
    "MissingFileError",
    "NotPublishedError",
    "SourceError",
    "fetch_month",
    "ingest_month",
    "make_session",
    "probe_month",
]


def _check(exchange: str) -> None:
    if exchange not in SUPPORTED_EXCHANGES:
        raise SymbolError(
            f"unknown exchange {exchange!r}; supported: {', '.join(SUPPORTED_EXCHANGES)}"
        )


def ingest_month(
    exchange: str,
    symbol: str,
    month: date,
    dest: Path,
    *,
    base_url: str | None = None,
    dataset: str = "aggTrades",
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FetchReport:
    """Write all trades of one UTC month (``month`` = its first day) of an Atlas ``symbol`` to
    the Parquet file ``dest``, streaming; the report of :func:`fetch_month`.

    ``progress`` receives human-readable lines (bytes downloaded, rows parsed, days written).
    """
    _check(exchange)
    if exchange == binance.EXCHANGE:
        return binance.ingest_month(
            symbol,
            month,
            dest,
            base_url=base_url,
            dataset=dataset,
            session=session,
            today=today,
            allow_missing_days=allow_missing_days,
            progress=progress,
        )
    if dataset != "aggTrades":
        raise ValueError(f"{exchange} has a single trades dataset; got dataset={dataset!r}")
    return okx.ingest_month(
        symbol,
        month,
        dest,
        base_url=base_url,
        session=session,
        today=today,
        allow_missing_days=allow_missing_days,
        progress=progress,
    )


def fetch_month(
    exchange: str,
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    dataset: str = "aggTrades",
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
) -> FetchResult:
    """All trades of one UTC month (``month`` = its first day) of an Atlas ``symbol``, in memory.

    The running month gives the complete days so far (``report.complete`` false, ``report.end``
    the exclusive end). ``dataset`` applies to Binance only (``aggTrades`` or ``trades``).
    """
    return read_back(
        lambda dest: ingest_month(
            exchange,
            symbol,
            month,
            dest,
            base_url=base_url,
            dataset=dataset,
            session=session,
            today=today,
            allow_missing_days=allow_missing_days,
        )
    )


def probe_month(
    exchange: str,
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
) -> str | None:
    """None when the month is not published yet, else a version that changes with its files."""
    _check(exchange)
    module = binance if exchange == binance.EXCHANGE else okx
    return module.probe_month(symbol, month, base_url=base_url, session=session, today=today)
