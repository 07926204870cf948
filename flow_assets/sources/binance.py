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

:func:`ingest_month` streams the files one after the other (downloaded with their checksum
verified first, then read chunk by chunk) into one Parquet file (:mod:`flow_assets.sources.ingest`);
:func:`flow_assets.sources.fetch_month` reads that file back into memory.

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

from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources import http
from flow_assets.sources.csvstream import CsvFormat, field, read_trades, text
from flow_assets.sources.errors import ArchiveDefectError, MissingFileError, NotPublishedError
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
# The dtype of every field (the last, spot's is_best_match, included) read first.
_I, _F, _B = pl.Int64(), pl.Float64(), pl.Boolean()
_DTYPES = {"aggTrades": (_I, _F, _F, _I, _I, _I, _B, _B), "trades": (_I, _F, _F, _F, _I, _B, _B)}


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


def _taker_buy(raw: pl.DataFrame, index: int) -> pl.Expr:
    """Not ``is_buyer_maker`` (``true``/``false`` in any case; else null)."""
    if raw.schema[f"c{index}"] == pl.Boolean:
        return pl.col(f"c{index}").not_()
    maker = text(index).str.to_lowercase()
    return pl.when(maker == "false").then(True).when(maker == "true").then(False).otherwise(None)


class BinanceCsv(CsvFormat):
    """The CSV of one Binance archive file (``aggTrades`` or ``trades``).

    ``inverse_contract_value`` (USD per contract) reads COIN-M files, whose quantity is contracts:
    ``notional = quantity * value``, ``base_qty = notional / price``.
    """

    def __init__(self, dataset: str = "aggTrades", inverse_contract_value: float | None = None):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; supported: {', '.join(DATASETS)}")
        self.widths = _WIDTHS[dataset]
        self.fields = _FIELDS[dataset]
        self.dtypes = _DTYPES[dataset]
        self.inverse_contract_value = inverse_contract_value

    def columns(self) -> dict[int, pl.DataType]:
        return dict(enumerate(self.dtypes))

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        id_col, price_col, qty_col, time_col, maker_col = self.fields
        quantity = field(raw, qty_col, pl.Float64())
        price = field(raw, price_col, pl.Float64())
        if self.inverse_contract_value is None:
            base_qty, notional = quantity, price * quantity
        else:
            notional = quantity * self.inverse_contract_value
            base_qty = notional / price
        return raw.select(
            to_micros(field(raw, time_col, pl.Int64())).alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            field(raw, id_col, pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            _taker_buy(raw, maker_col).alias("is_taker_buy"),
        )


def read_binance_csv(
    path: Path,
    dataset: str = "aggTrades",
    *,
    name: str | None = None,
    inverse_contract_value: float | None = None,
) -> pl.DataFrame:
    """One Binance archive CSV (plain, gzip or zip) as trades in ``TRADE_SCHEMA``, in source order,
    unfiltered (see :class:`BinanceCsv`)."""
    fmt = BinanceCsv(dataset, inverse_contract_value)
    frames = list(read_trades(path, fmt, name))
    return pl.concat(frames) if frames else empty_trades()


class OneSidedCheck:
    """Per-day trade counts and buys of one ``trades`` file, to refuse the one-sided defect."""

    def __init__(self) -> None:
        self.days: pl.DataFrame | None = None

    def add(self, trades: pl.DataFrame) -> None:
        """Count the next trades of the file."""
        days = trades.group_by(pl.col("exchange_ts").dt.date().alias("day")).agg(
            pl.len().alias("n"), pl.col("is_taker_buy").sum().alias("buys")
        )
        both = days if self.days is None else pl.concat([self.days, days])
        self.days = both.group_by("day").agg(pl.col("n").sum(), pl.col("buys").sum())

    def check(self, name: str) -> None:
        """Refuse the file when a day of it has its trades all on one side (archive defect)."""
        if self.days is None:
            return
        one_sided = (pl.col("buys") == 0) | (pl.col("buys") == pl.col("n"))
        days = self.days.filter((pl.col("n") >= ONE_SIDED_MIN_TRADES) & one_sided).sort("day")
        if days.height:
            listed = ", ".join(str(d) for d in days["day"])
            raise ArchiveDefectError(
                f"{name}: every trade of {listed} is on one side: the known Binance archive defect "
                "(trades dataset: is_buyer_maker true on every row since 2026-07-03). "
                "Use the aggTrades dataset, which keeps the side."
            )


def check_one_sided(trades: pl.DataFrame, name: str) -> None:
    """Refuse a day of the ``trades`` dataset whose trades are all on one side (archive defect)."""
    check = OneSidedCheck()
    check.add(trades)
    check.check(name)


def _ingest_file(
    session: requests.Session,
    url: str,
    checksum_text: str,
    dataset: str,
    sink: TradeSink,
    workdir: Path,
    progress: Progress | None,
) -> None:
    """Download one zip (checksum verified first), stream its trades into ``sink``, delete it."""
    zip_path = workdir / url.rsplit("/", 1)[1]
    try:
        got = http.download_verified(
            session, url, zip_path, url + ".CHECKSUM", checksum_text, progress=progress
        )
    except http.NotFoundError as exc:
        raise MissingFileError(f"{url} is gone although its CHECKSUM is published") from exc
    sink.report.files.append(FileRecord(zip_path.name, url, got.sha256, got.size, True))
    one_sided = OneSidedCheck() if dataset == "trades" else None
    for trades in read_trades(zip_path, BinanceCsv(dataset), kind="zip", progress=progress):
        if one_sided is not None:
            one_sided.add(trades)
        sink.add(trades)
    if one_sided is not None:
        one_sided.check(zip_path.name)
    zip_path.unlink()


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


def _plan_files(
    session: requests.Session,
    base: str,
    native: str,
    dataset: str,
    month: date,
    today: date,
    allow_missing_days: bool,
    report: FetchReport,
) -> list[tuple[str, str]]:
    """The (url, CHECKSUM text) of the files to read; fills the report's coverage and end."""
    finished, days = _month_plan(month, today)
    monthly_url = file_url(base, native, dataset, f"{month:%Y-%m}")
    checksum = _checksum_or_none(session, monthly_url) if finished else None
    if checksum is not None:
        files = [(monthly_url, checksum)]
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
        files = [(urls[d], sums[d]) for d in sorted(present)]  # type: ignore[misc]
        report.days_covered = sorted(present)
        report.days_missing = missing
        if not_yet:
            days = [d for d in days if d <= max(present)]
    report.end = utc_midnight(days[-1] + timedelta(days=1))
    report.complete = finished and not report.days_missing
    return files


def ingest_month(
    symbol: str,
    month: date,
    dest: Path,
    *,
    base_url: str | None = None,
    dataset: str = "aggTrades",
    session: requests.Session | None = None,
    today: date | None = None,
    allow_missing_days: bool = False,
    progress: Progress | None = None,
) -> FetchReport:
    """Write the trades of one UTC month of an Atlas perpetual to the Parquet file ``dest``.

    Streams each file (see :mod:`flow_assets.sources.ingest` for the file and the memory bound).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; supported: {', '.join(DATASETS)}")
    native = to_native(EXCHANGE, symbol)
    base = resolve_base_url(base_url)
    session = session or http.make_session()
    report = FetchReport(EXCHANGE, str(symbol), month)
    files = _plan_files(
        session, base, native, dataset, month, today or today_utc(), allow_missing_days, report
    )
    with tempfile.TemporaryDirectory(prefix="binance-") as tmp:
        workdir = Path(tmp)
        start = utc_midnight(month)
        with TradeSink(dest, report, start, report.end, progress=progress, workdir=workdir) as sink:
            for url, checksum in files:
                _ingest_file(session, url, checksum, dataset, sink, workdir, progress)
            sink.commit()
    return report


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
