"""Operations: the archive sensor never loses a month and recomputes a revised month and the
months after it in order; the running month's freshness check; the run-failure alert."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from polars.testing import assert_frame_equal

from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics import flow_bars_all
from flow_assets.orchestration.assets import flow_asset_key
from flow_assets.orchestration.automation import (
    ATTEMPT_TAG,
    REQUEST_TAG,
    TRIGGER_TAG,
    flow_job_name,
    retry_delay,
)
from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.operations import FAILURE_TAG, FRESHNESS_JOB, freshness_check_key
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import AlertWebhook, ArchiveSources, FlowStore
from flow_assets.publish import Staging, flow_file, read_manifest
from flow_assets.sources.mirror import sample_trades
from flow_assets.venues import NAMES
from flow_assets.venues.binance_futures import write_binance

TODAY = datetime.now(UTC).date()
LAST = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)  # the last finished month
BEFORE = (LAST - timedelta(days=1)).replace(day=1)
BTC = InstrumentEntry("binance-futures", "perpetual-BTC-USDT:USDT", BEFORE)
ETH = InstrumentEntry("binance-futures", "perpetual-ETH-USDT:USDT", BEFORE)


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _next(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _month_trades(month: date, seed: int, first_id: int) -> pl.DataFrame:
    return sample_trades(_utc(month), _utc(_next(month)), 60, seed=seed, first_id=first_id)


class Ops:
    """One instrument's archives on a local server, a store, an instance and the sensor."""

    def __init__(self, server_url: str, store: Path, entries=(BTC,), backoff=timedelta(0)):
        self.archives = ArchiveSources(urls={"binance-futures": server_url})
        self.store = FlowStore(url=str(store))
        self.defs = build_definitions(
            list(entries), {"archives": self.archives, "store": self.store}, retry_backoff=backoff
        )
        self.instance = dg.DagsterInstance.ephemeral()
        run_instruments_sensor(self.defs, self.instance)  # the instruments the sensor probes
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def("archive_sensor")
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"archives": self.archives, "store": self.store},
        ) as context:
            result = sensor(context)
        self.cursor = result.cursor
        return result

    def wait_is_over(self, entry: InstrumentEntry) -> None:
        """The clock moved past the retry wait of ``entry``'s failed month."""
        cursor = json.loads(self.cursor)
        cursor["work"][entry.key]["not_before"] = time.time() - 1
        self.cursor = json.dumps(cursor)

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Launch a request as the daemon would: its job, partition and tags."""
        return self.defs.resolve_job_def(request.job_name).execute_in_process(
            partition_key=request.partition_key,
            tags=request.tags,
            instance=self.instance,
            raise_on_error=False,
        )


def _key(month: date, entry: InstrumentEntry = BTC) -> str:
    return str(partition_key(entry, month))


def _only(result: dg.SensorResult) -> dg.RunRequest:
    assert len(result.run_requests) == 1, result.run_requests
    return result.run_requests[0]


def _corrupt(mirror_root: Path, month: date) -> tuple[Path, bytes]:
    path = next(mirror_root.rglob(f"BTCUSDT-aggTrades-{month:%Y-%m}.zip"))
    good = path.read_bytes()
    path.write_bytes(good[:-100] + b"\0" * 100)
    return path, good


def test_a_failed_month_is_requested_again_until_its_run_succeeds(
    mirror_root, archive_server, tmp_path
) -> None:
    entry = InstrumentEntry(BTC.exchange, BTC.symbol, LAST)
    write_binance(_month_trades(LAST, 1, 1), mirror_root, entry.symbol, monthly=True)
    path, good = _corrupt(mirror_root, LAST)
    ops = Ops(archive_server.url, tmp_path / "store", [entry], backoff=timedelta(hours=1))
    first = _only(ops.tick())
    assert first.partition_key == _key(LAST)
    assert (first.tags[TRIGGER_TAG], first.tags[ATTEMPT_TAG]) == ("published", "1")
    queued = ops.tick()  # requested, no run yet: not requested twice
    assert queued.run_requests == []
    assert "waiting for" in queued.skip_reason.skip_message
    assert not ops.run(first).success  # the corrupt archive fails the month
    backing_off = ops.tick()  # failed: next attempt in an hour, not now
    assert backing_off.run_requests == []
    work = json.loads(backing_off.cursor)["work"][entry.key]
    assert work["attempt"] == 2
    assert work["not_before"] - time.time() == pytest.approx(3600, abs=60)
    assert json.loads(backing_off.cursor)["done"] == {}

    ops.wait_is_over(entry)
    second = _only(ops.tick())
    assert second.partition_key == first.partition_key
    assert second.tags[ATTEMPT_TAG] == "2"
    assert second.run_key != first.run_key
    path.write_bytes(good)  # the host serves the good file again
    in_progress = ops.instance.create_run_for_job(
        ops.defs.resolve_job_def(second.job_name),
        tags=second.tags,
        status=dg.DagsterRunStatus.STARTED,
    )
    assert ops.tick().run_requests == []  # a run in progress is not requested again
    ops.instance.report_run_canceled(in_progress)
    assert ops.tick().run_requests == []  # canceled counts as failed: a longer wait now
    work = json.loads(ops.cursor)["work"][entry.key]
    assert work["not_before"] - time.time() == pytest.approx(7200, abs=60)
    ops.wait_is_over(entry)
    third = _only(ops.tick())
    assert third.tags[ATTEMPT_TAG] == "3"
    assert ops.run(third).success
    done = ops.tick()
    assert done.run_requests == []
    assert done.skip_reason.skip_message == "no newly published or revised month"
    assert list(json.loads(done.cursor)["done"]) == [f"{entry.key}|{LAST.isoformat()}"]
    assert ops.tick().run_requests == []


def test_the_retry_backoff_doubles_up_to_a_day() -> None:
    hour = timedelta(hours=1)
    assert [retry_delay(a, hour) for a in (2, 3, 4, 5)] == [hour, 2 * hour, 4 * hour, 8 * hour]
    assert retry_delay(9, hour) == timedelta(days=1)
    assert retry_delay(50, hour) == timedelta(days=1)


def _stale_status(ops: Ops, month: date) -> StaleStatus:
    graph = ops.defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
        instance=ops.instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(ops.instance, graph, loading_context=view)
    return resolver.get_status(flow_asset_key(BTC.exchange, "1h"), _key(month))


def test_a_revised_month_is_recomputed_then_each_later_month_in_order(
    mirror_root, archive_server, tmp_path
) -> None:
    before, last = _month_trades(BEFORE, 2, 1), _month_trades(LAST, 3, 1000)
    write_binance(pl.concat([before, last]), mirror_root, BTC.symbol, monthly=True)
    ops = Ops(archive_server.url, tmp_path / "store")
    first = _only(ops.tick())  # both months are new: the earlier one first, alone
    assert (first.partition_key, first.tags[TRIGGER_TAG]) == (_key(BEFORE), "published")
    assert ops.run(first).success
    second = _only(ops.tick())
    assert (second.partition_key, second.tags[TRIGGER_TAG]) == (_key(LAST), "published")
    assert ops.run(second).success
    assert ops.tick().run_requests == []
    assert _stale_status(ops, LAST) == StaleStatus.FRESH

    revised = before.head(45)  # the exchange reissues the earlier month
    write_binance(pl.concat([revised, last]), mirror_root, BTC.symbol, monthly=True)
    redo = _only(ops.tick())
    assert (redo.partition_key, redo.tags[TRIGGER_TAG]) == (_key(BEFORE), "revised")
    assert ops.tick().run_requests == []  # the later month waits for it
    assert ops.run(redo).success
    # the later month's bars are now stale in Dagster's own view (through the self-dependency)
    assert _stale_status(ops, LAST) == StaleStatus.STALE
    then = _only(ops.tick())
    assert (then.partition_key, then.tags[TRIGGER_TAG]) == (_key(LAST), "stale")
    assert ops.run(then).success
    assert _stale_status(ops, LAST) == StaleStatus.FRESH
    assert ops.tick().run_requests == []

    store = ops.store.open()  # the later month continues the revised month's state
    manifest = read_manifest(store, "flow", BTC.exchange, BTC.symbol, LAST)
    bars = store.read_parquet(manifest.key_of(flow_file("exchange", "1h")))
    long_run = flow_bars_all(
        pl.concat([revised, last]), _utc(BEFORE), _utc(TODAY.replace(day=1)), intervals=("1h",)
    )["1h"]
    assert_frame_equal(bars, long_run.filter(pl.col("time") >= _utc(LAST).replace(tzinfo=None)))


def test_versions_of_the_sensor_before_are_adopted_not_taken_for_revisions(
    mirror_root, archive_server, tmp_path
) -> None:
    """A cursor written when versions were CHECKSUM texts: its done months are not
    recomputed because the probe now reads listings; a later reissue still is a revision."""
    write_binance(_month_trades(LAST, 5, 1), mirror_root, BTC.symbol, monthly=True)
    entry = InstrumentEntry(BTC.exchange, BTC.symbol, LAST)
    ops = Ops(archive_server.url, tmp_path / "store", [entry])
    done = f"{entry.key}|{LAST.isoformat()}"
    ops.cursor = json.dumps({"done": {done: "monthly:" + "ab" * 32}, "work": {}})
    adopted = ops.tick()
    assert adopted.run_requests == []
    assert json.loads(adopted.cursor)["done"][done].startswith("list:monthly:")
    write_binance(_month_trades(LAST, 6, 1), mirror_root, BTC.symbol, monthly=True)
    assert _only(ops.tick()).tags[TRIGGER_TAG] == "revised"


def _publish_coverage(store: FlowStore, entry: InstrumentEntry, covered_until: date) -> None:
    """A flow unit of the month holding the last covered day, covering up to ``covered_until``."""
    month = (covered_until - timedelta(days=1)).replace(day=1)
    staging = Staging(store.open(), "flow", entry.exchange, entry.symbol, month)
    staging.commit({"complete": False, "covered_until": _utc(covered_until).isoformat()})


def _freshness(defs: dg.Definitions) -> dg.AssetCheckEvaluation:
    instance = dg.DagsterInstance.ephemeral()
    run_instruments_sensor(defs, instance)  # the tracked instruments the check reads
    result = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(instance=instance)
    assert result.success
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    by_check = {e.asset_check_key: e for e in evaluations}  # one per exchange
    assert set(by_check) == {freshness_check_key(x) for x in NAMES}
    assert by_check[freshness_check_key("okx-perps")].metadata["instruments_checked"].value == 0
    return by_check[freshness_check_key(BTC.exchange)]


def test_the_running_month_freshness_check_names_the_instruments_behind(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("FLOW_ASSETS_FRESHNESS_LAG_DAYS", raising=False)
    store = FlowStore(url=str(tmp_path / "store"))
    resources = {"archives": ArchiveSources(), "store": store}
    defs = build_definitions([BTC, ETH], resources)
    _publish_coverage(store, BTC, TODAY)  # yesterday is complete
    _publish_coverage(store, ETH, TODAY - timedelta(days=1))  # two days behind: still fresh
    fresh = _freshness(defs)
    assert fresh.passed
    assert fresh.metadata["instruments_behind"].value == {}
    assert fresh.metadata["instruments_checked"].value == 2

    stale_until = TODAY - timedelta(days=2)  # last complete day three days ago
    _publish_coverage(store, ETH, stale_until)
    stale = _freshness(defs)
    assert not stale.passed
    last_day = (stale_until - timedelta(days=1)).isoformat()
    assert stale.metadata["instruments_behind"].value == {"ETH-USDT:USDT": last_day}
    assert "ETH-USDT:USDT" in stale.metadata["summary"].value
    assert stale.metadata["lag_days"].value == 2

    monkeypatch.setenv("FLOW_ASSETS_FRESHNESS_LAG_DAYS", "3")  # through dg.EnvVar
    assert _freshness(build_definitions([BTC, ETH], resources)).passed


class Hook:
    """A webhook on 127.0.0.1 that keeps what is POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/flow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Hook]:
    served = Hook()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_a_failed_run_is_tagged_logged_and_posted_to_the_webhook(
    mirror_root, archive_server, tmp_path, hook
) -> None:
    write_binance(_month_trades(LAST, 4, 1), mirror_root, BTC.symbol, monthly=True)
    _corrupt(mirror_root, LAST)
    ops = Ops(archive_server.url, tmp_path / "store")
    request = _only(ops.tick())
    failed = ops.run(request)
    assert not failed.success
    sensor = ops.defs.resolve_sensor_def("run_failure_alert")

    def alert(url: str | None) -> None:
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert",
            dagster_event=failed.get_run_failure_event(),
            dagster_instance=ops.instance,
            dagster_run=failed.dagster_run,
            resources={"alerts": AlertWebhook(url=url)},
        )
        sensor(context)

    alert(None)  # no webhook configured: recorded on the run, nothing sent
    assert hook.received == []
    tags = ops.instance.get_run_by_id(failed.run_id).tags
    assert "checksum" in tags[FAILURE_TAG].lower()

    alert(hook.url)
    [(path, content_type, message)] = hook.received
    assert (path, content_type) == ("/hooks/flow", "application/json")
    assert message["run_id"] == failed.run_id
    assert message["job"] == flow_job_name(BTC.exchange)
    assert message["partition"] == _key(LAST)
    assert message["run_path"] == f"/runs/{failed.run_id}"
    assert "checksum" in message["error"].lower()
    assert message["error"].startswith("step binance_futures__raw_trades:")
    assert message["trigger"] == "published"
    assert tags[REQUEST_TAG] == request.tags[REQUEST_TAG]


def test_operations_are_wired_from_the_environment(monkeypatch, hook) -> None:
    monkeypatch.setenv("FLOW_ASSETS_ALERT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("FLOW_ASSETS_FRESHNESS_LAG_DAYS", "5")
    defs = build_definitions([BTC])
    assert {s.name for s in defs.sensors} >= {"archive_sensor", "run_failure_alert"}
    assert "freshness_checks" in {s.name for s in defs.schedules}
    alerts = defs.resources["alerts"]
    assert isinstance(alerts.url, dg.EnvVar)  # resolved when a sensor or run starts
    assert alerts.url.env_var_name == "FLOW_ASSETS_ALERT_WEBHOOK_URL"
    monkeypatch.delenv("FLOW_ASSETS_ALERT_WEBHOOK_URL")
    assert build_definitions([BTC]).resources["alerts"].url is None
