"""Read flow bars back, the way the product's public client reads them: from the store or the API.

The public client (``aperiodic.get_metrics``) downloads the monthly files covering a date range,
concatenates them in month order, keeps ``time`` between ``start_date 00:00`` and
``end_date 23:59:59.999999`` (naive UTC wall clock) and sorts by ``time``. :func:`get_metrics`
does the same, either straight from our store (local folder or S3) through the published
manifests, or through our HTTP API (``api_key=``), with no Dagster involved. Only published
months are read; a month of the range with nothing published is "not materialized yet".
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import requests
from tqdm.auto import tqdm

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.metrics.schema import BAR_SCHEMA
from flow_assets.publish import Manifest, flow_file, read_manifest
from flow_assets.store import TIMESTAMPS, MissingObjectError, ObjectStore, StoreError, open_store
from flow_assets.symbology import SymbolError, parse_symbol
from flow_assets.venues import NAMES

SUPPORTED_METRICS: tuple[str, ...] = ("flow",)
API_URL_ENV = "APERIODIC_API_URL"  # the variable the public client reads too
DEFAULT_API_URL = "http://127.0.0.1:8000/api/v1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_WAIT = 10.0  # seconds; a longer Retry-After is cut to this
API_ATTEMPTS = 4
DOWNLOAD_ATTEMPTS = 4


class ApiError(RuntimeError):
    """The API refused a request: HTTP status, message, details and machine-readable code."""

    def __init__(
        self, status_code: int, message: str, details: list[str] | None = None, code: str = ""
    ) -> None:
        super().__init__(
            f"{status_code}: {message}" + (f" ({'; '.join(details)})" if details else "")
        )
        self.status_code = status_code
        self.message = message
        self.details = details or []
        self.code = code


def _check_day(name: str, value: object) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(
            f"{name} must be a datetime.date (not a datetime or string), got {value!r}"
        )
    return value


def months_between(start: date, end: date) -> list[date]:
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
    if exchange not in NAMES:
        raise ValueError(f"unknown exchange {exchange!r}; supported: {', '.join(NAMES)}")
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


@dataclass(frozen=True)
class MonthLookup:
    """Which months of a request are published (month, store key) and which are not (why)."""

    found: list[tuple[date, str]]
    missing: list[tuple[date, str]]


def published_keys(
    read_month: Callable[[date], Manifest | None],
    timestamp: str,
    interval: str,
    months: list[date],
) -> MonthLookup:
    """The store key of the ``timestamp``/``interval`` bars of each published month.

    ``read_month`` gives a month's manifest (None: nothing published). A month counts only
    through its manifest, and a manifest without that file (e.g. ``true`` bars of an
    instrument without arrival times) means that file is not part of the month.
    """
    found, missing = [], []
    name = flow_file(timestamp, interval)
    for month in months:
        manifest = read_month(month)
        if manifest is None:
            missing.append((month, "nothing published"))
            continue
        try:
            found.append((month, manifest.key_of(name)))
        except MissingObjectError:
            missing.append((month, f"published without {name} bars"))
    return MonthLookup(found, missing)


def _read_month(data: bytes, label: str) -> pl.DataFrame:
    """One monthly file reduced to ``time`` + the 36 fields; a clear error on schema drift."""
    frame = pl.read_parquet(io.BytesIO(data))
    missing = [name for name in BAR_SCHEMA if name not in frame.columns]
    if missing:
        raise StoreError(f"object {label!r} lacks the bar column(s) {missing}")
    wrong = {
        name: str(frame.schema[name])
        for name, dtype in BAR_SCHEMA.items()
        if frame.schema[name] != dtype
    }
    if wrong:
        raise StoreError(f"object {label!r} has bar column(s) of the wrong dtype: {wrong}")
    return frame.select(list(BAR_SCHEMA))


def _not_materialized(where: str, what: str, missing: list[tuple[date, str]]) -> MissingObjectError:
    listed = ", ".join(f"{month:%Y-%m} ({why})" for month, why in missing)
    return MissingObjectError(
        f"{missing[0][0]:%Y-%m}",
        where,
        message=f"{what}: month(s) not materialized yet in {where}: {listed}",
    )


def _trim(frames: list[pl.DataFrame], start: date, end: date) -> pl.DataFrame:
    """Concatenate month frames and keep bars opening on ``start`` .. ``end``, sorted by time."""
    lower = datetime.combine(start, datetime.min.time())
    upper = datetime.combine(end + timedelta(days=1), datetime.min.time())
    combined = pl.concat(frames, how="vertical")
    return combined.filter((pl.col("time") >= lower) & (pl.col("time") < upper)).sort(
        "time", maintain_order=True
    )


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
    api_key: str | None = None,
    api_url: str | None = None,
    show_progress: bool = True,
    max_workers: int = 8,
) -> pl.DataFrame:
    """Flow bars of ``symbol`` on ``exchange`` whose open time falls on ``start_date`` ..
    ``end_date`` (both inclusive, UTC days), sorted by ``time``.

    Without ``api_key`` the published months are read from the store at ``storage_url`` (default:
    ``FLOW_ASSETS_STORAGE_URL``). With ``api_key`` they come from the API at ``api_url`` (default:
    ``APERIODIC_API_URL``, else ``http://127.0.0.1:8000/api/v1``), downloaded ``max_workers`` at
    a time with retries and a progress bar (``show_progress``); the frame is the same.

    Columns: ``time`` (Datetime[us], naive UTC wall clock) then the 36 flow fields, in the
    order and dtypes of ``BAR_SCHEMA``. Raises :class:`MissingObjectError` (a ``LookupError``)
    naming every month of the range that is not materialized yet, :class:`ApiError` when the API
    refuses the request.
    """
    validate_request(metric, exchange, symbol, interval, timestamp)
    start = _check_day("start_date", start_date)
    end = _check_day("end_date", end_date)
    if end < start:
        raise ValueError(f"end_date {end.isoformat()} is before start_date {start.isoformat()}")
    months = months_between(start, end)
    if api_key is None:
        if api_url is not None:
            raise ValueError("api_url needs api_key (the API answers only requests with a key)")
        frames = _frames_from_store(
            open_store(storage_url), exchange, symbol, timestamp, interval, months
        )
    else:
        if storage_url is not None:
            raise ValueError("pass storage_url (read the store) or api_key (use the API), not both")
        query = {
            "timestamp": timestamp,
            "interval": interval,
            "exchange": exchange,
            "symbol": symbol,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        url = (api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        frames = _frames_from_api(url, api_key, metric, query, months, show_progress, max_workers)
    return _trim(frames, start, end)


def _frames_from_store(
    store: ObjectStore,
    exchange: str,
    symbol: str,
    timestamp: str,
    interval: str,
    months: list[date],
) -> list[pl.DataFrame]:
    lookup = published_keys(
        lambda month: read_manifest(store, "flow", exchange, symbol, month),
        timestamp,
        interval,
        months,
    )
    if lookup.missing:
        what = f"{exchange} {symbol} {timestamp}/{interval}"
        raise _not_materialized(store.url, what, lookup.missing)
    return [_read_month(store.get_bytes(key), store.uri(key)) for _, key in lookup.found]


# --------------------------------------------------------------------------- API


def _retry_wait(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), MAX_RETRY_WAIT)
    return min(0.5 * 2**attempt, MAX_RETRY_WAIT)


def _api_error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    details = body.get("details")
    return ApiError(
        response.status_code,
        str(body.get("error") or response.reason or "error"),
        [str(d) for d in details] if isinstance(details, list) else None,
        str(body.get("code") or ""),
    )


def _list_files(
    session: requests.Session, url: str, api_key: str, query: dict[str, str]
) -> list[dict[str, Any]]:
    """The API's file list for ``query`` (empty when nothing is published), with retries."""
    for attempt in range(API_ATTEMPTS):
        last = attempt == API_ATTEMPTS - 1
        try:
            response = session.get(
                url, params=query, headers={"X-API-KEY": api_key}, allow_redirects=False, timeout=60
            )
        except (requests.ConnectionError, requests.Timeout):
            if last:
                raise
            time.sleep(_retry_wait(attempt, None))
            continue
        if response.status_code in RETRY_STATUSES and not last:
            time.sleep(_retry_wait(attempt, response.headers.get("Retry-After")))
            continue
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise _api_error(response)
        return list(response.json()["files"])
    raise AssertionError("unreachable")


_sessions = threading.local()


def _download(url: str, label: str) -> bytes:
    """GET one file (no API key: the URL carries its own signature), with retries.

    A 403 (link expired or refused) or 404 is final; other failures are tried again.
    """
    session = getattr(_sessions, "session", None) or requests.Session()
    _sessions.session = session
    for attempt in range(DOWNLOAD_ATTEMPTS):
        final = attempt == DOWNLOAD_ATTEMPTS - 1
        try:
            response = session.get(url, timeout=300)
        except (requests.ConnectionError, requests.Timeout):
            if final:
                raise
        else:
            if response.status_code == 200:
                return response.content
            if response.status_code in (401, 403, 404) or final:
                error = _api_error(response)
                error.add_note(f"while downloading the file of {label}")
                raise error
        time.sleep(_retry_wait(attempt, None))
    raise AssertionError("unreachable")


def _frames_from_api(
    base_url: str,
    api_key: str,
    metric: str,
    query: dict[str, str],
    months: list[date],
    show_progress: bool,
    max_workers: int,
) -> list[pl.DataFrame]:
    with requests.Session() as session:
        files = _list_files(session, f"{base_url}/data/{metric}", api_key, query)
        listed = {(f["year"], f["month"]) for f in files}
        missing = [(m, "nothing published") for m in months if (m.year, m.month) not in listed]
        if missing:
            what = f"{query['exchange']} {query['symbol']} {query['timestamp']}/{query['interval']}"
            raise _not_materialized(base_url, what, missing)
        order = sorted(files, key=lambda f: (f["year"], f["month"], f.get("day", 0)))
        labels = [
            f"{f['year']}-{f['month']:02d}" + (f"-{f['day']:02d}" if "day" in f else "")
            for f in order
        ]
        contents: dict[int, bytes] = {}
        bar = tqdm(
            total=len(order),
            unit="file",
            desc=f"{query['symbol']} {query['interval']}",
            disable=not show_progress,
        )
        with bar, ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            futures = {pool.submit(_download, f["url"], labels[i]): i for i, f in enumerate(order)}
            for future in as_completed(futures):
                contents[futures[future]] = future.result()
                bar.update(1)
    return [_read_month(contents[i], labels[i]) for i in range(len(order))]
