"""Read flow bars back from the store, the way the product's public client reads them.

The public client (``aperiodic.get_metrics``) downloads the monthly files covering a date range,
concatenates them in month order, keeps ``time`` between ``start_date 00:00`` and
``end_date 23:59:59.999999`` (naive UTC wall clock) and sorts by ``time``. :func:`get_metrics`
does the same against our store (local folder or S3), with no Dagster involved.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import polars as pl

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.metrics.schema import BAR_SCHEMA
from flow_assets.store import TIMESTAMPS, MissingObjectError, StoreError, flow_key, open_store
from flow_assets.symbology import SUPPORTED_EXCHANGES, SymbolError, parse_symbol

SUPPORTED_METRICS: tuple[str, ...] = ("flow",)


def _check_day(name: str, value: object) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(
            f"{name} must be a datetime.date (not a datetime or string), got {value!r}"
        )
    return value


def _months(start: date, end: date) -> list[date]:
    """First day of every calendar month from ``start``'s to ``end``'s, in order."""
    months = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def validate_request(
    metric: str, exchange: str, symbol: str, interval: str, timestamp: str
) -> None:
    """Raise ValueError naming the supported values if any request parameter is unknown."""
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"unknown metric {metric!r}; supported: {', '.join(SUPPORTED_METRICS)}")
    if exchange not in SUPPORTED_EXCHANGES:
        raise ValueError(
            f"unknown exchange {exchange!r}; supported: {', '.join(SUPPORTED_EXCHANGES)}"
        )
    try:
        canonical = str(parse_symbol(symbol))
    except SymbolError as error:
        canonical, detail = None, f" ({error})"
    else:
        detail = ""
    if canonical != symbol:
        raise ValueError(
            f"invalid symbol {symbol!r}: expected an Atlas id "
            f"<type>-<BASE>-<QUOTE>[:<SETTLE>][-<YYYYMMDD>], e.g. 'perpetual-BTC-USDT:USDT'{detail}"
        )
    if interval not in ALL_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; supported: {', '.join(ALL_INTERVALS)}")
    if timestamp not in TIMESTAMPS:
        raise ValueError(f"unknown timestamp {timestamp!r}; supported: {', '.join(TIMESTAMPS)}")


def _read_month(data: bytes, key: str) -> pl.DataFrame:
    """One monthly file reduced to ``time`` + the 36 fields; a clear error on schema drift."""
    frame = pl.read_parquet(io.BytesIO(data))
    missing = [name for name in BAR_SCHEMA if name not in frame.columns]
    if missing:
        raise StoreError(f"object {key!r} lacks the bar column(s) {missing}")
    wrong = {
        name: str(frame.schema[name])
        for name, dtype in BAR_SCHEMA.items()
        if frame.schema[name] != dtype
    }
    if wrong:
        raise StoreError(f"object {key!r} has bar column(s) of the wrong dtype: {wrong}")
    return frame.select(list(BAR_SCHEMA))


def get_metrics(
    metric: str = "flow",
    *,
    exchange: str,
    symbol: str,
    interval: str,
    start_date: date,
    end_date: date,
    timestamp: str = "exchange",
    storage_url: str | None = None,
) -> pl.DataFrame:
    """Flow bars of ``symbol`` on ``exchange`` whose open time falls on ``start_date`` ..
    ``end_date`` (both inclusive, UTC days), sorted by ``time``.

    Columns: ``time`` (Datetime[us], naive UTC wall clock) then the 36 flow fields, in the
    order and dtypes of ``BAR_SCHEMA``. Raises :class:`MissingObjectError` (a ``LookupError``)
    naming every month of the range that is not materialized yet.
    """
    validate_request(metric, exchange, symbol, interval, timestamp)
    start = _check_day("start_date", start_date)
    end = _check_day("end_date", end_date)
    if end < start:
        raise ValueError(f"end_date {end.isoformat()} is before start_date {start.isoformat()}")

    store = open_store(storage_url)
    frames: list[pl.DataFrame] = []
    missing: list[tuple[date, str]] = []
    for month in _months(start, end):
        key = flow_key(timestamp, exchange, interval, symbol, month)
        try:
            data = store.get_bytes(key)
        except MissingObjectError:
            missing.append((month, key))
            continue
        frames.append(_read_month(data, key))
    if missing:
        listed = ", ".join(f"{m:%Y-%m} ({store.uri(k)})" for m, k in missing)
        raise MissingObjectError(
            missing[0][1],
            store.url,
            message=f"month(s) not materialized yet in {store.url}: {listed}",
        )

    lower = datetime.combine(start, datetime.min.time())
    upper = datetime.combine(end + timedelta(days=1), datetime.min.time())
    combined = pl.concat(frames, how="vertical")
    return combined.filter((pl.col("time") >= lower) & (pl.col("time") < upper)).sort(
        "time", maintain_order=True
    )
