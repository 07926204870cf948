"""Binance USD-M futures archive (``data.binance.vision``): aggTrades (default) or trades.

Layout: ``{base}/data/futures/um/{monthly|daily}/{dataset}/{SYM}/{SYM}-{dataset}-{period}.zip``
with a ``.zip.CHECKSUM`` beside each file (``<sha256>  <zip name>``). The base is ``base_url``,
else ``$FLOW_ASSETS_BINANCE_URL``, else ``https://data.binance.vision``.

Which files: a finished month uses its monthly file when published, else its daily files; the
running month uses the daily files up to yesterday (``report.complete`` false). Daily files absent
inside a published range raise :class:`MissingFileError` (or, with ``allow_missing_days``, are
listed in ``report.days_missing``); trailing recent ones are *not published yet*.

CSV: aggTrades ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
is_buyer_maker`` (spot adds ``is_best_match``), trades ``id,price,qty,quote_qty,time,
is_buyer_maker``. A header row may be present or not (futures files before 2022 have none);
times are ms or µs, decided per value by magnitude (>= 1e14 is µs); booleans ``true``/``True``.
Normalized: ``trade_id`` = agg_trade_id or id, ``base_qty`` = quantity, ``notional`` =
price * quantity, ``is_taker_buy`` = not is_buyer_maker, ``arrival_ts`` null. Row policies
(zero quantity, duplicate ids, order) are those of :mod:`flow_assets.sources.report`.

Known defect: in the ``trades`` dataset ``is_buyer_maker`` is true on every row since 2026-07-03.
A day with at least ``ONE_SIDED_MIN_TRADES`` trades all on one side is refused with
:class:`ArchiveDefectError`, never turned into bars; aggTrades keep the side.
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
from flow_assets.sources.errors import (
    ArchiveDefectError,
    MalformedCsvError,
    MissingFileError,
    NotPublishedError,
)
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
from flow_assets.symbology import to_native

EXCHANGE = "binance-futures"
DEFAULT_URL = "https://data.binance.vision"
URL_ENV = "FLOW_ASSETS_BINANCE_URL"
DATASETS = ("aggTrades", "trades")
ONE_SIDED_MIN_TRADES = 10
MICROS_THRESHOLD = 10**14  # 1e14 ms is the year 5138; 1e14 µs is 1973

# Positions of (id, price, quantity, time, is_buyer_maker) in each dataset's rows.
_FIELDS = {"aggTrades": (0, 1, 2, 5, 6), "trades": (0, 1, 2, 4, 5)}
_WIDTHS = {"aggTrades": (7, 8), "trades": (6, 7)}


def resolve_base_url(value: str | None = None) -> str:
    """The archive root: the argument, else ``$FLOW_ASSETS_BINANCE_URL``, else the public one."""
    return (value or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def file_url(base: str, native: str, dataset: str, period: str) -> str:
    """URL of one archive zip; ``period`` is ``YYYY-MM`` (monthly) or ``YYYY-MM-DD`` (daily)."""
    frequency = "monthly" if len(period) == 7 else "daily"
    return f"{base}/data/futures/um/{frequency}/{dataset}/{native}/{native}-{dataset}-{period}.zip"


def to_micros(column: pl.Expr) -> pl.Expr:
    """Epoch ms or µs (by magnitude) as a UTC datetime in µs."""
    return (
        pl.when(column >= MICROS_THRESHOLD).then(column).otherwise(column * 1000).cast(UTC_MICROS)
    )


def _first_line(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.readline().decode("utf-8", "replace").strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _has_header(first_line: str) -> bool:
    """A header row is a first line without a single numeric field."""
    return bool(first_line) and not any(_is_number(f) for f in first_line.split(","))


def _locate_ragged(path: Path, skip: int, width: int) -> tuple[int | None, str]:
    """The first line whose field count differs from ``width`` (a slow scan, only on errors)."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            count = line.count(",") + 1
            if count != width:
                return number, f"{count} fields, expected {width}: {line.strip()[:80]!r}"
    return None, "unreadable CSV"


def read_raw_csv(
    path: Path, widths: tuple[int, ...], name: str | None = None
) -> tuple[pl.DataFrame, int]:
    """All fields of a header-or-not CSV as strings, columns ``c0..cN``; and the header offset."""
    name = name or path.name
    first = _first_line(path)
    skip = 1 if _has_header(first) else 0
    with path.open("rb") as handle:
        if skip:
            handle.readline()
        data_line = handle.readline().decode("utf-8", "replace").strip()
    if not data_line:
        return pl.DataFrame(schema={f"c{i}": pl.String for i in range(widths[0])}), skip
    width = data_line.count(",") + 1
    if width not in widths:
        raise MalformedCsvError(name, skip + 1, f"{width} fields, expected one of {widths}")
    try:
        raw = pl.read_csv(
            path,
            has_header=False,
            skip_rows=skip,
            infer_schema=False,
            new_columns=[f"c{i}" for i in range(width)],
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        line, reason = _locate_ragged(path, skip, width)
        raise MalformedCsvError(name, line, f"{reason} ({type(exc).__name__})") from exc
    return raw, skip


def check_rows(
    typed: pl.DataFrame, raw: pl.DataFrame, skip: int, name: str, required: list[str]
) -> None:
    """Raise :class:`MalformedCsvError` at the first row with an unreadable or invalid field."""
    bad = pl.any_horizontal([pl.col(c).is_null() for c in required])
    bad = bad | (pl.col("price") <= 0) | (pl.col("base_qty") < 0)
    rows = typed.with_row_index("_row").filter(bad)
    if rows.height:
        row = int(rows["_row"][0])
        text = ",".join(str(v) for v in raw.row(row) if v is not None)
        raise MalformedCsvError(name, row + 1 + skip, f"bad field in {text[:80]!r}")


def read_binance_csv(
    path: Path,
    dataset: str = "aggTrades",
    *,
    name: str | None = None,
    inverse_contract_value: float | None = None,
) -> pl.DataFrame:
    """One Binance archive CSV as trades in ``TRADE_SCHEMA``, in source order, unfiltered.

    ``inverse_contract_value`` (USD per contract) reads COIN-M files, whose quantity is contracts:
    ``notional = quantity * value``, ``base_qty = notional / price``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; supported: {', '.join(DATASETS)}")
    name = name or path.name
    raw, skip = read_raw_csv(path, _WIDTHS[dataset], name)
    id_col, price_col, qty_col, time_col, maker_col = (f"c{i}" for i in _FIELDS[dataset])
    maker = pl.col(maker_col).str.strip_chars().str.to_lowercase()
    quantity = pl.col(qty_col).str.strip_chars().cast(pl.Float64, strict=False)
    price = pl.col(price_col).str.strip_chars().cast(pl.Float64, strict=False)
    if inverse_contract_value is None:
        base_qty, notional = quantity, price * quantity
    else:
        notional = quantity * inverse_contract_value
        base_qty = notional / price
    typed = raw.select(
        to_micros(pl.col(time_col).str.strip_chars().cast(pl.Int64, strict=False)).alias(
            "exchange_ts"
        ),
        pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
        pl.col(id_col).str.strip_chars().cast(pl.Int64, strict=False).alias("trade_id"),
        price.alias("price"),
        base_qty.alias("base_qty"),
        notional.alias("notional"),
        pl.when(maker == "false")
        .then(True)
        .when(maker == "true")
        .then(False)
        .otherwise(None)
        .alias("is_taker_buy"),
    )
    check_rows(typed, raw, skip, name, list(TRADE_SCHEMA.keys() - {"arrival_ts"}))
    return typed


def check_one_sided(trades: pl.DataFrame, name: str) -> None:
    """Refuse a day of the ``trades`` dataset whose trades are all on one side (archive defect)."""
    days = (
        trades.group_by(pl.col("exchange_ts").dt.date().alias("day"))
        .agg(pl.len().alias("n"), pl.col("is_taker_buy").n_unique().alias("sides"))
        .filter((pl.col("n") >= ONE_SIDED_MIN_TRADES) & (pl.col("sides") == 1))
        .sort("day")
    )
    if days.height:
        listed = ", ".join(str(d) for d in days["day"])
        raise ArchiveDefectError(
            f"{name}: every trade of {listed} is on one side: the known Binance archive defect "
            "(trades dataset: is_buyer_maker true on every row since 2026-07-03). "
            "Use the aggTrades dataset, which keeps the side."
        )


def _fetch_file(
    session: requests.Session,
    url: str,
    workdir: Path,
    dataset: str,
    report: FetchReport,
    *,
    checksum_text: str | None = None,
) -> pl.DataFrame:
    zip_path = workdir / url.rsplit("/", 1)[1]
    try:
        got = http.download_verified(session, url, zip_path, url + ".CHECKSUM", checksum_text)
    except http.NotFoundError as exc:
        raise MissingFileError(f"{url} is gone although its CHECKSUM is published") from exc
    report.files.append(FileRecord(zip_path.name, url, got.sha256, got.size, True))
    csv_path = http.unzip_single(zip_path, workdir)
    zip_path.unlink()
    try:
        trades = read_binance_csv(csv_path, dataset, name=zip_path.name)
    finally:
        csv_path.unlink()
    if dataset == "trades":
        check_one_sided(trades, zip_path.name)
    return trades


def _checksum_or_none(session: requests.Session, url: str) -> str | None:
    try:
        return http.get_text(session, url + ".CHECKSUM")
    except http.NotFoundError:
        return None


def _month_plan(month: date, today: date) -> tuple[bool, list[date]]:
    """(finished, the days the month can cover as of ``today``)."""
    start, stop = month_start(month), next_month(month)
    if start >= today:
        raise NotPublishedError(f"{month:%Y-%m} has no complete day yet (today is {today})")
    return stop <= today, days_between(start, min(stop, today))


def fetch_month(
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    dataset: str = "aggTrades",
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
) -> FetchResult:
    """All trades of one UTC month (``month`` = its first day) of an Atlas perpetual."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; supported: {', '.join(DATASETS)}")
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    today = today or today_utc()
    finished, days = _month_plan(month, today)
    report = FetchReport(EXCHANGE, str(symbol), month)
    frames: list[pl.DataFrame] = []
    with tempfile.TemporaryDirectory(prefix="binance-") as tmp:
        workdir = Path(tmp)
        monthly_url = file_url(base, native, dataset, f"{month:%Y-%m}")
        checksum = _checksum_or_none(session, monthly_url) if finished else None
        if checksum is not None:
            frames.append(
                _fetch_file(session, monthly_url, workdir, dataset, report, checksum_text=checksum)
            )
            report.days_covered = days
        else:
            urls = {d: file_url(base, native, dataset, f"{d:%Y-%m-%d}") for d in days}
            sums = {d: _checksum_or_none(session, urls[d]) for d in days}
            present = {d for d, text in sums.items() if text is not None}
            not_yet, missing = classify_absent(days, present, today, f"{native} {dataset}")
            if finished and not_yet:
                raise NotPublishedError(
                    f"{native} {dataset} {month:%Y-%m}: no monthly file and daily files "
                    f"not published yet for {', '.join(map(str, not_yet))}"
                )
            if (missing and not allow_missing_days) or not present:
                raise MissingFileError(
                    f"{native} {dataset} {month:%Y-%m}: no monthly file and daily files missing "
                    f"for {', '.join(map(str, missing))}"
                )
            for day in sorted(present):
                frames.append(
                    _fetch_file(
                        session, urls[day], workdir, dataset, report, checksum_text=sums[day]
                    )
                )
            report.days_covered = sorted(present)
            report.days_missing = missing
            if not_yet:
                days = [d for d in days if d <= max(present)]
    end = utc_midnight(days[-1] + timedelta(days=1))
    report.end = end
    report.complete = finished and not report.days_missing
    trades = clean_trades(pl.concat(frames), report, utc_midnight(month), end)
    return FetchResult(trades, report)


def probe_month(
    symbol: str,
    month: date,
    *,
    base_url: str | None = None,
    session: requests.Session | None = None,
    today: date | None = None,
    dataset: str = "aggTrades",
) -> str | None:
    """A version of the month's files from their CHECKSUMs only; None when nothing is out yet."""
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    try:
        finished, days = _month_plan(month, today or today_utc())
    except NotPublishedError:
        return None
    if finished:
        text = _checksum_or_none(session, file_url(base, native, dataset, f"{month:%Y-%m}"))
        if text is not None:
            return "monthly:" + text.split()[0]
    sums = [
        f"{d}:{text.split()[0]}"
        for d in days
        if (text := _checksum_or_none(session, file_url(base, native, dataset, f"{d:%Y-%m-%d}")))
    ]
    if not sums:
        return None
    return f"daily:{len(sums)}:" + hashlib.sha256("\n".join(sums).encode()).hexdigest()[:32]
