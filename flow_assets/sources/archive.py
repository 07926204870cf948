"""The one archive loop every exchange shares: month plan, downloads, checksums, coverage, cleaning.

An :class:`Exchange` says only how one exchange publishes its trades: where its files are
(``daily_url``, optionally ``monthly_url``), how they are compressed (``compression``: zip or
gzip), where each file's checksum is (``checksum_url`` or none), on which days its files are cut
(``day_offset``), its CSV (``csv_format``), its trade ids (``trade_ids``: integer or string) and
checks that need a whole file (``file_check``). It is part of the venue's description
(:mod:`flow_assets.venues`). Everything else is here, the same for every exchange:

* **Month plan.** The UTC days of a month as of ``today``: all of them when the month is over
  (``finished``), else the days up to yesterday. A day needs the files whose exchange-local day
  overlaps it (one file, or two when the exchange's days are shifted, like OKX's UTC+8 days).
* **Which files.** A finished month uses its monthly file when the exchange publishes one and it
  is out, else the daily files. A file is *present* when its checksum file is published (then it
  is downloaded and verified just before reading, one at a time) or, for an exchange without
  checksums, when downloading it succeeds (so those files are all downloaded first).
* **Coverage.** Absent files after the last present one and recent are *not published yet*: a
  finished month with such files raises :class:`NotPublishedError`; a running month ends before
  the first day that needs one (a file published late is not a defect). Other absent files are
  *missing*: :class:`MissingFileError`, or with ``allow_missing_days`` listed in
  ``report.days_missing`` (the days that need them are not in ``report.days_covered``).
* **Cleaning.** The files are streamed in date order into one sorted Parquet file through a
  :class:`TradeSink` (row policies of :mod:`flow_assets.sources.report`), ``[month, end)``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import polars as pl
import requests

from flow_assets.sources import http
from flow_assets.sources.csvstream import CsvFormat, read_trades
from flow_assets.sources.errors import MissingFileError, NotPublishedError
from flow_assets.sources.http import Progress
from flow_assets.sources.ingest import TradeSink
from flow_assets.sources.report import (
    FetchReport,
    FileRecord,
    classify_absent,
    days_between,
    month_start,
    next_month,
    today_utc,
    utc_midnight,
)
from flow_assets.symbology import to_native

if TYPE_CHECKING:
    from flow_assets.sources.probing import DayFiles, Net, Site, Target

DEFAULT_DATASET = "trades"
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch one month; every field has the default of the public functions.

    ``contract_values`` is the contract value history of the instrument (``valid_from``,
    ``valid_to``, ``ct_val``) for exchanges whose sizes are contracts; None: the package's table.
    ``dataset`` None is the exchange's default (the first of its ``datasets``).
    """

    base_url: str | None = None
    dataset: str | None = None
    session: requests.Session | None = None
    today: date | None = None
    allow_missing_days: bool = False
    contract_values: pl.DataFrame | None = None
    progress: Progress | None = None


class FileCheck(Protocol):
    """A check over all trades of one file (e.g. Binance's one-sided days), fed chunk by chunk."""

    def add(self, trades: pl.DataFrame) -> None:
        """Look at the next trades of the file."""

    def check(self, name: str) -> None:
        """Raise when the file ``name`` must be refused."""


def no_file_check(options: FetchOptions) -> FileCheck | None:
    """No whole-file check."""
    return None


class ArchiveProbe(Protocol):
    """How a sensor learns which finished months of an archive are out, and their version,
    within a tick's budget (the mechanisms are in :mod:`flow_assets.sources.probing`).
    ``url_env``: the environment variable of where it asks, when that is not the archive root
    (an S3 listing endpoint), else None."""

    url_env: str | None

    def versions(
        self,
        net: Net,
        site: Site,
        target: Target,
        states: dict[str, DayFiles],
        key: str,
        today: date,
    ) -> dict[str, str]:
        """The version of each month of ``target`` that is out (ISO month -> version)."""
        ...


FileUrl = Callable[[str, str, str, date], str]  # (base, native id, dataset, day or month) -> url


@dataclass(frozen=True)
class Exchange:
    """How one exchange publishes its trade archive (what a new exchange must describe).

    ``daily_url``/``monthly_url`` give a file's URL; ``checksum_url`` maps a file URL to its
    sha256 checksum file (None: the exchange publishes none). The file dated D holds the trades
    of D 00:00 to D+1 00:00 at UTC+``day_offset``. ``csv_format`` reads one file's CSV for an
    Atlas symbol. ``datasets`` are the names accepted (the first is the default).
    ``version_tag`` prefixes probe versions made from HEAD responses (sensors store them).
    ``sizes_in_contracts``: its sizes are contracts, converted with the instrument's contract
    values (``FetchOptions.contract_values``, from the catalog). ``compression``: ``zip`` (one
    CSV member) or ``gzip``. ``trade_ids``: ``integer`` (the CSV's ids, deduplicated with a
    bitmap) or ``string`` (the parser gives the 128-bit key of each id and a file-order
    ``trade_id``; see :mod:`flow_assets.sources.report`). ``file_order``: how its files list
    their rows normally, ``oldest_first`` or ``newest_first`` (rows out of that order are
    counted as reordered, an upstream defect; a file in it is only sorted). ``probe``: how the
    archive sensor finds which months are out and their version within its budget (an S3
    listing, an HTML index, HEADs of day files; :mod:`flow_assets.sources.probing`); None:
    HEADs of day files.
    """

    name: str
    default_url: str
    url_env: str
    daily_url: FileUrl
    csv_format: Callable[[str, FetchOptions], CsvFormat]
    monthly_url: FileUrl | None = None
    checksum_url: Callable[[str], str] | None = None
    datasets: tuple[str, ...] = (DEFAULT_DATASET,)
    day_offset: timedelta = timedelta(0)
    file_check: Callable[[FetchOptions], FileCheck | None] = no_file_check
    version_tag: str = "head"
    sizes_in_contracts: bool = False
    compression: str = "zip"
    trade_ids: str = "integer"
    probe: ArchiveProbe | None = None
    file_order: str = "oldest_first"

    def __post_init__(self) -> None:
        if self.compression not in ("zip", "gzip"):
            raise ValueError(f"{self.name}: compression must be zip or gzip")
        if self.trade_ids not in ("integer", "string"):
            raise ValueError(f"{self.name}: trade_ids must be integer or string")
        if self.file_order not in ("oldest_first", "newest_first"):
            raise ValueError(f"{self.name}: file_order must be oldest_first or newest_first")

    def resolve(self, options: FetchOptions) -> FetchOptions:
        """``options`` with the dataset checked (None: the default dataset)."""
        dataset = options.dataset or self.datasets[0]
        if dataset not in self.datasets:
            supported = ", ".join(self.datasets)
            raise ValueError(f"{self.name} has no dataset {dataset!r}; supported: {supported}")
        return replace(options, dataset=dataset)

    @property
    def listing_env(self) -> str | None:
        """The environment variable of where its archive answers listings (None: no listing)."""
        return None if self.probe is None else self.probe.url_env

    def base_url(self, value: str | None = None) -> str:
        """The archive root: ``value``, else the environment variable, else the public one."""
        return (value or os.environ.get(self.url_env) or self.default_url).rstrip("/")

    def file_dates(self, day: date) -> list[date]:
        """The dates of the files holding the trades of the UTC ``day``."""
        first = (utc_midnight(day) + self.day_offset).date()
        last = (utc_midnight(day + timedelta(days=1)) - ONE_MICROSECOND + self.day_offset).date()
        return days_between(first, last + timedelta(days=1))


@dataclass
class _Found:
    """A published file: its URL, its checksum text (None without checksums), and its local
    copy once downloaded."""

    url: str
    checksum: str | None
    path: Path | None = None


class _MonthFetch:
    """The fetch of one month of one instrument from one exchange."""

    def __init__(
        self,
        exchange: Exchange,
        symbol: str,
        month: date,
        options: FetchOptions,
        workdir: Path | None = None,
    ) -> None:
        options = exchange.resolve(options)
        self.exchange, self.symbol, self.month = exchange, symbol, month
        self.options, self.workdir = options, workdir
        self.native = to_native(exchange.name, symbol)
        self.base = exchange.base_url(options.base_url)
        self.session = options.session or http.make_session()
        self.today = options.today or today_utc()
        single = len(exchange.datasets) == 1
        self.what = self.native if single else f"{self.native} {options.dataset}"

    def plan(self) -> tuple[bool, list[date], list[date]]:
        """(finished, the UTC days the month can cover as of today, the file dates they need)."""
        start, stop = month_start(self.month), next_month(self.month)
        if start >= self.today:
            raise NotPublishedError(
                f"{start:%Y-%m} has no complete day yet (today is {self.today})"
            )
        days = days_between(start, min(stop, self.today))
        dates = sorted({d for day in days for d in self.exchange.file_dates(day)})
        return stop <= self.today, days, dates

    @property
    def dataset(self) -> str:
        assert self.options.dataset is not None
        return self.options.dataset

    def daily(self, day: date) -> str:
        return self.exchange.daily_url(self.base, self.native, self.dataset, day)

    def monthly(self) -> str | None:
        url = self.exchange.monthly_url
        return url and url(self.base, self.native, self.dataset, self.month)

    def checksum(self, url: str) -> str | None:
        """The checksum text of the file at ``url``; None when it is not published."""
        assert self.exchange.checksum_url is not None
        try:
            return http.get_text(self.session, self.exchange.checksum_url(url))
        except http.NotFoundError:
            return None

    def find(self, url: str, report: FetchReport) -> _Found | None:
        """The file at ``url`` if published (downloaded now when there are no checksums)."""
        if self.exchange.checksum_url is not None:
            text = self.checksum(url)
            return None if text is None else _Found(url, text)
        assert self.workdir is not None
        path = self.workdir / url.rsplit("/", 1)[1]
        try:
            got = http.download(self.session, url, path, progress=self.options.progress)
        except http.NotFoundError:
            return None
        report.files.append(FileRecord(path.name, url, got.sha256, got.size, False))
        return _Found(url, None, path)

    def locate(self, report: FetchReport) -> list[_Found]:
        """The files to read, in date order; fills the report's coverage, end and completeness."""
        finished, days, dates = self.plan()
        monthly = self.monthly() if finished else None
        if monthly is not None and (found := self.find(monthly, report)) is not None:
            report.days_covered = days
            report.end = utc_midnight(days[-1] + timedelta(days=1))
            report.complete = True
            return [found]
        present = {d: f for d in dates if (f := self.find(self.daily(d), report)) is not None}
        self.cover(finished, days, dates, set(present), report)
        return [present[d] for d in sorted(present)]

    def cover(
        self,
        finished: bool,
        days: list[date],
        dates: list[date],
        present: set[date],
        report: FetchReport,
    ) -> None:
        """Classify the absent files (raising when the month cannot be read); fill the report."""
        not_yet, missing = classify_absent(dates, present, self.today, self.what)
        files = "no monthly file and daily files" if self.monthly() and finished else "files"
        if finished and not_yet:
            listed = ", ".join(map(str, not_yet))
            raise NotPublishedError(
                f"{self.what} {self.month:%Y-%m}: {files} not published yet for {listed}"
            )
        if (missing and not self.options.allow_missing_days) or not present:
            listed = ", ".join(map(str, missing))
            raise MissingFileError(f"{self.what} {self.month:%Y-%m}: {files} missing for {listed}")
        ready = [d for d in days if not set(self.exchange.file_dates(d)) & set(not_yet)]
        if not ready:
            raise NotPublishedError(
                f"{self.what} {self.month:%Y-%m}: no complete UTC day published yet"
            )
        report.days_covered = [d for d in ready if set(self.exchange.file_dates(d)) <= present]
        report.days_missing = missing
        report.end = utc_midnight(ready[-1] + timedelta(days=1))
        report.complete = finished and not missing

    def download(self, found: _Found, report: FetchReport) -> Path:
        """The local copy of ``found``: downloaded with its checksum verified, if not yet."""
        if found.path is not None:
            return found.path
        assert self.workdir is not None
        assert self.exchange.checksum_url is not None
        path = self.workdir / found.url.rsplit("/", 1)[1]
        try:
            got = http.download_verified(
                self.session,
                found.url,
                path,
                self.exchange.checksum_url(found.url),
                found.checksum,
                progress=self.options.progress,
            )
        except http.NotFoundError as exc:
            raise MissingFileError(
                f"{found.url} is gone although its CHECKSUM is published"
            ) from exc
        report.files.append(FileRecord(path.name, found.url, got.sha256, got.size, True))
        return path

    def stream(self, found: _Found, sink: TradeSink) -> None:
        """Stream the trades of one file into ``sink`` (after its whole-file check), delete it."""
        path = self.download(found, sink.report)
        fmt = self.exchange.csv_format(self.symbol, self.options)
        check = self.exchange.file_check(self.options)
        kind = self.exchange.compression
        sink.next_file()
        for trades in read_trades(path, fmt, kind=kind, progress=self.options.progress):
            if check is not None:
                check.add(trades)
            sink.add(trades)
        if check is not None:
            check.check(path.name)
        path.unlink()

    def version(self) -> str | None:
        """A version of the month's files (checksums, else HEAD answers); None if none is out."""
        try:
            finished, _, dates = self.plan()
        except NotPublishedError:
            return None
        if self.exchange.checksum_url is None:
            return self.head_version(dates)
        monthly = self.monthly() if finished else None
        if monthly is not None and (text := self.checksum(monthly)) is not None:
            return "monthly:" + text.split()[0]
        sums = [f"{d}:{text.split()[0]}" for d in dates if (text := self.checksum(self.daily(d)))]
        return _digest("daily", sums)

    def head_version(self, dates: list[date]) -> str | None:
        """A version from HEAD answers (ETag, Content-Length, Last-Modified) of the daily files."""
        parts = []
        for day in dates:
            try:
                headers = http.head(self.session, self.daily(day)).headers
            except http.NotFoundError:
                continue
            fields = (headers.get(k, "") for k in ("ETag", "Content-Length", "Last-Modified"))
            parts.append(f"{day}:" + "|".join(fields))
        return _digest(self.exchange.version_tag, parts)


def _digest(tag: str, parts: list[str]) -> str | None:
    if not parts:
        return None
    return f"{tag}:{len(parts)}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def ingest(
    exchange: Exchange, symbol: str, month: date, dest: Path, options: FetchOptions
) -> FetchReport:
    """Write the trades of one UTC month (``month`` = its first day) of an Atlas ``symbol`` to
    the Parquet file ``dest``, streaming the files one after the other; the report."""
    report = FetchReport(exchange.name, str(symbol), month)
    with tempfile.TemporaryDirectory(prefix=f"{exchange.name}-") as tmp:
        fetch = _MonthFetch(exchange, symbol, month, options, Path(tmp))
        exchange.csv_format(symbol, fetch.options)  # bad options fail before any download
        files = fetch.locate(report)
        start, progress = utc_midnight(month), options.progress
        string_ids = exchange.trade_ids == "string"
        with TradeSink(
            dest,
            report,
            start,
            report.end,
            progress=progress,
            workdir=fetch.workdir,
            string_ids=string_ids,
            newest_first=exchange.file_order == "newest_first",
        ) as sink:
            for found in files:
                fetch.stream(found, sink)
            sink.commit()
    return report


def probe(exchange: Exchange, symbol: str, month: date, options: FetchOptions) -> str | None:
    """None when the month is not published yet, else a version that changes with its files."""
    return _MonthFetch(exchange, symbol, month, options).version()
