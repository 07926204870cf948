"""OKX perpetual swaps archive: daily trade files on UTC+8 days, sizes in contracts.

Layout: ``{base}/cdn/okex/traderecords/trades/daily/{YYYYMMDD}/{INST}-trades-{YYYY-MM-DD}.zip``;
the base is ``base_url``, else ``$FLOW_ASSETS_OKX_URL``, else ``https://static.okx.com``.

**Days are UTC+8 days**: the file dated D holds trades from D 00:00 UTC+8 (D-1 16:00 UTC) to
D+1 00:00 UTC+8. A UTC month therefore reads the files dated from its first day through the
first day of the next month and keeps the trades whose ``created_time`` falls in the month
(the others count as ``outside_period``). A running month ends at 00:00 UTC of the date of the
last published file (the last complete UTC day).

CSV ``instrument_name,trade_id,side,price,size,created_time`` (ms; ``side`` is the taker side);
columns are found by header name, so files with an added column (``source``) read the same;
without a recognised header the first six columns are taken in that order. ``size`` is in
contracts, converted with the contract value in force at the trade's time
(:func:`flow_assets.symbology.contract_specs`): linear ``base_qty = size * ctVal`` and
``notional = price * base_qty``; inverse ``notional = size * ctVal`` (USD) and
``base_qty = notional / price``.

OKX publishes no checksums: each file's sha256 and size go into the report
(``checksum_verified`` false). Row policies are those of :mod:`flow_assets.sources.report`.
:func:`ingest_month` downloads the month's files (which exist decides its end), then streams
them in date order into one Parquet file (:mod:`flow_assets.sources.ingest`);
:func:`flow_assets.sources.fetch_month` reads that file back into memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import requests

from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources import http
from flow_assets.sources.binance import to_micros
from flow_assets.sources.csvstream import CsvFormat, field, read_trades, taker_buy, text
from flow_assets.sources.errors import MissingFileError, NotPublishedError
from flow_assets.sources.http import Progress
from flow_assets.sources.ingest import TradeSink
from flow_assets.sources.report import (
    FetchReport,
    FileRecord,
    classify_absent,
    days_between,
    empty_trades,
    month_start,
    next_month,
    today_utc,
    utc_midnight,
)
from flow_assets.symbology import contract_specs, parse_symbol, to_native

EXCHANGE = "okx-perps"
DEFAULT_URL = "https://static.okx.com"
URL_ENV = "FLOW_ASSETS_OKX_URL"
COLUMNS = ("instrument_name", "trade_id", "side", "price", "size", "created_time")
UTC_OFFSET = timedelta(hours=8)


def resolve_base_url(value: str | None = None) -> str:
    """The archive root: the argument, else ``$FLOW_ASSETS_OKX_URL``, else the public one."""
    return (value or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def file_url(base: str, native: str, day: date) -> str:
    """URL of the trade file dated ``day`` (a UTC+8 day)."""
    return f"{base}/cdn/okex/traderecords/trades/daily/{day:%Y%m%d}/{native}-trades-{day}.zip"


def _contract_value_expr(symbol: str, ts: pl.Expr) -> pl.Expr:
    """ctVal in force at each trade's time, from the package's spec table (null if none)."""
    value: pl.Expr = pl.lit(None, dtype=pl.Float64)
    for spec in reversed(contract_specs(EXCHANGE, symbol)):
        inside = pl.lit(True)
        if spec.valid_from is not None:
            inside = inside & (ts >= spec.valid_from)
        if spec.valid_to is not None:
            inside = inside & (ts < spec.valid_to)
        value = pl.when(inside).then(pl.lit(spec.ct_val)).otherwise(value)
    return value


class OkxCsv(CsvFormat):
    """The CSV of one OKX trade file of the Atlas perpetual ``symbol``."""

    widths = (6, 7, 8)

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.native = to_native(EXCHANGE, symbol)
        self.inverse = parse_symbol(symbol).is_inverse
        self.invalid_reason = f"instrument is not {self.native}"
        self.position = {column: i for i, column in enumerate(COLUMNS)}

    def start(self, header: str | None, first_row: str, name: str) -> None:
        if header is not None:
            names = [h.strip().lstrip("\ufeff") for h in header.split(",")]
            if set(COLUMNS) <= set(names):
                self.position = {column: names.index(column) for column in COLUMNS}

    def columns(self) -> dict[int, pl.DataType]:
        numbers = {"trade_id": pl.Int64(), "price": pl.Float64(), "size": pl.Float64()}
        numbers["created_time"] = pl.Int64()
        return {i: numbers.get(column, pl.String()) for column, i in self.position.items()}

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        at = self.position
        ts = to_micros(field(raw, at["created_time"], pl.Int64()))
        size = field(raw, at["size"], pl.Float64())
        price = field(raw, at["price"], pl.Float64())
        ct_val = _contract_value_expr(self.symbol, ts)
        if self.inverse:
            notional = size * ct_val
            base_qty = notional / price
        else:
            base_qty = size * ct_val
            notional = price * base_qty
        return raw.select(
            ts.alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            field(raw, at["trade_id"], pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            taker_buy(text(at["side"])).alias("is_taker_buy"),
            (text(at["instrument_name"]) == self.native).alias("_valid"),
        )


def read_okx_csv(path: Path, symbol: str, *, name: str | None = None) -> pl.DataFrame:
    """One OKX trade CSV (plain, gzip or zip) as trades in ``TRADE_SCHEMA``, in source order,
    unfiltered."""
    frames = list(read_trades(path, OkxCsv(symbol), name))
    return pl.concat(frames) if frames else empty_trades()


def _plan(month: date, today: date) -> tuple[bool, list[date]]:
    """(finished, the file dates to read as of ``today``)."""
    start, stop = month_start(month), next_month(month)
    if start >= today:
        raise NotPublishedError(f"{month:%Y-%m} has no complete day yet (today is {today})")
    return stop <= today, days_between(start, min(stop, today) + timedelta(days=1))


def _download_all(
    session: requests.Session,
    urls: dict[date, str],
    workdir: Path,
    report: FetchReport,
    progress: Progress | None,
) -> dict[date, Path]:
    """Download the files that exist (a 404 is an absent file); their paths by date."""
    present: dict[date, Path] = {}
    for day, url in urls.items():
        zip_path = workdir / url.rsplit("/", 1)[1]
        try:
            got = http.download(session, url, zip_path, progress=progress)
        except http.NotFoundError:
            continue
        present[day] = zip_path
        report.files.append(FileRecord(zip_path.name, url, got.sha256, got.size, False))
    return present


def _cover(
    month: date,
    dates: list[date],
    present: set[date],
    today: date,
    finished: bool,
    native: str,
    allow_missing_days: bool,
    report: FetchReport,
) -> None:
    """Classify absent files (raising when the month cannot be read); fill coverage and end."""
    not_yet, missing = classify_absent(dates, present, today, f"{native} trades")
    if finished and not_yet:
        listed = ", ".join(map(str, not_yet))
        raise NotPublishedError(f"{native} {month:%Y-%m}: files not published yet for {listed}")
    if (missing and not allow_missing_days) or not present:
        listed = ", ".join(map(str, missing))
        raise MissingFileError(f"{native} {month:%Y-%m}: trade files missing for {listed}")
    end = min(utc_midnight(max(present)), utc_midnight(next_month(month)))
    if end <= utc_midnight(month):
        raise NotPublishedError(f"{native} {month:%Y-%m}: no complete UTC day published yet")
    month_days = days_between(month, end.date())
    report.days_covered = [d for d in month_days if {d, d + timedelta(days=1)} <= present]
    report.days_missing = missing
    report.end = end
    report.complete = finished and not missing


def ingest_month(
    symbol: str,
    month: date,
    dest: Path,
    *,
    base_url: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
    progress: Progress | None = None,
) -> FetchReport:
    """Write the trades of one UTC month of an Atlas perpetual swap to the Parquet file ``dest``.

    Every file is downloaded first (which files exist decides the month's end), then the files
    are streamed in date order (see :mod:`flow_assets.sources.ingest`).
    """
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    today = today or today_utc()
    finished, dates = _plan(month, today)
    report = FetchReport(EXCHANGE, str(symbol), month)
    urls = {d: file_url(base, native, d) for d in dates}
    with tempfile.TemporaryDirectory(prefix="okx-") as tmp:
        workdir = Path(tmp)
        present = _download_all(session, urls, workdir, report, progress)
        _cover(month, dates, set(present), today, finished, native, allow_missing_days, report)
        start = utc_midnight(month)
        with TradeSink(dest, report, start, report.end, progress=progress, workdir=workdir) as sink:
            for day in sorted(present):
                for trades in read_trades(
                    present[day], OkxCsv(symbol), kind="zip", progress=progress
                ):
                    sink.add(trades)
                present[day].unlink()
            sink.commit()
    return report


def probe_month(
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
) -> str | None:
    """A version from HEAD responses (ETag, Content-Length, Last-Modified); None if none out."""
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    try:
        _, dates = _plan(month, today or today_utc())
    except NotPublishedError:
        return None
    parts = []
    for day in dates:
        try:
            headers = http.head(session, file_url(base, native, day)).headers
        except http.NotFoundError:
            continue
        fields = (headers.get(k, "") for k in ("ETag", "Content-Length", "Last-Modified"))
        parts.append(f"{day}:" + "|".join(fields))
    if not parts:
        return None
    return f"okx:{len(parts)}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
