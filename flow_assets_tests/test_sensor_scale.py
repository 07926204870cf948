"""archive_sensor at universe size: 1,040 tracked instruments (750 Binance USD-M, 250 OKX, and 20
each of Binance COIN-M and Bybit, so every probe mechanism is in one round; start months spread
over 2019-09 .. last month) against a loopback archive, each tick evaluated through Dagster on a
SQLite instance, every request counted by the server.

Each tick ends inside its budget whatever the archive answers (nothing, some months, nothing at
all, silence), the cursor moves on when a tick is cut short, a round over every instrument
completes within a few ticks, and every published month is requested."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import dagster as dg
import pytest

from flow_assets.instruments import InstrumentEntry
from flow_assets.orchestration.automation import SENSOR_LIMITS
from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.sources.mirror import ArchiveServer, sample_trades
from flow_assets.sources.probing import FRONTIER_STEPS, RECHECKS
from flow_assets.symbology import to_native
from flow_assets.venues import NAMES, VENUES
from flow_assets.venues.binance_futures import write_binance
from flow_assets.venues.okx_perps import UTC_OFFSET, write_okx

N_BINANCE, N_OKX = 750, 250
N_CM, N_BYBIT = 20, 20  # a few of each venue added since: every mechanism in one round
TODAY = datetime.now(UTC).date()
THIS = TODAY.replace(day=1)
LAST = (THIS - timedelta(days=1)).replace(day=1)  # the last finished month
FIRST = date(2019, 9, 1)
BUDGET_SECONDS = 30  # what a tick must stay under (Dagster's own timeout is 60 s)


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _start(i: int, count: int) -> date:
    """Start months spread evenly from 2019-09 to the last finished month."""
    months = (LAST.year - FIRST.year) * 12 + LAST.month - FIRST.month
    step = i * months // max(count - 1, 1)
    year, month = divmod(FIRST.month - 1 + step, 12)
    return date(FIRST.year + year, month + 1, 1)


def _venue(exchange: str, symbol: str, letter: str, count: int) -> list[InstrumentEntry]:
    """``count`` instruments of ``exchange``: ``symbol`` with the bases ``{letter}0000``..."""
    bases = (f"{letter}{i:04d}" for i in range(count))
    return [
        InstrumentEntry(exchange, symbol.format(base=b), _start(i, count))
        for i, b in enumerate(bases)
    ]


def _entries() -> list[InstrumentEntry]:
    return (
        _venue("binance-futures", "perpetual-{base}-USDT:USDT", "B", N_BINANCE)
        + _venue("okx-perps", "perpetual-{base}-USDT:USDT", "O", N_OKX)
        + _venue("binance-futures-cm", "perpetual-{base}-USD:{base}", "C", N_CM)
        + _venue("bybit-perps", "perpetual-{base}-USDT:USDT", "Y", N_BYBIT)
    )


def _of(exchange: str) -> list[InstrumentEntry]:
    return [e for e in _entries() if e.exchange == exchange]


class Universe:
    """The definitions, a SQLite instance with the instruments registered, and the sensor."""

    def __init__(self, url: str, store: Path, instance: dg.DagsterInstance) -> None:
        self.resources = {"archives": ArchiveSources(urls=dict.fromkeys(NAMES, url))}
        self.resources["store"] = FlowStore(url=str(store))
        self.defs = build_definitions(_entries(), self.resources)
        self.instance = instance
        run_instruments_sensor(self.defs, instance)
        self.cursor: str | None = None

    def point_at(self, url: str) -> None:
        self.resources["archives"] = ArchiveSources(urls=dict.fromkeys(NAMES, url))

    def tick(self) -> tuple[dg.SensorResult, float]:
        sensor = self.defs.resolve_sensor_def("archive_sensor")
        started = time.monotonic()
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = sensor(context)
        elapsed = time.monotonic() - started
        assert result.cursor is not None, "the cursor is returned on every tick"
        self.cursor = result.cursor
        return result, elapsed

    @property
    def state(self) -> dict:
        return json.loads(self.cursor or "{}")


@pytest.fixture
def universe(
    mirror_root: Path, archive_server: ArchiveServer, tmp_path: Path
) -> Iterator[Universe]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield Universe(archive_server.url, tmp_path / "store", instance)


def _publish_binance(root: Path, count: int) -> set[str]:
    """The last finished month of the first ``count`` Binance instruments; their keys."""
    keys = set()
    for entry in _of("binance-futures")[:count]:
        trades = sample_trades(_utc(LAST), _utc(THIS), 20, seed=len(keys))
        write_binance(trades, root, entry.symbol, monthly=True)
        keys.add(str(partition_key(entry, LAST)))
    return keys


def _one(at: datetime) -> float:
    """The contract value of a synthetic OKX instrument (no catalog here)."""
    return 1.0


def _publish_okx(root: Path, count: int) -> set[str]:
    """Every day file of the last finished month of the last ``count`` OKX instruments; the
    months to be requested first. The first file (a UTC+8 day) also holds the last hours of
    the month before, so that month counts as published too where it is tracked (its other
    files missing: its run will say so), and it comes first."""
    keys = set()
    days = [LAST + timedelta(days=d) for d in range((THIS - LAST).days + 1)]
    before = (LAST - timedelta(days=1)).replace(day=1)
    for entry in _of("okx-perps")[-count:]:
        trades = sample_trades(_utc(LAST), _utc(THIS) - UTC_OFFSET, 20, seed=len(keys))
        write_okx(trades, root, entry.symbol, empty_days=tuple(days), contract_value_at=_one)
        keys.add(str(partition_key(entry, before if entry.covers(before) else LAST)))
    return keys


def _publish_new_venues(root: Path, count: int) -> set[str]:
    """The last finished month of the first ``count`` COIN-M instruments (a monthly zip and
    its CHECKSUM) and of the first ``count`` Bybit ones (a gzip file a day); their keys. The
    sensor only lists and indexes them, so the files' bytes are placeholders."""
    keys = set()
    for name in ("binance-futures-cm", "bybit-perps"):
        archive = VENUES[name].archive
        for entry in _of(name)[:count]:
            native = to_native(entry.exchange, entry.symbol)
            if archive.monthly_url is not None:
                urls = [archive.monthly_url("", native, archive.datasets[0], LAST)]
            else:
                days = [LAST + timedelta(days=d) for d in range((THIS - LAST).days)]
                urls = [archive.daily_url("", native, archive.datasets[0], d) for d in days]
            checksums = [archive.checksum_url(u) for u in urls] if archive.checksum_url else []
            for url in urls + checksums:
                path = root / url.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"placeholder " + url.encode())
            keys.add(str(partition_key(entry, LAST)))
    return keys


def _silent_server() -> socket.socket:
    """A socket on 127.0.0.1 that accepts connections (backlog) and never answers."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    return silent


def _visited(log: list[tuple[str, str, int]]) -> set[str]:
    """The native ids of the instruments the logged requests were about."""
    natives = set()
    for _, path, _ in log:
        if path.startswith("/?"):  # a listing: prefix data/futures/{um|cm}/{period}/aggTrades/X/
            natives.add(parse_qs(path[2:])["prefix"][0].split("/")[5])
        elif path.startswith("/trading/"):  # a Bybit folder's index: /trading/X/
            natives.add(path.split("/")[2])
        else:  # an OKX day file: .../{X}-trades-{day}.zip
            natives.add(path.rsplit("/", 1)[1].split("-trades-")[0])
    return natives


NATIVES = {to_native(e.exchange, e.symbol) for e in _entries()}
# what a round over every instrument costs at most: two listings per Binance instrument (USD-M
# or COIN-M), one index per Bybit instrument, and per OKX instrument its frontier steps and
# re-checks; an instrument is visited again within
ROUND_REQUESTS = 2 * (N_BINANCE + N_CM) + N_BYBIT + (FRONTIER_STEPS + 1 + RECHECKS) * N_OKX
VISIT_TICKS = math.ceil(ROUND_REQUESTS / SENSOR_LIMITS.requests) + 1  # ticks
MAX_TICKS = 12


def test_a_tick_at_1000_instruments_stays_in_budget_whatever_the_archive_answers(
    universe: Universe, archive_server: ArchiveServer, mirror_root: Path
) -> None:
    published = _publish_okx(mirror_root, 10)  # out before the sensor ever looked
    requested: set[str] = set()
    figures: list[tuple[object, ...]] = []
    last_visit = dict.fromkeys(NATIVES, 0)

    def tick(number: int) -> dg.SensorResult:
        before = len(archive_server.log)
        result, elapsed = universe.tick()
        sent = archive_server.log[before:]
        figures.append((round(elapsed, 1), len(sent)))
        assert elapsed < BUDGET_SECONDS, figures
        assert len(sent) <= SENSOR_LIMITS.requests, figures
        for native in _visited(sent):
            assert number - last_visit[native] <= VISIT_TICKS, (native, figures)
            last_visit[native] = number
        requested.update(r.partition_key for r in result.run_requests)
        return result

    # nothing published but some OKX months: the first ticks are cut short by the request
    # budget (every OKX instrument walks its window first), the cursor moves on each time
    tick(1)
    assert universe.state["next"] is not None, "cut short: the round goes on next tick"
    first_stop = universe.state["next"]
    published |= _publish_binance(mirror_root, 40)  # then months published on Binance
    published |= _publish_new_venues(mirror_root, 5)  # and on COIN-M and Bybit
    number = 1
    while requested != published or min(last_visit.values()) == 0:
        number += 1
        assert number <= MAX_TICKS, (published - requested, figures)
        tick(number)
        if number == 2:
            assert universe.state["next"] != first_stop
    assert requested == published  # each requested once, none requested that is not out
    print(f"ticks (seconds, requests): {figures}; every instrument within {VISIT_TICKS} ticks")

    # the archive unreachable (refused), then silent (accepts connections, never answers)
    work = universe.state["work"]
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    for given, what in ((dead, "refused"), (None, "silent")):
        silent = _silent_server() if given is None else None
        url = given or f"http://127.0.0.1:{silent.getsockname()[1]}"
        universe.point_at(url)
        result, elapsed = universe.tick()
        if silent is not None:
            silent.close()
        message = result.skip_reason.skip_message if result.skip_reason else ""
        assert f"archive unreachable: {url}" in message, (what, message)
        # a probe waits at most its read timeout; the host is given up after a few failures
        assert elapsed < SENSOR_LIMITS.timeout[1] + 5, (what, elapsed)
        assert universe.state["work"].keys() == work.keys()  # nothing learnt is lost
        figures.append((what, round(elapsed, 1)))
    print(f"unreachable ticks: {figures[-2:]}")
