"""The Dagster UI at scale: how long the webserver takes to answer the UI's live-data queries.

Builds a throwaway SQLite instance (under ``--home``, default a temporary folder in
``/dev/shm``) holding what a fully backfilled universe looks like: ``--instruments`` synthetic
Binance USD-M instruments with first months spread evenly over 2019-09..2026-11, every tracked
month materialized (``raw_trades`` and the ten ``flow_bars_*``) and every check evaluated, as
Dagster would record them (runless events through ``report_runless_asset_event``; each check
evaluation carries the partition exactly when the project's check specs are partitioned). Then
starts ``dagster-webserver -m flow_assets.definitions`` on it and times the query the UI sends
for the asset graph, an asset page and the group view (``AssetGraphLiveQuery``, taken from the
webserver's own bundle) for one asset and for the ``binance_futures`` group, cold (the first
request after start) then warm (``--repeats``), and the webserver's CPU and memory while an open
tab would poll. Prints one JSON document.

    .venv/bin/python benchmarks/bench_ui.py                    # 1,000 instruments (~45 min)
    .venv/bin/python benchmarks/bench_ui.py --instruments 100    # ~5 min
    .venv/bin/python benchmarks/bench_ui.py --home DIR --reuse   # query an instance built before

Writing the events is the slow part (~2 ms each: Dagster's own storage code, one engine per
SQLite shard reused meanwhile); the queries are what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.metrics import ALL_INTERVALS  # noqa: E402
from flow_assets.orchestration.assets import flow_asset_key, raw_trades_key  # noqa: E402
from flow_assets.orchestration.definitions import build_definitions  # noqa: E402
from flow_assets.orchestration.partitions import FlowPartitions  # noqa: E402

EXCHANGE = "binance-futures"
FIRST, LAST = (2019, 9), (2026, 11)
QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) { id ...AssetNodeLiveFragment }
  assetsLatestInfo(assetKeys: $assetKeys) {
    id assetKey { path } unstartedRunIds inProgressRunIds
    latestRun { id status startTime endTime }
  }
}
fragment AssetNodeLiveFragment on AssetNode {
  id opNames repository { id } assetKey { path }
  assetMaterializations(limit: 1) { timestamp runId stepKey }
  assetObservations(limit: 1) { timestamp runId stepKey }
  assetChecksOrError { ... on AssetChecks { checks { ...AssetCheckLiveFragment } } }
  partitionStats { numMaterialized numMaterializing numPartitions numFailed }
}
fragment AssetCheckLiveFragment on AssetCheck {
  name canExecuteIndividually
  executionForLatestMaterialization {
    id runId status timestamp stepKey evaluation { severity }
  }
  partitionDefinition { name description }
  partitionStatuses {
    ... on AssetCheckDefaultPartitionStatuses {
      succeededPartitions failedPartitions inProgressPartitions skippedPartitions
      executionFailedPartitions
    }
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
    ... on AssetCheckMultiPartitionStatuses {
      primaryDimensionName
      ranges {
        primaryDimStartKey primaryDimEndKey
        secondaryDim {
          ... on AssetCheckDefaultPartitionStatuses {
            succeededPartitions failedPartitions inProgressPartitions skippedPartitions
            executionFailedPartitions
          }
          ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
        }
      }
    }
  }
}
"""
PARTITION_HEALTH = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses {
                ranges { status startTime endTime startKey endKey }
              }
              ... on DefaultPartitionStatuses {
                materializedPartitions materializingPartitions failedPartitions
              }
            }
          }
        }
      }
    }
  }
}
"""


def month_keys() -> list[str]:
    """Every month of the range, as the month dimension spells them."""
    (y0, m0), (y1, m1) = FIRST, LAST
    count = (y1 - y0) * 12 + m1 - m0 + 1
    return [f"{y0 + (m0 - 1 + i) // 12}-{(m0 - 1 + i) % 12 + 1:02d}-01" for i in range(count)]


def universe(instruments: int) -> dict[str, list[str]]:
    """Synthetic instrument keys and their tracked months (first months spread evenly)."""
    months = month_keys()
    return {
        f"SYN{i:04d}-USDT:USDT": months[i * len(months) // instruments :]
        for i in range(instruments)
    }


@contextlib.contextmanager
def reused_engines(storage: object) -> Iterator[None]:
    """Dagster's SQLite event storage, one engine per shard kept while writing (not per event)."""
    engines: dict[str, sa.Engine] = {}

    @contextlib.contextmanager
    def connect(shard: str) -> Iterator[sa.Connection]:
        if shard not in engines:
            engine = sa.create_engine(storage.conn_string_for_shard(shard), poolclass=sa.StaticPool)
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
            engines[shard] = engine
        with engines[shard].connect() as conn, conn.begin():
            yield conn

    storage._connect = connect
    try:
        yield
    finally:
        del storage._connect
        for engine in engines.values():
            engine.dispose()


def check_specs(defs: dg.Definitions) -> list[tuple[dg.AssetKey, str, bool]]:
    """Every check of the exchange's assets: (asset, name, partitioned)."""
    slug = EXCHANGE.replace("-", "_")
    specs = []
    for assets_def in defs.assets or []:
        for spec in getattr(assets_def, "check_specs", []):
            if spec.asset_key.path[0] == slug:
                specs.append((spec.asset_key, spec.name, spec.partitions_def is not None))
    return specs


def populate(home: Path, instruments: int, every_check: bool = True) -> dict[str, float]:
    """Materializations and check evaluations of every tracked month (``every_check`` False:
    the evaluations of the last partition only), written as Dagster does."""
    defs = build_definitions()
    partitions = FlowPartitions().of(EXCHANGE)
    assets = [raw_trades_key(EXCHANGE), *(flow_asset_key(EXCHANGE, i) for i in ALL_INTERVALS)]
    checks = check_specs(defs)
    tracked = universe(instruments)
    last = next(reversed(tracked))
    started = time.monotonic()
    events = 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(partitions.instruments_name, list(tracked))
        with reused_engines(instance.event_log_storage):
            for key, months in tracked.items():
                for month in months:
                    partition = str(dg.MultiPartitionKey({"instrument": key, "month": month}))
                    for asset_key in assets:
                        event = dg.AssetMaterialization(asset_key, partition=partition)
                        instance.report_runless_asset_event(event)
                    evaluated = every_check or (key == last and month == months[-1])
                    for asset_key, name, partitioned in checks if evaluated else []:
                        evaluation = dg.AssetCheckEvaluation(
                            asset_key=asset_key,
                            check_name=name,
                            passed=True,
                            partition=partition if partitioned else None,
                            metadata={"partition": partition},
                        )
                        instance.report_runless_asset_event(evaluation)
                    events += len(assets) + (len(checks) if evaluated else 0)
    return {
        "instruments": instruments,
        "partitions_per_asset": sum(len(m) for m in tracked.values()),
        "assets": len(assets),
        "checks": len(checks),
        "every_check_evaluated": every_check,
        "partitioned_checks": sum(p for *_, p in checks),
        "events": events,
        "write_seconds": round(time.monotonic() - started, 1),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_webserver(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``dagster-webserver`` on the instance (its own code server), once it answers."""
    env = os.environ | {"DAGSTER_HOME": str(home), "FLOW_ASSETS_STORAGE_URL": str(home / "store")}
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        *("-m", "flow_assets.definitions", "-h", "127.0.0.1", "-p", str(port)),
    ]
    log = (home / "webserver.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).close()
            return process
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the webserver did not start: see {home / 'webserver.log'}")


def live(keys: list[dg.AssetKey]) -> tuple[str, dict[str, object]]:
    """The UI's live-data query (asset graph, asset page, group view) for ``keys``."""
    return QUERY, {"assetKeys": [{"path": k.path} for k in keys]}


def health(key: dg.AssetKey) -> tuple[str, dict[str, object]]:
    """The asset page's partition health query."""
    return PARTITION_HEALTH, {"assetKey": {"path": key.path}}


def timed_query(port: int, request: tuple[str, dict[str, object]]) -> tuple[float, int]:
    """Seconds and bytes of one GraphQL request (query, variables)."""
    body = json.dumps({"query": request[0], "variables": request[1]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=1800) as answer:
        data = answer.read()
    elapsed = time.monotonic() - started
    errors = json.loads(data).get("errors")
    if errors:
        raise RuntimeError(f"GraphQL errors: {errors[:2]}")
    return elapsed, len(data)


def process_tree_stats(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS (bytes) of ``pid`` and its children."""
    ticks, rss = 0, 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return ticks / os.sysconf("SC_CLK_TCK"), rss


def measure(home: Path, repeats: int, idle: float) -> dict[str, object]:
    """Cold and warm timings of one asset and of the group, and the webserver's idle cost."""
    port = free_port()
    process = start_webserver(home, port)
    try:
        one = flow_asset_key(EXCHANGE, "1m")
        keys = [raw_trades_key(EXCHANGE), *(flow_asset_key(EXCHANGE, i) for i in ALL_INTERVALS)]
        group = live(keys)
        result: dict[str, object] = {}
        queries = (
            ("asset_flow_bars_1m", live([one])),
            ("partition_health_flow_bars_1m", health(one)),
            ("group_binance_futures", group),
        )
        for name, request in queries:
            cold, size = timed_query(port, request)
            warm = [timed_query(port, request)[0] for _ in range(repeats)]
            result[name] = {
                "cold_s": round(cold, 2),
                "warm_s": [round(w, 2) for w in warm],
                "bytes": size,
            }
        cpu0, _ = process_tree_stats(process.pid)
        polls, started = 0, time.monotonic()
        while time.monotonic() - started < idle:  # an open tab: the group's live data, re-asked
            timed_query(port, group)
            polls += 1
            time.sleep(2)
        cpu1, rss = process_tree_stats(process.pid)
        wall = time.monotonic() - started
        result["open_tab"] = {
            "seconds": round(wall, 1),
            "polls": polls,
            "webserver_cpu_share": round((cpu1 - cpu0) / wall, 3),
            "webserver_rss_mib": round(rss / 2**20),
        }
        return result
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="query an instance built before")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--latest-checks-only",
        action="store_true",
        help="evaluate the checks of the last partition only (3x fewer events; unpartitioned "
        "checks show their latest evaluation, so the queries read the same rows)",
    )
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of an open tab polling")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-ui-", dir="/dev/shm"))
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    report: dict[str, object] = {"home": str(home), "machine": platform.node()}
    report["load_before"] = os.getloadavg()
    if not args.reuse:
        report["instance"] = populate(home, args.instruments, not args.latest_checks_only)
    report["queries"] = measure(home, args.repeats, args.idle)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
