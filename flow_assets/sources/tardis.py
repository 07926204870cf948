"""Tardis-style trade CSVs: the source that records arrival times (``timestamp=true`` bars).

Columns ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``; times in µs since
the epoch (ms accepted, decided by magnitude); gzip or plain, local path or URL.
``timestamp`` -> ``exchange_ts``, ``local_timestamp`` -> ``arrival_ts``, ``id`` -> ``trade_id``,
``side`` is the taker side, ``amount`` is in the base asset (linear: ``notional = price * amount``;
for an inverse instrument pass ``inverse_contract_value`` and ``amount`` is contracts).
Row policies are those of :mod:`flow_assets.sources.report`.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import zlib
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import requests

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.sources import http
from flow_assets.sources.binance import check_rows, read_raw_csv, to_micros
from flow_assets.sources.errors import CorruptArchiveError, MalformedCsvError
from flow_assets.sources.report import (
    FetchReport,
    FetchResult,
    FileRecord,
    clean_trades,
    month_bounds,
)

COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(http.CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain_copy(source: Path, workdir: Path) -> Path:
    """``source`` itself when plain, else its gunzipped copy in ``workdir``."""
    with source.open("rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            return source
    target = workdir / source.name.removesuffix(".gz")
    try:
        with gzip.open(source, "rb") as packed, target.open("wb") as out:
            shutil.copyfileobj(packed, out, http.CHUNK)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptArchiveError(f"corrupt gzip {source.name}: {exc}") from exc
    return target


def parse_tardis_csv(
    path: Path, *, name: str | None = None, inverse_contract_value: float | None = None
) -> pl.DataFrame:
    """One plain Tardis CSV as trades in ``TRADE_SCHEMA``, in source order, unfiltered."""
    name = name or path.name
    raw, skip = read_raw_csv(path, (len(COLUMNS),), name)
    if not skip:
        raise MalformedCsvError(name, 1, f"expected the header {','.join(COLUMNS)}")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        header = [h.strip() for h in handle.readline().split(",")]
    if tuple(header) != COLUMNS:
        raise MalformedCsvError(name, 1, f"header {header}, expected {list(COLUMNS)}")
    col = {column: pl.col(f"c{i}").str.strip_chars() for i, column in enumerate(COLUMNS)}
    price = col["price"].cast(pl.Float64, strict=False)
    amount = col["amount"].cast(pl.Float64, strict=False)
    if inverse_contract_value is None:
        base_qty, notional = amount, price * amount
    else:
        notional = amount * inverse_contract_value
        base_qty = notional / price
    side = col["side"].str.to_lowercase()
    typed = raw.select(
        to_micros(col["timestamp"].cast(pl.Int64, strict=False)).alias("exchange_ts"),
        to_micros(col["local_timestamp"].cast(pl.Int64, strict=False)).alias("arrival_ts"),
        col["id"].cast(pl.Int64, strict=False).alias("trade_id"),
        price.alias("price"),
        base_qty.alias("base_qty"),
        notional.alias("notional"),
        pl.when(side == "buy").then(True).when(side == "sell").then(False).alias("is_taker_buy"),
    )
    check_rows(typed, raw, skip, name, list(TRADE_SCHEMA))
    return typed


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
    text = str(path_or_url)
    with tempfile.TemporaryDirectory(prefix="tardis-") as tmp:
        workdir = Path(tmp)
        if text.startswith(("http://", "https://")):
            local = workdir / text.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
            got = http.download(session or http.make_session(), text, local)
            record = FileRecord(local.name, text, got.sha256, got.size, False)
        else:
            local = Path(path_or_url)
            record = FileRecord(
                local.name, local.resolve().as_uri(), _sha256(local), local.stat().st_size, False
            )
        plain = _plain_copy(local, workdir)
        trades = parse_tardis_csv(
            plain, name=record.name, inverse_contract_value=inverse_contract_value
        )
        first = pl.read_csv(plain, n_rows=1, infer_schema=False) if trades.height else None
    report = FetchReport(
        exchange or (first["exchange"][0] if first is not None else ""),
        symbol or (first["symbol"][0] if first is not None else ""),
        None,
        files=[record],
    )
    cleaned = clean_trades(trades, report)
    if cleaned.height:
        report.days_covered = sorted(set(cleaned["exchange_ts"].dt.date().to_list()))
        report.end = cleaned["exchange_ts"][-1] + timedelta(microseconds=1)
    return FetchResult(cleaned, report)


def read_tardis_month(
    location: str | Path,
    month: date,
    *,
    exchange: str,
    symbol: str,
    session: requests.Session | None = None,
) -> FetchResult:
    """The trades of one UTC month (by ``exchange_ts``) from a Tardis CSV covering it.

    Rows outside the month are dropped and counted as ``outside_period``; the month is complete.
    """
    result = read_tardis_csv(location, exchange=exchange, symbol=symbol, session=session)
    start, end = month_bounds(month)
    inside = result.trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left"))
    report = result.report
    report.month = start.date()
    report.drop("outside_period", result.trades.height - inside.height)
    report.first_trade = inside["exchange_ts"][0] if inside.height else None
    report.last_trade = inside["exchange_ts"][-1] if inside.height else None
    report.days_covered = sorted(set(inside["exchange_ts"].dt.date().to_list()))
    report.complete, report.end = True, end
    return FetchResult(inside, report)
