"""Exchange archive sources: one UTC month of normalized trades with a report.

``ingest_month(exchange, symbol, month, dest)`` streams the month's archive files into one
Parquet file ``dest`` (trades in ``TRADE_SCHEMA`` sorted by ``(exchange_ts, trade_id)``, row
groups within a UTC day; see :mod:`.ingest`) and returns the :class:`FetchReport`, never holding
the month in memory. ``fetch_month`` returns the same as a :class:`FetchResult` in memory.
``probe_month`` is a cheap remote check of one month (CHECKSUM texts or HEADs); the
archive sensor's bounded probes of many instruments at once are :mod:`.probing`.

Every exchange goes through the same loop (:mod:`.archive`: month plan, downloads, checksums,
coverage, cleaning); each venue's archive description (:class:`~.archive.Exchange`) is part of
its :class:`~flow_assets.venues.Venue` in the registry :data:`flow_assets.venues.VENUES`.
Tardis CSVs: :mod:`.tardis` (``ingest_tardis_month``, ``read_tardis_csv``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import requests

from flow_assets.sources import archive
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.errors import (
    ArchiveDefectError,
    ChecksumMismatchError,
    CorruptArchiveError,
    DownloadError,
    MalformedCsvError,
    MissingContractValueError,
    MissingFileError,
    NotPublishedError,
    SourceError,
)
from flow_assets.sources.http import Progress, make_session
from flow_assets.sources.ingest import read_back
from flow_assets.sources.report import FetchReport, FetchResult, FileRecord

__all__ = [
    "ArchiveDefectError",
    "ChecksumMismatchError",
    "CorruptArchiveError",
    "DownloadError",
    "Exchange",
    "FetchOptions",
    "FetchReport",
    "FetchResult",
    "FileRecord",
    "MalformedCsvError",
    "MissingContractValueError",
    "MissingFileError",
    "NotPublishedError",
    "SourceError",
    "fetch_month",
    "ingest_month",
    "make_session",
    "probe_month",
]


def exchange_for(name: str) -> Exchange:
    """The archive description of the venue ``name``; :class:`SymbolError` when unknown."""
    from flow_assets.venues import venue  # noqa: PLC0415 (the venues import the sources)

    return venue(name).archive


def ingest_month(
    exchange: str,
    symbol: str,
    month: date,
    dest: Path,
    *,
    base_url: str | None = None,
    dataset: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
    contract_values: pl.DataFrame | None = None,
    progress: Progress | None = None,
) -> FetchReport:
    """Write all trades of one UTC month (``month`` = its first day) of an Atlas ``symbol`` to
    the Parquet file ``dest``, streaming; the report of :func:`fetch_month`.

    ``progress`` receives human-readable lines (bytes downloaded, rows parsed, days written).
    """
    options = FetchOptions(
        base_url, dataset, session, today, allow_missing_days, contract_values, progress
    )
    return archive.ingest(exchange_for(exchange), symbol, month, dest, options)


def fetch_month(
    exchange: str,
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    dataset: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
    contract_values: pl.DataFrame | None = None,
) -> FetchResult:
    """All trades of one UTC month (``month`` = its first day) of an Atlas ``symbol``, in memory.

        The running month gives the complete days so far (``report.complete`` false, ``report.end``
        the exclusive end). ``dataset``: one of the venue's datasets (None: its default; Binance
    ``aggTrades`` or ``trades``);
        ``contract_values`` to exchanges whose sizes are contracts (OKX; None: the package's table).
    """
    options = FetchOptions(base_url, dataset, session, today, allow_missing_days, contract_values)
    source = exchange_for(exchange)
    return read_back(lambda dest: archive.ingest(source, symbol, month, dest, options))


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
    options = FetchOptions(base_url=base_url, session=session, today=today)
    return archive.probe(exchange_for(exchange), symbol, month, options)
