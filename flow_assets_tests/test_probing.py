"""The sensor's bounded probes (:mod:`flow_assets.sources.probing`) against real servers.

* the loopback mirror answers S3 ListObjectsV2 exactly as a real S3 implementation (moto's
  server) does for the same objects, pages and ``start-after`` included;
* Binance: one listing per instrument, a second only for months without a monthly file; a
  reissued file changes its month's version, nothing is downloaded;
* OKX (no listing): a first visit walks at most ``FRONTIER_STEPS`` day files, then a visit costs
  ``1 + RECHECKS`` HEADs; a revised old file is noticed within the stated number of visits; a
  recent absent file holds its month back, an old one is missing;
* the budget: a host that does not answer is given up at once, the request cap cuts a round,
  and the next round starts where it stopped.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import dagster as dg
import pytest

from flow_assets.orchestration.definitions import default_resources
from flow_assets.orchestration.resources import ArchiveSources
from flow_assets.sources.mirror import (
    ArchiveServer,
    Fault,
    autoindex,
    sample_trades,
    utc,
)
from flow_assets.sources.probing import (
    FRONTIER_STEPS,
    RECHECKS,
    DayFiles,
    Indexed,
    Net,
    ProbeCutError,
    ProbeError,
    ProbeLimits,
    S3Listing,
    Site,
    Target,
    list_objects,
    parse_autoindex,
    parse_listing,
    probe_target,
    visit_round,
    window,
)
from flow_assets.venues import VENUES
from flow_assets.venues.binance_futures import BINANCE, write_binance
from flow_assets.venues.okx_perps import OKX
from flow_assets.venues.okx_perps import file_url as okx_file_url
from flow_assets_tests.s3_fixtures import moto_client

JAN, FEB, MAR, APR = (date(2024, m, 1) for m in (1, 2, 3, 4))
BTC = "perpetual-BTC-USDT:USDT"
CM_BTC = "perpetual-BTC-USD:BTC"


def _net(**limits: object) -> Net:
    return Net(ProbeLimits(**limits))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- listings


def test_the_mirror_lists_as_s3_does(mirror_root: Path, s3_server: str) -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 4, 1), 2000)  # trades every day
    files = write_binance(trades, mirror_root, BTC, monthly=True, daily=True)
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    client = moto_client(s3_server)
    client.create_bucket(Bucket=bucket)
    for path in files:
        key = path.relative_to(mirror_root).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    folder = "data/futures/um/daily/aggTrades/BTCUSDT/"
    after = folder + "BTCUSDT-aggTrades-2024-02-27.zi"  # from the file of Feb 27 on
    with ArchiveServer(mirror_root) as mirror:
        ours, net = list_objects(_net(), mirror.url, folder, after, max_keys=7), _net()
        theirs = list_objects(net, f"{s3_server}/{bucket}", folder, after, max_keys=7)
        assert net.sent == math.ceil(len(theirs) / 7)  # paginated: one request a page
    assert [(o.key, o.etag, o.size) for o in ours] == [(o.key, o.etag, o.size) for o in theirs]
    assert ours[0].key == folder + "BTCUSDT-aggTrades-2024-02-27.zip"
    assert len(ours) == 2 * 34  # Feb 27 .. Mar 31: zip + CHECKSUM each


def test_a_listing_that_is_not_one_is_refused() -> None:
    with pytest.raises(ProbeError, match="not an S3 listing"):
        parse_listing("<html>gateway error</html>", "http://x/")
    truncated = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"
    with pytest.raises(ProbeError, match="NextContinuationToken"):
        parse_listing(truncated, "http://x/")


def test_binance_months_are_versioned_from_one_listing(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 4, 1), 90)
    write_binance(trades.filter(trades["exchange_ts"] < utc(2024, 3, 1)), mirror_root, BTC)
    write_binance(trades, mirror_root, BTC, monthly=False, daily=True)  # March: daily files only
    target = Target(BINANCE, "BTCUSDT", "aggTrades", [JAN, FEB, MAR])

    def probe() -> dict[str, str]:
        site = Site(base=archive_server.url)  # a root not the public one: listed there
        return probe_target(_net(), site, target, {}, "BTC", date(2024, 4, 9))

    first = probe()
    assert [v.split(":")[1] for v in first.values()] == ["monthly", "monthly", "daily"]
    assert len(archive_server.log) == 2  # the monthly folder, then the daily one for March
    assert all(path.startswith("/?list-type=2&") for _, path, _ in archive_server.log)
    assert probe() == first
    reissued = trades.filter(trades["exchange_ts"].is_between(utc(2024, 2, 1), utc(2024, 2, 20)))
    write_binance(reissued, mirror_root, BTC)  # February's monthly file alone, shorter
    second = probe()  # its version alone changes
    assert [second[m] == first[m] for m in sorted(first)] == [True, False, True]


def test_coin_m_months_are_versioned_from_listings_under_cm(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    cm = VENUES["binance-futures-cm"]
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 4, 1), 90)
    before_march = trades.filter(trades["exchange_ts"] < utc(2024, 3, 1))
    cm.write_archive(before_march, mirror_root, CM_BTC, monthly=True, daily=False)
    cm.write_archive(trades, mirror_root, CM_BTC, monthly=False, daily=True)  # March: days only
    write_binance(trades, mirror_root, BTC, monthly=True)  # USD-M files on the same bucket
    target = Target(cm.archive, "BTCUSD_PERP", "aggTrades", [JAN, FEB, MAR])

    def probe() -> dict[str, str]:
        site = Site(base=archive_server.url)
        return probe_target(_net(), site, target, {}, "CM", date(2024, 4, 9))

    first = probe()
    assert [v.split(":")[1] for v in first.values()] == ["monthly", "monthly", "daily"]
    prefixes = [parse_qs(path[2:])["prefix"][0] for _, path, _ in archive_server.log]
    assert prefixes == [
        "data/futures/cm/monthly/aggTrades/BTCUSD_PERP/",
        "data/futures/cm/daily/aggTrades/BTCUSD_PERP/",
    ]
    assert probe() == first
    march_20 = trades.filter(
        trades["exchange_ts"].is_between(utc(2024, 3, 20), utc(2024, 3, 20, 12))
    )
    cm.write_archive(march_20, mirror_root, CM_BTC)  # one day of March reissued, shorter
    second = probe()
    assert [second[m] == first[m] for m in sorted(first)] == [True, True, False]


def test_listings_go_where_each_binance_venue_says() -> None:
    envs = {}
    for name in ("binance-futures", "binance-futures-cm"):
        archive = VENUES[name].archive
        assert isinstance(archive.probe, S3Listing)
        envs[name] = archive.listing_env
        public = archive.probe.url(archive, Site())
        assert public == "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
        assert archive.probe.url(archive, Site(base=archive.default_url)) == public
        assert archive.probe.url(archive, Site(base="http://mirror:1/")) == "http://mirror:1"
        listing = Site(base="http://mirror:1", listing="http://lister:2/")
        assert archive.probe.url(archive, listing) == "http://lister:2"
    assert envs == {
        "binance-futures": "FLOW_ASSETS_BINANCE_LISTING_URL",
        "binance-futures-cm": "FLOW_ASSETS_BINANCE_CM_LISTING_URL",
    }
    assert VENUES["okx-perps"].archive.listing_env is None


def test_listing_variables_are_read_in_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOW_ASSETS_BINANCE_CM_LISTING_URL", "http://lister:2")
    monkeypatch.delenv("FLOW_ASSETS_BINANCE_LISTING_URL", raising=False)
    archives = default_resources()["archives"]
    assert isinstance(archives, ArchiveSources)
    assert archives.listing_urls == {"binance-futures-cm": "FLOW_ASSETS_BINANCE_CM_LISTING_URL"}
    with dg.build_resources({"archives": archives}) as built:  # the EnvVar, resolved
        assert built.archives.site("binance-futures-cm").listing == "http://lister:2"
        assert built.archives.site("binance-futures").listing is None


# --------------------------------------------------------------------------- day files (OKX)


def _publish(root: Path, days: list[date], body: bytes = b"zip") -> None:
    for day in days:
        path = root / okx_file_url("", "BTC-USDT-SWAP", day).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


class DayProbe:
    """One OKX instrument probed visit after visit, its requests counted."""

    def __init__(self, server: ArchiveServer, today: date) -> None:
        self.server, self.today, self.states = server, today, {}
        self.target = Target(OKX, "BTC-USDT-SWAP", "aggTrades", [JAN, FEB, MAR])

    def visit(self) -> tuple[dict[str, str], int]:
        before = len(self.server.log)
        site = Site(self.server.url)
        found = probe_target(_net(), site, self.target, self.states, "k", self.today)
        return found, len(self.server.log) - before

    @property
    def state(self) -> DayFiles:
        return self.states["k"]


def test_okx_files_are_walked_once_then_followed_cheaply(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    today = date(2024, 4, 10)
    _publish(mirror_root, [JAN + timedelta(days=d) for d in range((today - JAN).days)])
    probe = DayProbe(archive_server, today)
    dates = window(probe.target, today)
    assert (dates[0], dates[-1]) == (JAN, date(2024, 5, 1))  # the running month's files too
    visits = []
    while len(visits) < 20:
        found, sent = probe.visit()
        visits.append((sorted(found), sent))
        if sent <= 1 + RECHECKS:
            break
    walk = math.ceil((today - JAN).days / FRONTIER_STEPS)
    assert len(visits) == walk + 1
    assert all(sent <= FRONTIER_STEPS + RECHECKS for _, sent in visits)
    assert visits[1][0] == [JAN.isoformat()]  # January is out once the walk passed Feb 1
    assert visits[-1] == ([m.isoformat() for m in (JAN, FEB, MAR)], 1 + RECHECKS)
    assert {method for method, _, _ in archive_server.log} == {"HEAD"}

    # a revised January file is noticed within ceil(files known / RECHECKS) visits
    before = probe.visit()[0]
    _publish(mirror_root, [date(2024, 1, 20)], b"reissued")
    bound = math.ceil(len(probe.state.sigs) / RECHECKS)
    visits = 0
    while (after := probe.visit()[0])[JAN.isoformat()] == before[JAN.isoformat()]:
        visits += 1
        assert visits < bound, f"the revision was not noticed within {bound} visits"
    assert after[FEB.isoformat()] == before[FEB.isoformat()]


def test_a_recent_absent_okx_file_holds_its_month_an_old_one_is_missing(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    today = date(2024, 4, 3)  # the file of Apr 1 (needed by March) is not out yet
    days = [JAN + timedelta(days=d) for d in range((APR - JAN).days)]
    _publish(mirror_root, [d for d in days if d != date(2024, 2, 10)])  # Feb 10 never comes
    probe = DayProbe(archive_server, today)
    for _ in range(8):
        found, _ = probe.visit()
    assert sorted(found) == [JAN.isoformat(), FEB.isoformat()]
    assert found[FEB.isoformat()].startswith("day:29:")  # Feb 1 .. Mar 1 but Feb 10
    _publish(mirror_root, [APR])
    found, _ = probe.visit()
    assert sorted(found) == [JAN.isoformat(), FEB.isoformat(), MAR.isoformat()]


# --------------------------------------------------------------------------- HTML index (Bybit)

NGINX_PAGE = """<html>
<head><title>Index of /trading/BTCUSDT/</title></head>
<body>
<h1>Index of /trading/BTCUSDT/</h1><hr><pre><a href="../">../</a>
<a href="BTCUSDT2019-10-01.csv.gz">BTCUSDT2019-10-01.csv.gz</a>                           02-Oct-2019 05:23            10372381
<a href="BTCUSDT2019-10-02.csv.gz">BTCUSDT2019-10-02.csv.gz</a>                           03-Oct-2019 05:21             9812004
</pre><hr></body>
</html>
"""  # noqa: E501 (nginx's own layout)


def test_an_nginx_index_is_read_and_a_bare_one_refused() -> None:
    files = parse_autoindex(NGINX_PAGE, "http://x/trading/BTCUSDT/")
    assert files == {
        "BTCUSDT2019-10-01.csv.gz": Indexed("02-Oct-2019 05:23", 10372381),
        "BTCUSDT2019-10-02.csv.gz": Indexed("03-Oct-2019 05:21", 9812004),
    }
    bare = '<html><body><pre><a href="BTCUSDT2019-10-01.csv.gz">x</a>\n</pre></body></html>'
    with pytest.raises(ProbeError, match=r"no date and size for BTCUSDT2019-10-01\.csv\.gz"):
        parse_autoindex(bare, "http://x/")
    with pytest.raises(ProbeError, match="not an HTML index"):
        parse_autoindex("<ListBucketResult/>", "http://x/")


class IndexProbe:
    """One Bybit instrument probed by its folder's index, its requests counted."""

    def __init__(self, server: ArchiveServer, today: date) -> None:
        self.server, self.today = server, today
        archive = VENUES["bybit-perps"].archive
        self.target = Target(archive, "BTCUSDT", "trading", [JAN, FEB, MAR])

    def visit(self) -> tuple[dict[str, str], list[str]]:
        before = len(self.server.log)
        found = probe_target(_net(), Site(self.server.url), self.target, {}, "Y", self.today)
        return found, [f"{m} {p}" for m, p, _ in self.server.log[before:]]


def test_bybit_months_are_versioned_from_one_index_get(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    bybit = VENUES["bybit-perps"]
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 4, 1), 2000)  # trades every day
    bybit.write_archive(trades, mirror_root, BTC)
    listed = parse_autoindex(autoindex(mirror_root / "trading/BTCUSDT", "/").decode(), "")
    assert len(listed) == 91  # every day of the quarter, each with its exact size
    assert all(
        f.size == (mirror_root / "trading/BTCUSDT" / n).stat().st_size for n, f in listed.items()
    )
    probe = IndexProbe(archive_server, date(2024, 4, 9))
    first, sent = probe.visit()
    assert sent == ["GET /trading/BTCUSDT/"]  # one request, whatever the number of files
    assert sorted(first) == [m.isoformat() for m in (JAN, FEB, MAR)]
    assert first[JAN.isoformat()].startswith("index:31:")
    assert probe.visit()[0] == first

    feb_10 = mirror_root / "trading/BTCUSDT/BTCUSDT2024-02-10.csv.gz"
    day = trades.filter(trades["exchange_ts"].is_between(utc(2024, 2, 10), utc(2024, 2, 10, 12)))
    bybit.write_archive(day, mirror_root, BTC)  # February 10 rewritten, shorter
    second = probe.visit()[0]
    assert [second[m] == first[m] for m in sorted(first)] == [True, False, True]
    stat = feb_10.stat()
    os.utime(feb_10, (stat.st_atime, stat.st_mtime + 3600))  # same bytes, a later date
    assert probe.visit()[0][FEB.isoformat()] != second[FEB.isoformat()]


def test_a_recent_absent_bybit_file_holds_its_month_an_old_one_is_missing(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    bybit = VENUES["bybit-perps"]
    probe = IndexProbe(archive_server, date(2024, 4, 2))  # files from Mar 30 on not out yet
    assert probe.visit() == ({}, ["GET /trading/BTCUSDT/"])  # no folder yet: nothing out
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 4, 1), 2000)
    feb_10 = trades["exchange_ts"].is_between(utc(2024, 2, 10), utc(2024, 2, 11), closed="left")
    before_mar_30 = trades["exchange_ts"] < utc(2024, 3, 30)
    bybit.write_archive(trades.filter(~feb_10 & before_mar_30), mirror_root, BTC)
    found, _ = probe.visit()
    assert sorted(found) == [JAN.isoformat(), FEB.isoformat()]  # March waits for Mar 30-31
    assert found[FEB.isoformat()].startswith("index:28:")  # Feb 10 missing, the month out
    bybit.write_archive(trades.filter(trades["exchange_ts"] >= utc(2024, 3, 30)), mirror_root, BTC)
    assert sorted(probe.visit()[0]) == [m.isoformat() for m in (JAN, FEB, MAR)]


# --------------------------------------------------------------------------- the budget


def test_a_host_that_does_not_answer_is_given_up_at_once() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    net = _net()
    with pytest.raises(ProbeError, match="ConnectionError"):
        net.request("HEAD", url + "/a.zip")
    with pytest.raises(ProbeCutError):
        net.request("HEAD", url + "/b.zip")
    assert net.sent == 1
    assert list(net.unreachable()) == [url]


def test_a_host_answering_errors_is_given_up_after_a_few(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    archive_server.inject("a.zip", *[Fault(status=503)] * 5)
    net = _net(host_failures=3)
    for _ in range(3):
        with pytest.raises(ProbeError, match="HTTP 503"):
            net.request("HEAD", archive_server.url + "/a.zip")
    with pytest.raises(ProbeCutError):
        net.request("HEAD", archive_server.url + "/a.zip")
    assert net.sent == 3
    assert net.unreachable() == {archive_server.url: archive_server.url + "/a.zip: HTTP 503"}


def test_the_time_budget_stops_new_requests(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        archive_server.inject(key, Fault(status=404, delay=0.1))
    net = _net(seconds=0.35, workers=2)
    started = time.monotonic()
    done, left = visit_round(
        net, keys, None, lambda k: net.request("HEAD", f"{archive_server.url}/{k}")
    )
    assert net.cut == "time"
    assert 1 <= len(done) <= 10  # at most ~0.35 s of 0.1 s requests, two at a time
    assert left == keys[len(done)]
    assert time.monotonic() - started < 2.0  # no request started after the deadline


def test_the_request_cap_cuts_a_round_and_the_next_goes_on(
    mirror_root: Path, archive_server: ArchiveServer
) -> None:
    keys = [f"k{i}" for i in range(10)]
    seen: list[str] = []

    def run(start: str | None) -> str | None:
        net = _net(requests=4, workers=1)

        def visit(key: str) -> None:
            net.request("HEAD", f"{archive_server.url}/{key}")
            seen.append(key)

        done, left = visit_round(net, keys, start, visit)
        assert net.cut == "requests"
        assert list(done) == seen[-4:]
        return left

    assert run(None) == "k4"
    assert run("k4") == "k8"
    assert run("k8") == "k2"  # round-robin: wraps to the first keys
    assert seen == [*keys, "k0", "k1"]
    assert run("k45") == "k9"  # an instrument no longer tracked: from the next one, k5


def test_a_visit_that_raises_is_its_instrument_error_not_the_rounds() -> None:
    def visit(key: str) -> str:
        if key == "b":
            raise ValueError("no contract value")
        return key.upper()

    done, left = visit_round(_net(), ["a", "b", "c"], None, visit)
    assert done["a"] == "A"
    assert done["c"] == "C"
    assert isinstance(done["b"], ProbeError)
    assert "ValueError: no contract value" in str(done["b"])
    assert left is None


@pytest.mark.parametrize("sigs", [[], [""], ["", ""], ["0a1b2c3d", "", "4e5f6a7b"], ["", "ff"]])
def test_day_files_are_saved_and_read_back_whole(sigs: list[str]) -> None:
    files = DayFiles("2024-01-01", sigs, 2)
    assert DayFiles.load(files.saved()) == files
