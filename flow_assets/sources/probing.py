"""Bounded probing of the archives for a sensor tick: which finished months are out, which version.

Each archive's description names its mechanism (``Exchange.probe``); the sensor never looks at
which venue it probes. Three mechanisms:

* **An S3 listing** (:class:`S3Listing`: Binance USD-M and COIN-M, whose archive is an S3
  bucket). One S3 ListObjectsV2 request (``?list-type=2&prefix=...&start-after=...``,
  paginated by ``continuation-token``) per instrument lists its monthly files from the first
  month wanted, with their ETags and sizes; only when a month has no monthly file is its daily
  folder listed too (one more request). A month's version is the digest of the listing entries
  (ETag, size) of its files' CHECKSUMs (the monthly one when out, else the daily ones; the
  files themselves for an exchange without checksums): a reissued file has a new CHECKSUM, so
  a new ETag (the MD5 of a single-part object), as the CHECKSUM text made the version before.
  The zip itself is verified against its CHECKSUM when it is read.
* **An HTML index** (:class:`HtmlIndex`: Bybit, whose symbol folder is an nginx-style index
  printing each file's date and exact size). One GET of the folder per instrument; a month's
  version is the digest of its files' names, sizes and dates; a month with an absent file
  younger than ``PUBLICATION_GRACE_DAYS`` is not out yet. A rewritten file changes its date
  (to the minute) and almost surely its size, so a revision is seen at the next visit. The
  index carries what a version needs, so no request per day file (the frontier would cost
  about one HEAD a day per instrument plus its re-checks, and notice a revision only within
  42 visits). The format is nginx's ``autoindex`` as public readers of Bybit's archive parse it
  (not checked against the live site); a page naming a file without its date and size is
  refused naming the file, so a change of format fails that instrument's probe loudly.
* **Day files without a listing** (:class:`DayFrontier`: OKX). Per instrument, a
  :class:`DayFiles` state remembers the signature (HEAD: ETag, Content-Length, Last-Modified)
  of each file of the window (the files of the lookback months and of the running month). A
  visit HEADs only the files after the last one decided (the *frontier*: about one a day once
  known, as the files come out; at most ``FRONTIER_STEPS``, so a first visit's walk is spread
  over visits) and re-checks ``RECHECKS`` older files in rotation. A month is out once the
  frontier passed its last file (an absent file counts as missing once it is
  ``PUBLICATION_GRACE_DAYS`` old, as :func:`~.report.classify_absent` decides; the frontier
  waits at a younger one); a revised file is noticed within ``ceil(window files / RECHECKS)``
  visits of its instrument (3 finished months and the running one: at most 124 files, 42
  visits, under two days of hourly ticks).

Every request goes through one :class:`Net` per tick: a deadline, a request cap, short
timeouts, no HTTP retries (the next tick is the retry), a small thread pool, and a host that
fails before it answered anything (or ``host_failures`` times in a row) is not asked again
during the tick (named in :meth:`Net.unreachable`). :func:`visit_round` visits instruments
round-robin from a position, so a tick cut short by its budget resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

import requests

from flow_assets.sources import http
from flow_assets.sources.archive import Exchange
from flow_assets.sources.errors import SourceError
from flow_assets.sources.report import PUBLICATION_GRACE_DAYS, days_between, next_month

RECHECKS = 3  # older day files re-checked per instrument visit (day-file exchanges)
FRONTIER_STEPS = 16  # new day files HEADed at most per instrument visit (a first visit walks
# its window over several visits, so a round over every instrument stays cheap)
SIGNATURE_CHARS = 8  # hex characters kept of a day file's HEAD signature
VERSION_CHARS = 20  # hex characters of a month's version digest (80 bits)
T = TypeVar("T")


class ProbeError(SourceError):
    """A probe request failed (unreachable host, timeout, bad status or bad listing)."""


class ProbeCutError(Exception):
    """The tick's budget (time or requests) is spent, or the host is given up for this tick."""


@dataclass(frozen=True)
class ProbeLimits:
    """What one tick may spend: ``seconds`` before no new request starts, ``requests`` in all,
    ``workers`` at once, per request ``timeout`` (connect, read) seconds. A host is not asked
    again during the tick once it failed before answering anything, or failed
    ``host_failures`` times in a row."""

    seconds: float = 20.0
    requests: int = 4000
    workers: int = 12
    timeout: tuple[float, float] = (2.0, 5.0)
    host_failures: int = 4


class Net:
    """The HTTP side of one tick: thread-local sessions, the budget, failures per host."""

    def __init__(self, limits: ProbeLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.sent = 0
        self.cut: str | None = None  # why the tick stopped early: "time" or "requests"
        self._failures: dict[str, int] = {}  # per host, failures since its last answer
        self._answered: set[str] = set()  # hosts that answered (any status) during the tick
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = http.make_session(retries=0, timeout=self.limits.timeout)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _given_up(self, host: str) -> bool:
        """A host that could not be reached before it ever answered during the tick, or that
        failed ``host_failures`` times in a row (unreachable, or answering errors)."""
        failures = self._failures.get(host, 0)
        limit = self.limits.host_failures if host in self._answered else 1
        return failures >= limit

    def _take(self, host: str) -> None:
        """Count one request against the budget; :class:`ProbeCutError` when none is left."""
        with self._lock:
            if self._given_up(host):
                raise ProbeCutError(f"{host} unreachable")
            if time.monotonic() >= self.deadline:
                self.cut = self.cut or "time"
            elif self.sent >= self.limits.requests:
                self.cut = self.cut or "requests"
            if self.cut:
                raise ProbeCutError(self.cut)
            self.sent += 1

    def _failed(self, host: str, url: str, error: str) -> ProbeError:
        with self._lock:
            self._failures[host] = self._failures.get(host, 0) + 1
            self._errors[host] = f"{url}: {error}"
        return ProbeError(f"{url}: {error}")

    def request(self, method: str, url: str, params: dict[str, str] | None = None) -> Any:
        """The response (200) to one request, or None on 404; :class:`ProbeError` otherwise."""
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        self._take(host)
        try:
            response = self._session().request(method, url, params=params)
        except requests.RequestException as exc:
            raise self._failed(host, url, _short(exc)) from exc
        with self._lock:
            self._answered.add(host)
        if response.status_code not in (200, 404):
            raise self._failed(host, url, f"HTTP {response.status_code}")
        with self._lock:
            self._failures[host] = 0
        return response if response.status_code == 200 else None

    @property
    def exhausted(self) -> bool:
        """Whether no request may start any more (deadline passed or cap reached)."""
        with self._lock:
            if self.cut is None and time.monotonic() >= self.deadline:
                self.cut = "time"
            return self.cut is not None

    def unreachable(self) -> dict[str, str]:
        """The hosts given up during the tick, with their last error."""
        return {host: self._errors[host] for host in self._failures if self._given_up(host)}

    def close(self) -> None:
        for session in self._sessions:
            session.close()


def _short(error: requests.RequestException) -> str:
    """What went wrong, without urllib3's wrapping: e.g. ``ConnectionError: [Errno 111]
    Connection refused`` or ``ConnectionError: Read timed out. (read timeout=5.0)``."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    text = str(reason or error).split("): ", 1)[-1]
    return f"{type(error).__name__}: {text}"


def visit_round(
    net: Net,
    keys: list[str],
    start: str | None,
    visit: Callable[[str], T],
) -> tuple[dict[str, T | Exception], str | None]:
    """Visit ``keys`` (sorted) round-robin from the first key ``>= start``, ``net.limits.workers``
    at a time, until the budget is spent; (the result or error of each key visited to the end,
    the key to start from next time: the first one not visited, None after a full round). A
    visit that raises is that key's error, never the round's."""
    first = next((i for i, key in enumerate(keys) if start is not None and key >= start), 0)
    order = keys[first:] + keys[:first]

    def one(key: str) -> T | Exception | ProbeCutError:
        if net.exhausted:
            return ProbeCutError("budget")
        try:
            return visit(key)
        except (ProbeCutError, ProbeError) as error:
            return error
        except Exception as error:  # one instrument's bad data must not fail every other's
            return ProbeError(f"{key}: {type(error).__name__}: {error}")

    with ThreadPoolExecutor(max_workers=net.limits.workers) as pool:
        answers = list(pool.map(one, order))
    done = {k: a for k, a in zip(order, answers, strict=True) if not isinstance(a, ProbeCutError)}
    left = next((key for key in order if key not in done), None)
    return done, left


# --------------------------------------------------------------------------- listings (S3)


@dataclass(frozen=True)
class Listed:
    """One object of a listing: its key, ETag (quotes kept), size and last modification."""

    key: str
    etag: str
    size: int
    last_modified: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ElementTree.Element, name: str) -> str | None:
    return next((c.text or "" for c in element if _local(c.tag) == name), None)


def parse_listing(text: str, url: str) -> tuple[list[Listed], str | None]:
    """The objects of one ListObjectsV2 answer (``ListBucketResult``) and the continuation
    token of the next page (None when ``IsTruncated`` is false)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ProbeError(f"{url}: not an S3 listing ({exc}): {text[:200]!r}") from exc
    if _local(root.tag) != "ListBucketResult":
        raise ProbeError(f"{url}: not an S3 listing (root {_local(root.tag)}): {text[:200]!r}")
    listed = [
        Listed(
            _child(item, "Key") or "",
            _child(item, "ETag") or "",
            int(_child(item, "Size") or 0),
            _child(item, "LastModified") or "",
        )
        for item in root
        if _local(item.tag) == "Contents"
    ]
    if _child(root, "IsTruncated") != "true":
        return listed, None
    token = _child(root, "NextContinuationToken")
    if not token:
        raise ProbeError(f"{url}: a truncated listing without NextContinuationToken")
    return listed, token


def list_objects(
    net: Net, listing_url: str, prefix: str, start_after: str = "", max_keys: int | None = None
) -> list[Listed]:
    """Every object under ``prefix`` whose key sorts after ``start_after`` (all pages)."""
    url = listing_url.rstrip("/")  # the bucket itself, as data.binance.vision's index asks it
    params = {"list-type": "2", "prefix": prefix}
    if start_after:
        params["start-after"] = start_after
    if max_keys:
        params["max-keys"] = str(max_keys)
    objects: list[Listed] = []
    while True:
        response = net.request("GET", url, params)
        if response is None:
            raise ProbeError(f"{url}: 404 for the listing of {prefix}")
        page, token = parse_listing(response.text, f"{url}?prefix={prefix}")
        objects += page
        if token is None:
            return objects
        params = {k: v for k, v in params.items() if k != "start-after"}
        params["continuation-token"] = token


# --------------------------------------------------------------------------- month versions


def digest(tag: str, parts: list[str]) -> str | None:
    """A version over ``parts`` (None when there are none)."""
    if not parts:
        return None
    return (
        f"{tag}:{len(parts)}:"
        + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:VERSION_CHARS]
    )


def month_dates(exchange: Exchange, month: date) -> list[date]:
    """The dates of the day files a finished ``month`` needs."""
    days = days_between(month, next_month(month))
    return sorted({d for day in days for d in exchange.file_dates(day)})


@dataclass(frozen=True)
class Target:
    """One instrument to probe: its exchange, native id and dataset, and the finished months
    (first days, ascending, contiguous) wanted."""

    exchange: Exchange
    native: str
    dataset: str
    months: list[date]

    def key(self, url: Callable[..., str], period: date) -> str:
        """The archive key (URL path without the leading ``/``) of one file."""
        return url("", self.native, self.dataset, period).lstrip("/")

    def checksum_key(self, key: str) -> str:
        """The key whose presence says a file is out: its checksum file, else itself."""
        if self.exchange.checksum_url is None:
            return key
        return self.exchange.checksum_url("/" + key).lstrip("/")


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


def _entries(listed: dict[str, Listed], *keys: str) -> list[str]:
    """``name:etag:size`` of each of ``keys`` that is listed."""
    return [
        f"{k.rsplit('/', 1)[-1]}:{listed[k].etag}:{listed[k].size}" for k in keys if k in listed
    ]


def probe_listed(net: Net, listing_url: str, target: Target) -> dict[str, str]:
    """The version of each month of ``target`` that is out, from its folders' listings."""
    exchange, versions = target.exchange, {}
    daily_months = list(target.months)
    if exchange.monthly_url is not None:
        first = target.key(exchange.monthly_url, target.months[0])
        found = {o.key: o for o in list_objects(net, listing_url, _folder(first), first[:-1])}
        daily_months = []
        for month in target.months:
            key = target.key(exchange.monthly_url, month)
            if target.checksum_key(key) in found:
                parts = _entries(found, target.checksum_key(key))
                versions[month.isoformat()] = digest("list:monthly", parts)
            else:
                daily_months.append(month)
    if daily_months:
        versions |= _probe_daily(net, listing_url, target, daily_months)
    return {m: v for m, v in versions.items() if v is not None}


def _probe_daily(
    net: Net, listing_url: str, target: Target, months: list[date]
) -> dict[str, str | None]:
    """The versions of ``months`` from the listing of the daily folder."""
    daily = target.exchange.daily_url
    first = target.key(daily, month_dates(target.exchange, months[0])[0])
    found = {o.key: o for o in list_objects(net, listing_url, _folder(first), first[:-1])}
    versions: dict[str, str | None] = {}
    for month in months:
        parts = []
        for day in month_dates(target.exchange, month):
            key = target.key(daily, day)
            if target.checksum_key(key) in found:
                parts += _entries(found, target.checksum_key(key))
        versions[month.isoformat()] = digest("list:daily", parts)
    return versions


# --------------------------------------------------------------------------- day files (no listing)


@dataclass
class DayFiles:
    """What is known of an instrument's day files: ``sigs[i]`` is the HEAD signature of the
    file dated ``first + i`` days, "" when it is absent (missing); the files after the last
    one decided are not known yet. ``turn`` is the next file re-checked for a revision."""

    first: str
    sigs: list[str] = field(default_factory=list)
    turn: int = 0

    def saved(self) -> dict[str, Any]:
        """The JSON form: each signature after a comma, in one string ("" when none)."""
        return {
            "first": self.first,
            "sigs": "".join("," + sig for sig in self.sigs),
            "turn": self.turn,
        }

    @classmethod
    def load(cls, saved: dict[str, Any]) -> DayFiles:
        """Read back the JSON form of :meth:`saved`."""
        sigs = saved["sigs"][1:].split(",") if saved["sigs"] else []
        return cls(saved["first"], sigs, saved["turn"])

    def moved_to(self, first: date, size: int) -> DayFiles:
        """The same knowledge over the window of ``size`` files from ``first``."""
        shift = (first - date.fromisoformat(self.first)).days
        if shift < 0:
            return DayFiles(first.isoformat())
        sigs = self.sigs[shift:][:size]
        return DayFiles(first.isoformat(), sigs, max(self.turn - shift, 0))


def window(target: Target, today: date) -> list[date]:
    """The dates of the files the months of ``target`` need, and those of the month after
    them when it has begun (the running month's files are followed as they come out, so a
    month's end brings no burst of requests), ascending and contiguous."""
    months = list(target.months)
    after = next_month(months[-1])
    if after <= today:
        months.append(after)
    dates = [d for m in months for d in month_dates(target.exchange, m)]
    return days_between(dates[0], dates[-1] + timedelta(days=1))


def signature(net: Net, url: str) -> str:
    """A short signature of a file from a HEAD answer; "" when it is absent (404)."""
    response = net.request("HEAD", url)
    if response is None:
        return ""
    headers = response.headers
    text = "|".join(headers.get(k, "") for k in ("ETag", "Content-Length", "Last-Modified"))
    return hashlib.sha256(text.encode()).hexdigest()[:SIGNATURE_CHARS]


def _advance(
    net: Net, base: str, target: Target, dates: list[date], state: DayFiles, today: date
) -> None:
    """HEAD the files after the last decided one, in order, until one is not out yet (at most
    ``FRONTIER_STEPS``)."""
    recent = today - timedelta(days=PUBLICATION_GRACE_DAYS)
    stop = min(len(dates), len(state.sigs) + FRONTIER_STEPS)
    while len(state.sigs) < stop:
        day = dates[len(state.sigs)]
        sig = signature(net, target.exchange.daily_url(base, target.native, target.dataset, day))
        if not sig and day >= recent:
            return  # not published yet: the frontier waits here
        state.sigs.append(sig)


def _recheck(net: Net, base: str, target: Target, dates: list[date], state: DayFiles) -> None:
    """Re-HEAD ``RECHECKS`` decided files in rotation (a revision changes a signature)."""
    for _ in range(min(RECHECKS, len(state.sigs))):
        index = state.turn % len(state.sigs)
        url = target.exchange.daily_url(base, target.native, target.dataset, dates[index])
        state.sigs[index] = signature(net, url)
        state.turn = index + 1


def day_versions(target: Target, dates: list[date], state: DayFiles) -> dict[str, str]:
    """The version of each month whose files are all decided and one at least is out."""
    versions = {}
    for month in target.months:
        needed = month_dates(target.exchange, month)
        last = (needed[-1] - dates[0]).days
        if last >= len(state.sigs):
            break  # the frontier has not passed this month yet (nor the later ones)
        sigs = [(d, state.sigs[(d - dates[0]).days]) for d in needed]
        version = digest("day", [f"{d}:{sig}" for d, sig in sigs if sig])
        if version is not None:
            versions[month.isoformat()] = version
    return versions


def probe_day_files(
    net: Net, base: str, target: Target, states: dict[str, DayFiles], key: str, today: date
) -> dict[str, str]:
    """The versions of the months of ``target`` that are out; ``states[key]`` is what is
    known of its day files, updated as requests answer (also when the budget cuts the visit
    short, so the next visit goes on from there)."""
    dates = window(target, today)
    state = states.get(key)
    if state is None or state.first != dates[0].isoformat():
        state = state.moved_to(dates[0], len(dates)) if state else DayFiles(dates[0].isoformat())
        states[key] = state
    _advance(net, base, target, dates, state, today)
    _recheck(net, base, target, dates, state)
    return day_versions(target, dates, state)


# --------------------------------------------------------------------------- HTML index


@dataclass(frozen=True)
class Indexed:
    """One file of a folder's HTML index: its last modification as printed and its size."""

    modified: str
    size: int


# nginx's autoindex: ``<a href="NAME">NAME</a>   01-Oct-2019 08:31   123456`` per file
_AUTOINDEX_ROW = re.compile(
    r'<a href="(?P<href>[^"?#]+)">[^<]*</a>[ \t]+'
    r"(?P<modified>\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}(?::\d{2})?)[ \t]+(?P<size>\d+|-)"
)


def parse_autoindex(text: str, url: str) -> dict[str, Indexed]:
    """The files of an nginx-style folder index (``autoindex`` with exact sizes) by name; a
    page that is not such an index, or lists a file without its date and size, is refused."""
    if "<a " not in text:
        raise ProbeError(f"{url}: not an HTML index: {text[:200]!r}")
    files = {
        unquote(m["href"]): Indexed(m["modified"], int(m["size"]))
        for m in _AUTOINDEX_ROW.finditer(text)
        if m["size"] != "-"
    }
    linked = {unquote(h) for h in re.findall(r'<a href="([^"?#]+)"', text)}
    bare = sorted(h for h in linked - set(files) if not h.endswith("/"))
    if bare:
        raise ProbeError(f"{url}: the index gives no date and size for {bare[0]}")
    return files


def probe_indexed(
    net: Net,
    base: str,
    target: Target,
    today: date,
    parse: Callable[[str, str], dict[str, Indexed]],
) -> dict[str, str]:
    """The version of each month of ``target`` that is out, from one GET of the HTML index of
    its day files' folder: the digest of each present file's name, size and date. A month
    with an absent file younger than ``PUBLICATION_GRACE_DAYS`` is not out yet (an older
    absent file is missing, as the fetch decides)."""
    daily = target.exchange.daily_url
    folder = _folder(target.key(daily, target.months[0]))
    url = f"{base}/{folder}"
    response = net.request("GET", url)
    if response is None:
        return {}  # no folder: nothing published for the instrument yet
    files = parse(response.text, url)
    recent = today - timedelta(days=PUBLICATION_GRACE_DAYS)
    versions = {}
    for month in target.months:
        parts, waiting = [], False
        for day in month_dates(target.exchange, month):
            name = target.key(daily, day).rsplit("/", 1)[-1]
            found = files.get(name)
            if found is not None:
                parts.append(f"{name}:{found.size}:{found.modified}")
            waiting = waiting or (found is None and day >= recent)
        version = None if waiting else digest("index", parts)
        if version is not None:
            versions[month.isoformat()] = version
    return versions


# --------------------------------------------------------------------------- the mechanisms


@dataclass(frozen=True)
class Site:
    """Where one venue's archive is, as configured (None: the description's default):
    ``base`` its root, ``listing`` where it answers listings."""

    base: str | None = None
    listing: str | None = None


@dataclass(frozen=True)
class S3Listing:
    """An archive that is an S3 bucket: months versioned from ListObjectsV2 listings of its
    folders (:func:`probe_listed`). Listings go to the configured ``Site.listing``, else to a
    configured archive root that is not the public one (a mirror lists what it serves), else
    to ``default_url``, the bucket's public endpoint; ``url_env`` names the variable
    configuring ``Site.listing``."""

    default_url: str
    url_env: str

    def url(self, exchange: Exchange, site: Site) -> str:
        """Where the listings go."""
        if site.listing:
            return site.listing.rstrip("/")
        base = exchange.base_url(site.base)
        return base if base != exchange.default_url.rstrip("/") else self.default_url

    def versions(
        self,
        net: Net,
        site: Site,
        target: Target,
        states: dict[str, DayFiles],
        key: str,
        today: date,
    ) -> dict[str, str]:
        """The versions of the months of ``target`` that are out (one or two listings)."""
        return probe_listed(net, self.url(target.exchange, site), target)


@dataclass(frozen=True)
class HtmlIndex:
    """An archive whose day-file folder is an HTML index giving each file's size and date
    (``parse``, nginx's autoindex by default): one GET per instrument (:func:`probe_indexed`)."""

    parse: Callable[[str, str], dict[str, Indexed]] = parse_autoindex
    url_env: str | None = None

    def versions(
        self,
        net: Net,
        site: Site,
        target: Target,
        states: dict[str, DayFiles],
        key: str,
        today: date,
    ) -> dict[str, str]:
        """The versions of the months of ``target`` that are out (one request)."""
        base = target.exchange.base_url(site.base)
        return probe_indexed(net, base, target, today, self.parse)


@dataclass(frozen=True)
class DayFrontier:
    """An archive of day files with no listing: each file's HEAD signature kept in
    ``states``, the files after the last one seen HEADed, older ones re-checked in rotation
    (:func:`probe_day_files`)."""

    url_env: str | None = None

    def versions(
        self,
        net: Net,
        site: Site,
        target: Target,
        states: dict[str, DayFiles],
        key: str,
        today: date,
    ) -> dict[str, str]:
        """The versions of the months of ``target`` whose day files are all decided."""
        base = target.exchange.base_url(site.base)
        return probe_day_files(net, base, target, states, key, today)


DAY_FILES = DayFrontier()  # what probes an archive whose description names no mechanism


def probe_target(
    net: Net,
    site: Site,
    target: Target,
    states: dict[str, DayFiles],
    key: str,
    today: date,
) -> dict[str, str]:
    """The versions of the months of ``target`` that are out, by the mechanism its exchange's
    description names (``Exchange.probe``; HEADs of its day files when none); what is learnt
    of day files is kept in ``states[key]``."""
    if not target.months:
        return {}
    probe = target.exchange.probe or DAY_FILES
    return probe.versions(net, site, target, states, key, today)
