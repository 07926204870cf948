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
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import requests

from flow_assets.metrics.schema import TRADE_SCHEMA, UTC_MICROS
from flow_assets.sources import http
from flow_assets.sources.binance import check_rows, read_raw_csv, to_micros
from flow_assets.sources.errors import MalformedCsvError, MissingFileError, NotPublishedError
from flow_assets.sources.report import (
    FetchReport,
    FetchResult,
    FileRecord,
    classify_absent,
    clean_trades,
    days_between,
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


def read_okx_csv(path: Path, symbol: str, *, name: str | None = None) -> pl.DataFrame:
    """One OKX trade CSV as trades in ``TRADE_SCHEMA``, in source order, unfiltered."""
    name = name or path.name
    native = to_native(EXCHANGE, symbol)
    inverse = parse_symbol(symbol).is_inverse
    raw, skip = read_raw_csv(path, (6, 7, 8), name)
    position = {column: i for i, column in enumerate(COLUMNS)}
    if skip:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            header = [h.strip().lstrip("\ufeff") for h in handle.readline().split(",")]
        if set(COLUMNS) <= set(header):
            position = {column: header.index(column) for column in COLUMNS}
    col = {column: pl.col(f"c{i}").str.strip_chars() for column, i in position.items()}
    ts = to_micros(col["created_time"].cast(pl.Int64, strict=False))
    size = col["size"].cast(pl.Float64, strict=False)
    price = col["price"].cast(pl.Float64, strict=False)
    ct_val = _contract_value_expr(symbol, ts)
    if inverse:
        notional = size * ct_val
        base_qty = notional / price
    else:
        base_qty = size * ct_val
        notional = price * base_qty
    side = col["side"].str.to_lowercase()
    typed = raw.select(
        ts.alias("exchange_ts"),
        pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
        col["trade_id"].cast(pl.Int64, strict=False).alias("trade_id"),
        price.alias("price"),
        base_qty.alias("base_qty"),
        notional.alias("notional"),
        pl.when(side == "buy").then(True).when(side == "sell").then(False).alias("is_taker_buy"),
        (col["instrument_name"] == native).alias("_same_instrument"),
    )
    check_rows(typed, raw, skip, name, list(TRADE_SCHEMA.keys() - {"arrival_ts"}))
    other = typed.with_row_index("_row").filter(~pl.col("_same_instrument"))
    if other.height:
        line = int(other["_row"][0]) + 1 + skip
        raise MalformedCsvError(name, line, f"instrument is not {native}")
    return typed.drop("_same_instrument")


def _plan(month: date, today: date) -> tuple[bool, list[date]]:
    """(finished, the file dates to read as of ``today``)."""
    start, stop = month_start(month), next_month(month)
    if start >= today:
        raise NotPublishedError(f"{month:%Y-%m} has no complete day yet (today is {today})")
    return stop <= today, days_between(start, min(stop, today) + timedelta(days=1))


def fetch_month(
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
) -> FetchResult:
    """All trades of one UTC month (``month`` = its first day) of an Atlas perpetual swap."""
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    today = today or today_utc()
    finished, dates = _plan(month, today)
    report = FetchReport(EXCHANGE, str(symbol), month)
    urls = {d: file_url(base, native, d) for d in dates}
    frames: list[pl.DataFrame] = []
    present: set[date] = set()
    absent: list[date] = []
    with tempfile.TemporaryDirectory(prefix="okx-") as tmp:
        workdir = Path(tmp)
        for day in dates:
            zip_path = workdir / urls[day].rsplit("/", 1)[1]
            try:
                got = http.download(session, urls[day], zip_path)
            except http.NotFoundError:
                absent.append(day)
                continue
            present.add(day)
            report.files.append(FileRecord(zip_path.name, urls[day], got.sha256, got.size, False))
            csv_path = http.unzip_single(zip_path, workdir)
            zip_path.unlink()
            try:
                frames.append(read_okx_csv(csv_path, symbol, name=zip_path.name))
            finally:
                csv_path.unlink()
    not_yet, missing = classify_absent(dates, present, today, f"{native} trades")
    if finished and not_yet:
        listed = ", ".join(map(str, not_yet))
        raise NotPublishedError(f"{native} {month:%Y-%m}: files not published yet for {listed}")
    if (missing and not allow_missing_days) or not present:
        listed = ", ".join(map(str, missing))
        raise MissingFileError(f"{native} {month:%Y-%m}: trade files missing for {listed}")
    last = max(present)
    end = min(utc_midnight(last), utc_midnight(next_month(month)))
    if end <= utc_midnight(month):
        raise NotPublishedError(f"{native} {month:%Y-%m}: no complete UTC day published yet")
    month_days = days_between(month, end.date())
    report.days_covered = [d for d in month_days if {d, d + timedelta(days=1)} <= present]
    report.days_missing = missing
    report.end = end
    report.complete = finished and not missing
    trades = clean_trades(pl.concat(frames), report, utc_midnight(month), end)
    return FetchResult(trades, report)


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
