"""archive_sensor at universe size: tick time and requests at 1,000 instruments, before and after.

Tracks ``--binance`` + ``--okx`` (+ ``--cm`` COIN-M, ``--bybit``) synthetic instruments
(explicit entries, start months spread over 2019-09 .. last month), registered on a SQLite
instance in a temporary ``DAGSTER_HOME``, against a loopback archive
(:class:`flow_assets.sources.mirror.ArchiveServer`, which counts requests, answers S3 listings
and indexes folders). Each tick is the sensor itself evaluated through Dagster
(``dg.build_sensor_context`` with the instance), with the production limits
(``SENSOR_LIMITS``). Scenarios, each on a fresh instance and cursor:

* ``empty``: the archive answers 404 / lists nothing (the issue's measurement);
* ``published``: every lookback month of every instrument is out (Binance monthly zip +
  CHECKSUM, OKX and Bybit every day file up to yesterday), the steady state;
* ``refused`` / ``silent``: nothing listens on the port / a socket accepts and never answers;
* ``lookups``: the newest run of each of 1,000 pending requests among 3,000 runs on SQLite,
  found in batches (this sensor, ``_latest_runs``) and one query per request (the sensor
  before, which did it twice per instrument with work: to advance it and before requesting).

For each: the ticks until the steady state (two full rounds in a row with the same requests and
no run requested), seconds and requests of each, the run requests made, the cursor's size.
``--before`` also times the probing of the sensor before this change on the same archive
(``probe_month`` for each instrument and each of its lookback months, one request after the
other: what its tick did), on ``--before-sample`` instruments of each exchange; its
per-instrument figures are measured, a 1,000-instrument total is that rate times the count
(stated as such).

    .venv/bin/python benchmarks/bench_sensor.py                      # both main scenarios
    .venv/bin/python benchmarks/bench_sensor.py --before --before-sample 100
    .venv/bin/python benchmarks/bench_sensor.py --binance 75 --okx 25 --scenarios empty  # quick

Server and sensor share the machine (loopback): the figures include the server's own CPU. The
load average before each scenario is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus  # noqa: E402

from flow_assets.instruments import InstrumentEntry  # noqa: E402
from flow_assets.orchestration.automation import (  # noqa: E402
    REQUEST_TAG,
    SENSOR_LIMITS,
    SENSOR_LOOKBACK_MONTHS,
    _latest_runs,
    _months_back,
)
from flow_assets.orchestration.catalog import run_instruments_sensor  # noqa: E402
from flow_assets.orchestration.definitions import build_definitions  # noqa: E402
from flow_assets.orchestration.resources import ArchiveSources, FlowStore  # noqa: E402
from flow_assets.sources import exchange_for, probe_month  # noqa: E402
from flow_assets.sources.mirror import ArchiveServer  # noqa: E402
from flow_assets.sources.probing import Target, window  # noqa: E402
from flow_assets.symbology import to_native  # noqa: E402
from flow_assets.venues import NAMES  # noqa: E402

TODAY = datetime.now(UTC).date()
FIRST = date(2019, 9, 1)
LAST = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)


# per venue: the synthetic symbols (``{base}`` = a letter and a number) and the command option
SYNTHETIC = {
    "binance-futures": ("perpetual-B{i:04d}-USDT:USDT", "binance"),
    "okx-perps": ("perpetual-O{i:04d}-USDT:USDT", "okx"),
    "binance-futures-cm": ("perpetual-C{i:04d}-USD:C{i:04d}", "cm"),
    "bybit-perps": ("perpetual-Y{i:04d}-USDT:USDT", "bybit"),
}


def entries(counts: dict[str, int]) -> list[InstrumentEntry]:
    """Synthetic instruments of each venue (``counts``), start months spread from 2019-09 to the
    last finished month."""
    months = (LAST.year - FIRST.year) * 12 + LAST.month - FIRST.month

    def start(i: int, count: int) -> date:
        year, month = divmod(FIRST.month - 1 + i * months // max(count - 1, 1), 12)
        return date(FIRST.year + year, month + 1, 1)

    return [
        InstrumentEntry(venue, SYNTHETIC[venue][0].format(i=i), start(i, count))
        for venue, count in counts.items()
        for i in range(count)
    ]


def lookback(entry: InstrumentEntry) -> list[date]:
    assert entry.start is not None
    months = _months_back(TODAY.replace(day=1), SENSOR_LOOKBACK_MONTHS, entry.start)
    return [m for m in months if entry.covers(m)]


def publish_all(root: Path, tracked: list[InstrumentEntry]) -> int:
    """Every lookback month of every instrument out (tiny files: probes never read them)."""
    written = 0
    for entry in tracked:
        exchange, months = exchange_for(entry.exchange), lookback(entry)
        native = to_native(entry.exchange, entry.symbol)
        if not months:
            continue
        if exchange.monthly_url is not None:
            urls = [exchange.monthly_url("", native, "aggTrades", m) for m in months]
        else:
            days = window(Target(exchange, native, "aggTrades", months), TODAY)
            urls = [exchange.daily_url("", native, "aggTrades", d) for d in days if d < TODAY]
        for url in urls:
            path = root / url.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"PK" + url.encode())
            if exchange.checksum_url is not None:
                Path(exchange.checksum_url(str(path))).write_text(f"{'0' * 64}  {path.name}\n")
            written += 1
    return written


def tick(defs: dg.Definitions, instance, resources, cursor) -> tuple[dg.SensorResult, float]:
    sensor = defs.resolve_sensor_def("archive_sensor")
    started = time.monotonic()
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        result = sensor(ctx)
    return result, time.monotonic() - started


def _steady(rows: list[dict[str, object]]) -> bool:
    """Two full rounds in a row with the same requests and nothing requested: the steady state."""
    if len(rows) < 2:
        return False
    last, before = rows[-1], rows[-2]
    quiet = last["run_requests"] == 0 and last["round_done"] and before["round_done"]
    return quiet and last["requests"] == before["requests"]


def run_ticks(url: str, tracked, server: ArchiveServer | None, home: Path, max_ticks: int):
    """Ticks until the steady state (one tick for an unreachable archive); a row per tick."""
    resources = {
        "archives": ArchiveSources(urls=dict.fromkeys(NAMES, url)),
        "store": FlowStore(url=str(home / "store")),
    }
    defs = build_definitions(tracked, resources)
    rows, cursor = [], None
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_instruments_sensor(defs, instance)
        for number in range(1, max_ticks + 1):
            before = len(server.log) if server else 0
            result, seconds = tick(defs, instance, resources, cursor)
            cursor = result.cursor
            state = json.loads(cursor)
            rows.append(
                {
                    "tick": number,
                    "seconds": round(seconds, 2),
                    "requests": (len(server.log) - before) if server else None,
                    "run_requests": len(result.run_requests),
                    "round_done": state["next"] is None,
                    "skip": (result.skip_reason.skip_message[:160] if result.skip_reason else None),
                    "cursor_bytes": len(cursor),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            if server is None or _steady(rows):
                break
    return rows


def before_probes(root: Path, tracked: list[InstrumentEntry], sample: int) -> dict[str, object]:
    """The sensor before: ``probe_month`` per instrument and lookback month, one at a time."""
    chosen = [e for e in tracked if e.exchange == "binance-futures"][:sample] + [
        e for e in tracked if e.exchange == "okx-perps"
    ][:sample]
    with ArchiveServer(root) as server:
        started = time.monotonic()
        for entry in chosen:
            for month in lookback(entry):
                probe_month(entry.exchange, entry.symbol, month, base_url=server.url, today=TODAY)
        seconds = time.monotonic() - started
        requests = len(server.log)
    count = len(chosen)
    return {
        "instruments": count,
        "seconds": round(seconds, 2),
        "requests": requests,
        "seconds_per_instrument": round(seconds / count, 4),
        "requests_per_instrument": requests / count,
    }


def run_lookups(home: Path, requests: int, runs: int) -> dict[str, object]:
    """Seconds to find the newest run of ``requests`` sensor requests among ``runs`` runs on
    SQLite: batched (this sensor) and one query per request (the sensor before)."""
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        for i in range(runs):
            tags = {REQUEST_TAG: f"r{i % requests}"}
            run_id = f"{i:032x}"
            instance.add_run(DagsterRun("j", run_id, status=DagsterRunStatus.SUCCESS, tags=tags))
        keys = [f"r{i}" for i in range(requests)]
        started = time.monotonic()
        assert len(_latest_runs(instance, keys)) == requests
        batched = time.monotonic() - started
        started = time.monotonic()
        for key in keys:
            instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: key}), limit=1)
        single = time.monotonic() - started
    result = {"requests": requests, "runs": runs, "batched": batched, "one_by_one": single}
    print(json.dumps(result))
    return result


def scenario(name: str, tracked, workdir: Path, args) -> dict[str, object]:
    root = workdir / name / "mirror"
    root.mkdir(parents=True)
    written = publish_all(root, tracked) if name == "published" else 0
    home = workdir / name / "home"
    home.mkdir()
    print(f"== {name}: {len(tracked)} instruments, {written} files, load {os.getloadavg()}")
    result: dict[str, object] = {"scenario": name, "files": written, "load": os.getloadavg()}
    if name == "lookups":
        return {**result, **run_lookups(home, len(tracked), 3 * len(tracked))}
    if name in ("empty", "published"):
        with ArchiveServer(root) as server:
            result["ticks"] = run_ticks(server.url, tracked, server, home, args.max_ticks)
        if args.before:
            result["before"] = before_probes(root, tracked, args.before_sample)
            print(json.dumps(result["before"]))
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        if name == "silent":
            listener.listen(1024)
        else:
            listener.close()
        result["ticks"] = run_ticks(url, tracked, None, home, 1)
        listener.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binance", type=int, default=750)
    parser.add_argument("--okx", type=int, default=250)
    parser.add_argument("--cm", type=int, default=0)
    parser.add_argument("--bybit", type=int, default=0)
    parser.add_argument("--scenarios", default="empty,published,refused,silent,lookups")
    parser.add_argument("--max-ticks", type=int, default=20)
    parser.add_argument("--before", action="store_true")
    parser.add_argument("--before-sample", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "data/bench/sensor"))
    args = parser.parse_args()
    counts = {venue: getattr(args, option) for venue, (_, option) in SYNTHETIC.items()}
    tracked = entries(counts)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "limits": str(SENSOR_LIMITS),
        "instruments": counts,
        "scenarios": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp:
        for name in args.scenarios.split(","):
            results["scenarios"].append(scenario(name, tracked, Path(tmp), args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"results-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
