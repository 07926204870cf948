"""Tardis-style trade CSVs: the source that records arrival times (``timestamp=true`` bars).

Columns ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``; times in µs since
the epoch (ms accepted, decided by magnitude); gzip or plain, local path or URL.
``timestamp`` -> ``exchange_ts``, ``local_timestamp`` -> ``arrival_ts``, ``id`` -> ``trade_id``,
``side`` is the taker side, ``amount`` is in the base asset (linear: ``notional = price * amount``;
for an inverse instrument pass ``inverse_contract_value`` and ``amount`` is contracts).
Row policies are those of :mod:`flow_assets.sources.report`; the month's period is applied
before duplicate ids are looked for, as for the exchange archives. :func:`ingest_tardis_month`
streams the file into one Parquet file (:mod:`flow_assets.sources.ingest`);
:func:`read_tardis_month` and :func:`read_tardis_csv` read such a file back into memory.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import requests

from flow_assets.metrics.schema import FILL_ID_COLUMNS, TRADE_SCHEMA
from flow_assets.sources import http
from flow_assets.sources.csvstream import (
    CsvFormat,
    base_and_notional,
    field,
    no_fill_ids,
    read_trades,
    taker_buy,
    text,
    to_micros,
)
from flow_assets.sources.errors import MalformedCsvError
from flow_assets.sources.http import Progress
from flow_assets.sources.ingest import TradeSink, read_back
from flow_assets.sources.report import (
    FetchReport,
    FetchResult,
    FileRecord,
    empty_trades,
    month_bounds,
)

COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(http.CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TardisCsv(CsvFormat):
    """A Tardis-style trade CSV (its header is required); ``labels`` are the first row's
    exchange and symbol."""

    widths = (len(COLUMNS),)
    required = tuple(c for c in TRADE_SCHEMA if c not in FILL_ID_COLUMNS)

    def __init__(self, inverse_contract_value: float | None = None) -> None:
        self.inverse_contract_value = inverse_contract_value
        self.labels = ("", "")

    def start(self, header: str | None, first_row: str, name: str) -> None:
        if header is None:
            raise MalformedCsvError(name, 1, f"expected the header {','.join(COLUMNS)}")
        names = [h.strip() for h in header.split(",")]
        if tuple(names) != COLUMNS:
            raise MalformedCsvError(name, 1, f"header {names}, expected {list(COLUMNS)}")
        if first_row:
            exchange, symbol = first_row.split(",")[:2]
            self.labels = (exchange.strip(), symbol.strip())

    def columns(self) -> dict[int, pl.DataType]:
        integer, number = pl.Int64(), pl.Float64()
        return {2: integer, 3: integer, 4: integer, 5: pl.String(), 6: number, 7: number}

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        price = field(raw, 6, pl.Float64())
        amount = field(raw, 7, pl.Float64())
        base_qty, notional = base_and_notional(amount, price, self.inverse_contract_value)
        return raw.select(
            to_micros(field(raw, 2, pl.Int64())).alias("exchange_ts"),
            to_micros(field(raw, 3, pl.Int64())).alias("arrival_ts"),
            field(raw, 4, pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            taker_buy(text(5)).alias("is_taker_buy"),
            *no_fill_ids(),
        )


def parse_tardis_csv(
    path: Path, *, name: str | None = None, inverse_contract_value: float | None = None
) -> pl.DataFrame:
    """One Tardis CSV (plain, gzip or zip) as ``TRADE_SCHEMA`` trades, source order, unfiltered."""
    frames = list(read_trades(path, TardisCsv(inverse_contract_value), name))
    return pl.concat(frames) if frames else empty_trades()


def _local_file(
    location: str | Path,
    workdir: Path,
    session: requests.Session | None,
    progress: Progress | None,
) -> tuple[Path, FileRecord]:
    """The file on disk (downloaded when ``location`` is an http(s) URL) and its record."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        local = workdir / text.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
        got = http.download(session or http.make_session(), text, local, progress=progress)
        return local, FileRecord(local.name, text, got.sha256, got.size, False)
    local = Path(location)
    size = local.stat().st_size
    return local, FileRecord(local.name, local.resolve().as_uri(), _sha256(local), size, False)


def _ingest(
    location: str | Path,
    dest: Path,
    report: FetchReport,
    period: tuple[datetime, datetime] | None,
    *,
    session: requests.Session | None = None,
    progress: Progress | None = None,
    inverse_contract_value: float | None = None,
) -> TardisCsv:
    """Stream one Tardis CSV into ``dest``, keeping the trades of ``period`` (all when None)."""
    start, end = period or (None, None)
    fmt = TardisCsv(inverse_contract_value)
    with tempfile.TemporaryDirectory(prefix="tardis-") as tmp:
        local, record = _local_file(location, Path(tmp), session, progress)
        report.files.append(record)
        with TradeSink(dest, report, start, end, progress=progress, workdir=Path(tmp)) as sink:
            for trades in read_trades(local, fmt, record.name, progress=progress):
                sink.add(trades)
            report.days_covered = sink.commit()
    return fmt


def read_tardis_csv(
    path_or_url: str | Path,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    session: requests.Session | None = None,
    inverse_contract_value: float | None = None,
) -> FetchResult:
    """Trades of a Tardis CSV (path or http(s) URL); the report's ``month`` is None.

    ``exchange`` and ``symbol`` label the report (default: the file's first row).
    """

    def ingest(dest: Path) -> FetchReport:
        report = FetchReport(exchange or "", symbol or "", None)
        fmt = _ingest(
            path_or_url,
            dest,
            report,
            None,
            session=session,
            inverse_contract_value=inverse_contract_value,
        )
        report.exchange = exchange or fmt.labels[0]
        report.symbol = symbol or fmt.labels[1]
        if report.last_trade is not None:
            report.end = report.last_trade + timedelta(microseconds=1)
        return report

    return read_back(ingest)


def ingest_tardis_month(
    location: str | Path,
    month: date,
    dest: Path,
    *,
    exchange: str,
    symbol: str,
    session: requests.Session | None = None,
    progress: Progress | None = None,
) -> FetchReport:
    """Write the trades of one UTC month (by ``exchange_ts``) of a Tardis CSV covering it to
    the Parquet file ``dest`` (see :mod:`flow_assets.sources.ingest`).

    Rows outside the month are dropped and counted as ``outside_period``; the month is complete.
    """
    start, end = month_bounds(month)
    report = FetchReport(exchange, symbol, start.date())
    _ingest(location, dest, report, (start, end), session=session, progress=progress)
    report.complete, report.end = True, end
    return report


def read_tardis_month(
    location: str | Path,
    month: date,
    *,
    exchange: str,
    symbol: str,
    session: requests.Session | None = None,
) -> FetchResult:
    """The trades of one UTC month (by ``exchange_ts``) from a Tardis CSV covering it, in memory
    (:func:`ingest_tardis_month` into a temporary file, read back)."""
    return read_back(
        lambda dest: ingest_tardis_month(
            location, month, dest, exchange=exchange, symbol=symbol, session=session
        )
    )
