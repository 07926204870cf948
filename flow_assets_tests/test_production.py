"""The production topology for real: Postgres instance, code server, webserver and daemon.

The instance is deploy/dagster.postgres.yaml itself (its env placeholders filled from a throwaway
Postgres and moto's S3 for the compute logs), with test-only overrides: a 1 s run-queue dequeue
and a 2 s run-monitoring poll. Backfills go through the webserver's GraphQL API exactly as the UI
sends them. Asset keys and partition keys are read from the loaded Definitions, never spelt here.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.events import DagsterEventType

from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics import ALL_INTERVALS, interval_micros
from flow_assets.publish import flow_file, list_manifests, manifest_key, read_manifest
from flow_assets.sources.mirror import ArchiveServer, Fault, sample_trades
from flow_assets.store import open_store, unit_prefix
from flow_assets.venues.binance_futures import write_binance
from flow_assets_tests.production import REPO, Topology, children_of, render_instance
from flow_assets_tests.s3_fixtures import ACCESS_KEY, REGION, SECRET_KEY, moto_client

MONTHS = [date(2024, m, 1) for m in (1, 2, 3, 4)]
ENTRIES = [
    InstrumentEntry("binance-futures", "perpetual-BTC-USDT:USDT", MONTHS[0]),
    InstrumentEntry("binance-futures", "perpetual-ETH-USDT:USDT", MONTHS[0]),
]
TRADES_PER_MONTH = 150
DOWNLOAD_DELAY = 4.0  # seconds the archive host takes for each first-month file
RUN_CONFIG = {"execution": {"config": {"in_process": {}}}}
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# The deploy yaml's own queue settings are kept (its run_queue already dequeues every second;
# a run_coordinator here would be refused beside it); only monitoring is made faster.
OVERRIDES = {"run_monitoring": {"poll_interval_seconds": 2}}


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class Production:
    topology: Topology
    instance_config: dict[str, Any]
    store_url: str
    home: Path
    bucket: str
    s3_endpoint: str
    trades: dict[tuple[str, date], int] = field(default_factory=dict)

    def store(self):
        return open_store(self.store_url)


@pytest.fixture
def production(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_env: dict[str, str],
    s3_server: str,
    mirror_root: Path,
    archive_server,
) -> Iterator[Production]:
    trades: dict[tuple[str, date], int] = {}
    for n, entry in enumerate(ENTRIES):
        frames = []
        for m, month in enumerate(MONTHS):
            frames.append(
                sample_trades(
                    _utc(month),
                    _utc(_next(month)),
                    TRADES_PER_MONTH + 10 * m,
                    seed=10 * n + m,
                    first_id=1 + 10_000 * m,
                )
            )
            trades[(entry.key, month)] = TRADES_PER_MONTH + 10 * m
        write_binance(pl.concat(frames), mirror_root, entry.symbol, monthly=True)
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        yaml.safe_dump(
            {
                "instruments": [
                    {"exchange": e.exchange, "symbol": e.symbol, "start": f"{e.start:%Y-%m}"}
                    for e in ENTRIES
                ]
            }
        )
    )
    bucket = f"logs-{os.urandom(6).hex()}"
    moto_client(s3_server).create_bucket(Bucket=bucket)
    home = tmp_path / "dagster_home"
    store_url = str(tmp_path / "store")
    env = {
        **postgres_env,
        "DAGSTER_HOME": str(home),
        "FLOW_ASSETS_INSTRUMENTS": str(instruments),
        "FLOW_ASSETS_BINANCE_URL": archive_server.url,
        "FLOW_ASSETS_OKX_URL": archive_server.url,
        "FLOW_ASSETS_STORAGE_URL": store_url,
        "DAGSTER_COMPUTE_LOGS_BUCKET": bucket,
        "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
        "DAGSTER_COMPUTE_LOGS_ENDPOINT": s3_server,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",  # run retries' consumer
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    config = render_instance(REPO / "deploy" / "dagster.postgres.yaml", home, OVERRIDES)
    workdir = tmp_path / "topology"
    workdir.mkdir()
    topology = Topology(workdir, dict(os.environ))
    with topology:
        yield Production(topology, config, store_url, home, bucket, s3_server, trades)
    assert topology.leftovers() == [], "processes of the topology survived its teardown"


# --- what to backfill, from the Definitions -----------------------------------------------------


def _flow_selection() -> tuple[list[dg.AssetKey], dg.MultiPartitionsDefinition]:
    """raw_trades and flow_bars_* asset keys of the instruments' exchange and their partitions."""
    import flow_assets.definitions as module  # noqa: PLC0415

    defs = importlib.reload(module).defs
    graph = defs.resolve_asset_graph()
    raw_trades = {k for k in graph.get_all_asset_keys() if k.path[-1] == "raw_trades"}
    venue = f" {ENTRIES[0].exchange} instrument-month"  # not binance-futures-cm's
    (raw,) = [k for k in raw_trades if venue in str(graph.get(k).description)]
    keys = sorted(
        key
        for key in graph.get_all_asset_keys()
        if key.path[:-1] == raw.path[:-1]
        and (key.path[-1] == "raw_trades" or key.path[-1].startswith("flow_bars"))
    )
    partitions = {graph.get(key).partitions_def for key in keys}
    assert len(partitions) == 1, f"one backfill needs one partitions definition: {partitions}"
    return keys, partitions.pop()


def _synced_instruments(
    partitions: dg.MultiPartitionsDefinition, instance: dg.DagsterInstance, timeout: float = 60
) -> list[str]:
    """The instrument keys, once the daemon's instruments_sensor has registered every entry."""
    (dynamic,) = [
        d.partitions_def
        for d in partitions.partitions_defs
        if isinstance(d.partitions_def, dg.DynamicPartitionsDefinition)
    ]
    deadline = time.monotonic() + timeout
    while len(keys := instance.get_dynamic_partitions(dynamic.name)) < len(ENTRIES):
        assert time.monotonic() < deadline, f"instruments_sensor registered only {keys}"
        time.sleep(0.5)
    return sorted(keys)


def _partition_names(
    partitions: dg.MultiPartitionsDefinition,
    instance: dg.DagsterInstance,
    months: int,
    instruments: int | None = None,
) -> list[str]:
    """The first ``months`` of MONTHS of the first ``instruments`` instruments, as names."""
    dims = partitions.partitions_defs
    (time_dim,) = [
        d for d in dims if isinstance(d.partitions_def, dg.TimeWindowPartitionsDefinition)
    ]
    (other,) = [d for d in dims if d is not time_dim]
    wanted = {m.isoformat() for m in MONTHS[:months]}
    month_keys = [k for k in time_dim.partitions_def.get_partition_keys() if k[:10] in wanted]
    assert [date.fromisoformat(k[:10]) for k in month_keys] == MONTHS[:months]
    instrument_keys = _synced_instruments(partitions, instance)[:instruments]
    assert len(instrument_keys) == (instruments or len(ENTRIES))
    names = [
        str(dg.MultiPartitionKey({time_dim.name: m, other.name: i}))
        for i in instrument_keys
        for m in month_keys
    ]
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        assert set(names) <= set(partitions.get_partition_keys())
    return names


LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions error { message stack } }
    ... on PythonError { message }
  }
}"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
  }
}"""


def launch_backfill(topology: Topology, keys: list[dg.AssetKey], names: list[str]) -> str:
    params = {
        "partitionNames": names,
        "assetSelection": [{"path": list(key.path)} for key in keys],
        "fromFailure": False,
        "tags": [],
        # The launchpad's run config for the backfill's runs: steps in the run worker's own
        # process (no step subprocess to start, seconds per run on 2 cores).
        "runConfigData": RUN_CONFIG,
    }
    result = topology.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_backfill(topology: Topology, backfill_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = topology.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in TERMINAL:
            return backfill
        time.sleep(0.5)
    raise TimeoutError(f"backfill {backfill_id} not done in {timeout} s\n{topology.logs()}")


def backfill_runs(topology: Topology, backfill_id: str) -> list[dict[str, Any]]:
    flt = {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}
    runs = topology.graphql(RUNS, {"filter": flt})["runsOrError"]["results"]
    for run in runs:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return runs


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


def _step_span(instance: dg.DagsterInstance, run_id: str, name: str) -> tuple[float, float] | None:
    """When the run's step whose key ends in ``name`` started and succeeded (None: no such)."""
    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    times = {
        e.dagster_event.event_type: e.timestamp
        for e in instance.all_logs(run_id, of_type=kinds)
        if e.step_key and e.step_key.endswith(name)
    }
    if not times:
        return None
    return times[DagsterEventType.STEP_START], times[DagsterEventType.STEP_SUCCESS]


def _dagster_instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.get()  # DAGSTER_HOME and the DAGSTER_PG_* variables are set


# --- the tests ----------------------------------------------------------------------------------


def test_backfill_on_the_production_topology(
    production: Production, archive_server: ArchiveServer, mirror_root: Path
) -> None:
    topology = production.topology
    keys, partitions = _flow_selection()
    names = _partition_names(partitions, _dagster_instance(), months=len(MONTHS))
    assert len(names) == 8
    # A slow archive host for the first month: both instruments' downloads would overlap
    # (their runs start together) but for the exchange's pool, which makes one wait.
    for archive in mirror_root.rglob(f"*-{MONTHS[0]:%Y-%m}.zip"):
        archive_server.inject(str(archive.relative_to(mirror_root)), Fault(delay=DOWNLOAD_DELAY))
    started = time.monotonic()
    backfill_id = launch_backfill(topology, keys, names)
    backfill = wait_backfill(topology, backfill_id)
    elapsed = time.monotonic() - started
    runs = backfill_runs(topology, backfill_id)
    summary = sorted((r["tags"].get("dagster/partition"), r["status"]) for r in runs)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, summary, topology.log("daemon"))
    assert runs
    assert all(r["status"] == "SUCCESS" for r in runs), summary
    # Every partition of the selection ran.
    assert {r["tags"]["dagster/partition"] for r in runs} == set(names)

    # The run queue's limits held (read from the instance yaml the daemon used).
    limits = production.instance_config["concurrency"]["runs"]
    spans = [(r["startTime"], r["endTime"]) for r in runs]
    assert max_overlap(spans) <= limits["max_concurrent_runs"]
    for limit in limits["tag_concurrency_limits"]:
        by_value: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            by_value.setdefault(run["tags"][limit["key"]], []).append(
                (run["startTime"], run["endTime"])
            )
        assert len(by_value) == len(ENTRIES)
        for value, value_spans in by_value.items():
            assert max_overlap(value_spans) <= limit["limit"], value

    # Runs of the two instruments did overlap, yet each exchange's archive downloads (the
    # raw_trades steps, in the exchange's pool) never ran more at once than the pool allows.
    assert max_overlap(spans) > 1
    pool_limit = production.instance_config["concurrency"]["pools"]["default_limit"]
    instance = _dagster_instance()
    downloads = [_step_span(instance, r["runId"], "raw_trades") for r in runs]
    downloads = [span for span in downloads if span is not None]
    assert len(downloads) == len(names)
    assert max_overlap(downloads) <= pool_limit
    assert sum(end - start >= DOWNLOAD_DELAY for start, end in downloads) == len(ENTRIES)

    # The store: exactly one published month per instrument and month, whole and right.
    store = production.store()
    expected = {(e.exchange, e.symbol, m) for e in ENTRIES for m in MONTHS}
    flow = list_manifests(store, "flow")
    assert sorted((m.exchange, m.symbol, m.month) for m in flow) == sorted(expected)
    trades = list_manifests(store, "trades")
    assert sorted((m.exchange, m.symbol, m.month) for m in trades) == sorted(expected)
    by_key = {(e.exchange, e.symbol): e for e in ENTRIES}
    for manifest in trades:
        entry = by_key[(manifest.exchange, manifest.symbol)]
        assert manifest.files["trades"].rows == production.trades[(entry.key, manifest.month)]
    for manifest in flow:
        entry = by_key[(manifest.exchange, manifest.symbol)]
        count = production.trades[(entry.key, manifest.month)]
        month_us = (_utc(_next(manifest.month)) - _utc(manifest.month)).total_seconds() * 10**6
        for interval in ALL_INTERVALS:
            published = manifest.files[flow_file("exchange", interval)]
            assert published.rows == int(month_us) // interval_micros(interval), interval
        daily = store.read_parquet(manifest.key_of(flow_file("exchange", "1d")))
        assert daily["taker_buy_count"].sum() + daily["taker_sell_count"].sum() == count

    # Step logs went to S3 (moto) through the S3ComputeLogManager.
    listing = moto_client(production.s3_endpoint).list_objects_v2(
        Bucket=production.bucket, Prefix="compute-logs/"
    )
    assert listing.get("KeyCount", 0) > 0
    print(f"backfill of {len(names)} partitions: {len(runs)} runs in {elapsed:.1f} s")


class ManifestReader(threading.Thread):
    """Polls one unit's manifest and reads every file it names, recording what it saw."""

    def __init__(self, store_url: str, exchange: str, symbol: str, month: date):
        super().__init__(daemon=True)
        self.store = open_store(store_url)
        self.unit = (exchange, symbol, month)
        self.stop_event = threading.Event()
        self.versions: list[str] = []
        self.reads = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                manifest = read_manifest(self.store, "flow", *self.unit)
                if manifest is None:
                    self.errors.append("the published month disappeared")
                    continue
                for name, published in manifest.files.items():
                    frame = self.store.read_parquet(published.key)
                    if frame.height != published.rows:
                        self.errors.append(f"{manifest.version} {name}: {frame.height} rows")
                if not self.versions or self.versions[-1] != manifest.version:
                    self.versions.append(manifest.version)
                self.reads += 1
            except Exception as error:  # a manifest naming a missing or partial file
                self.errors.append(f"{type(error).__name__}: {error}")
            time.sleep(0.005)


def _staged_unpublished(root: Path, prefix: str, published: str) -> str | None:
    """A version folder of the unit with files in it that the manifest does not name yet."""
    unit = root / prefix
    if not unit.is_dir():
        return None
    for child in unit.iterdir():
        if child.is_dir() and child.name != published and any(child.rglob("*.parquet")):
            return child.name
    return None


def test_sigkill_mid_publish_is_retried_and_readers_never_see_a_partial_month(
    production: Production,
) -> None:
    topology, instance = production.topology, _dagster_instance()
    keys, partitions = _flow_selection()
    (name,) = _partition_names(partitions, _dagster_instance(), months=1, instruments=1)
    entry, month = ENTRIES[0], MONTHS[0]
    store = production.store()
    first = wait_backfill(topology, launch_backfill(topology, keys, [name]))
    assert first["status"] == "COMPLETED_SUCCESS", (first, topology.log("daemon"))
    old = read_manifest(store, "flow", entry.exchange, entry.symbol, month)
    assert old is not None

    reader = ManifestReader(production.store_url, entry.exchange, entry.symbol, month)
    reader.start()
    try:
        backfill_id = launch_backfill(topology, keys, [name])
        prefix = unit_prefix("flow", entry.exchange, entry.symbol, month)
        root = Path(production.store_url)
        deadline, staged = time.monotonic() + 120, None
        while staged is None and time.monotonic() < deadline:
            staged = _staged_unpublished(root, prefix, old.version)
            time.sleep(0.005)
        assert staged is not None, f"never saw the month being staged\n{topology.logs()}"
        assert read_manifest(store, "flow", entry.exchange, entry.symbol, month) == old
        (run,) = [r for r in backfill_runs(topology, backfill_id) if r["status"] == "STARTED"]
        (start,) = instance.all_logs(run["runId"], of_type=DagsterEventType.RUN_START)
        worker = start.dagster_event.pid
        victims = [worker, *children_of(worker)]
        for pid in victims:  # the run worker and its step processes, at once
            os.kill(pid, signal.SIGKILL)
        killed_at = time.time()

        done = wait_backfill(topology, backfill_id)
    finally:
        reader.stop_event.set()
        reader.join(timeout=10)
    runs = {r["runId"]: r for r in backfill_runs(topology, backfill_id)}
    killed = runs[run["runId"]]
    assert killed["status"] == "FAILURE"
    messages = [e.message for e in instance.all_logs(killed["runId"])]
    # Who noticed: the code server that spawned the run worker (DefaultRunLauncher has no
    # worker health check for run monitoring), within its 0.5 s cleanup tick.
    assert any(
        f"Run execution process for {killed['runId']} was terminated by signal 9" in (m or "")
        for m in messages
    ), messages
    retries = [r for r in runs.values() if r["tags"].get("dagster/parent_run_id") == run["runId"]]
    assert len(retries) == 1, runs
    (retry,) = retries
    assert retry["status"] == "SUCCESS"
    assert retry["tags"].get("dagster/retry_number") == "1"
    assert done["status"] == "COMPLETED_SUCCESS", (done, topology.log("daemon"))

    new = read_manifest(store, "flow", entry.exchange, entry.symbol, month)
    assert new.version not in {old.version, staged}
    assert new.version > staged  # the retry staged anew, after the killed attempt
    assert store.exists(manifest_key("flow", entry.exchange, entry.symbol, month))
    # The killed attempt left nothing behind: the retry's commit removed its staged version
    # (temporary files of the writes it was killed in included); the old one stays for readers.
    unit = Path(production.store_url) / prefix
    leftovers = sorted(p.relative_to(unit).parts[0] for p in unit.rglob("*") if p.is_file())
    assert set(leftovers) == {"manifest.json", old.version, new.version}, leftovers
    # The reader never saw a partial month: only the old and then the new whole version.
    assert reader.errors == []
    assert reader.reads > 20
    assert reader.versions in ([old.version, new.version], [old.version])
    assert reader.versions[0] == old.version
    print(
        f"killed {len(victims)} process(es) of run {killed['runId'][:8]} mid-publish; retry "
        f"{retry['runId'][:8]} done {retry['endTime'] - killed_at:.1f} s later"
        f"; reader: {reader.reads} whole reads of versions {reader.versions}"
    )
