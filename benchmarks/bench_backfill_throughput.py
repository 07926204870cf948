"""Backfill throughput through the daemon: many small instrument-months vs the same trades as one.

Generates a loopback Binance USD-M archive (the repo's mirror server, exact layout, zip +
CHECKSUM) of ``--instruments`` synthetic instruments x ``--months`` months of ``--trades`` trades
each, registers the instruments (what ``instruments_sensor`` does) on a throwaway SQLite
instance (``dagster.yaml`` of the repo: 2 runs at once, one per instrument), starts
``dagster dev`` on the repo's workspace and submits ONE asset backfill of ``raw_trades`` and the
ten ``flow_bars_*`` over every instrument-month through the webserver's GraphQL
``launchPartitionBackfill`` (one partition range per instrument, as the UI sends a selection),
timed until the backfill is done. ``--run-config in_process`` adds what a person may set in the
launchpad (steps in the run worker's process); by default the runs take the definitions'
executor. Then, in the same run, the same number of trades as ONE instrument-month through
``dagster asset materialize`` on a fresh instance (the trades' own cost).

Reports instrument-months per hour, seconds per instrument-month, the fixed cost per
instrument-month (wall and CPU of the backfill minus the one month's, over the instrument-months),
runs and their statuses, peak RSS per kind of process (daemon, webserver, code server, runs)
sampled from ``/proc`` every 0.25 s, CPU seconds sampled per process (what ``dagster dev``'s
processes had used before the backfill, start-up and idle, removed; ``RUSAGE_CHILDREN`` is
recorded too but misses run workers nobody reaps), and ``/proc/loadavg`` before, during and
after.

    .venv/bin/python benchmarks/bench_backfill_throughput.py                    # 4 x 5 = 20
    .venv/bin/python benchmarks/bench_backfill_throughput.py --instruments 100 --months 10
    .venv/bin/python benchmarks/bench_backfill_throughput.py --run-config in_process

Results: ``data/bench/throughput/results-<tag>.json`` (and printed); story:
``benchmarks/RESULTS-backfill-throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from flow_assets.sources.mirror import ArchiveServer, sample_trades, write_checksum  # noqa: E402
from flow_assets.sources.report import month_bounds  # noqa: E402
from flow_assets.venues.binance_common import binance_csv  # noqa: E402
from flow_assets.venues.binance_futures import write_binance  # noqa: E402
from flow_assets.webui import DagsterDev  # noqa: E402

EXCHANGE = "binance-futures"
FIRST_MONTH = date(2024, 1, 1)
REF_SYMBOL = "perpetual-REF-USDT:USDT"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
DAGSTER = str(ROOT / ".venv" / "bin" / "dagster")
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
LAUNCH = """mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) { __typename
    ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
    ... on InvalidSubsetError { message } } }"""
BACKFILL = """query Backfill($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status numPartitions } } }"""
RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
  ... on Runs { results { runId status creationTime startTime endTime
  assetSelection { path } } } } }"""
INTERVALS = ("1s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")


def months(count: int) -> list[date]:
    """``count`` consecutive months from :data:`FIRST_MONTH`."""
    out = []
    for i in range(count):
        year, month = divmod(FIRST_MONTH.month - 1 + i, 12)
        out.append(date(FIRST_MONTH.year + year, month + 1, 1))
    return out


def symbols(count: int) -> list[str]:
    return [f"perpetual-T{i:04d}-USDT:USDT" for i in range(count)]


def _instrument_archive(root: Path, symbol: str, template: Path, template_native: str) -> None:
    """The template instrument's zips under ``symbol``'s native name (hard links; the CSV
    members carry no symbol), each with its own CHECKSUM."""
    native = symbol.removeprefix("perpetual-").split(":")[0].replace("-", "")
    folder = root / "data/futures/um/monthly/aggTrades" / native
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(template.glob("*.zip")):
        target = folder / source.name.replace(template_native, native)
        if not target.exists():
            os.link(source, target)
            write_checksum(target)


def generate_mirror(root: Path, instruments: int, count: int, trades: int) -> None:
    """Every instrument's ``count`` months of ``trades`` trades (the same trades for each)."""
    template_native = "TEMPLATEUSDT"
    template = root / "data/futures/um/monthly/aggTrades" / template_native
    if not template.exists():
        frames = [
            sample_trades(*month_bounds(m), trades, seed=i, first_id=1 + i * trades)
            for i, m in enumerate(months(count))
        ]
        write_binance(pl.concat(frames), root, "perpetual-TEMPLATE-USDT:USDT")
    for symbol in symbols(instruments):
        _instrument_archive(root, symbol, template, template_native)


def generate_reference(root: Path, total: int, chunk: int = 1_000_000) -> None:
    """One month of ``total`` trades for :data:`REF_SYMBOL`, streamed into its zip in chunks
    (a day range each)."""
    folder = root / "data/futures/um/monthly/aggTrades/REFUSDT"
    name = f"REFUSDT-aggTrades-{FIRST_MONTH:%Y-%m}"
    path = folder / f"{name}.zip"
    if path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    start, stop = month_bounds(FIRST_MONTH)
    parts = max(1, -(-total // chunk))
    span = (stop - start) / parts
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"{name}.csv", "w", force_zip64=True) as member,
    ):
        for i in range(parts):
            n = min(chunk, total - i * chunk)
            frame = sample_trades(
                start + i * span, start + (i + 1) * span, n, seed=i, first_id=1 + i * chunk
            )
            member.write(binance_csv(frame, "aggTrades", header=i == 0, micros=False))
    write_checksum(path)


def write_instruments(path: Path, names: list[str]) -> Path:
    lines = ["instruments:"]
    for symbol in names:
        lines += [f"  - exchange: {EXCHANGE}", f"    symbol: {symbol}", "    start: 2024-01"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def instance_env(home: Path, archive_url: str, instruments: Path) -> dict[str, str]:
    """A fresh instance (the repo's dagster.yaml) and a store beside it, the archive local."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return os.environ | {
        "DAGSTER_HOME": str(home),
        "FLOW_ASSETS_STORAGE_URL": str(home / "store"),
        "FLOW_ASSETS_BINANCE_URL": archive_url,
        "FLOW_ASSETS_BINANCE_LISTING_URL": archive_url,
        "FLOW_ASSETS_INSTRUMENTS": str(instruments),
        "PYTHONWARNINGS": "ignore",
    }


def sync_instruments(env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "-m", "flow_assets.orchestration", "sync-instruments"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def _kind(cmdline: str) -> str:
    """What a process under ``dagster dev`` (or ``dagster asset materialize``) is: run workers
    and step processes both start through ``multiprocessing`` or ``dagster api``, so they are
    one kind, ``runs``."""
    for marker, kind in (
        ("dagster._daemon", "daemon"),
        ("dagster-daemon", "daemon"),
        ("dagster-webserver", "webserver"),
        ("dagster_webserver", "webserver"),
        ("code-server", "code server"),
        ("api grpc", "code server"),
        ("multiprocessing", "runs"),
        ("api execute", "runs"),
        ("asset materialize", "materialize"),
        ("dagster dev", "dagster dev"),
    ):
        if marker in cmdline:
            return kind
    return "other"  # compute-log tailers (tail -F), file(1)


@dataclass
class Sampler:
    """Every descendant of ``root``, every ``period`` s: its last CPU seconds, its high-water
    RSS, its kind."""

    root: int
    period: float = 0.25
    cpu: dict[int, float] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.period):
            for pid in _descendants(self.root):
                self._sample(pid, tick)
            self.loads.append(os.getloadavg()[0])

    def _sample(self, pid: int, tick: int) -> None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
            if pid not in self.kinds:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                self.kinds[pid] = _kind(cmd)
        except (OSError, IndexError):
            return
        self.cpu[pid] = (int(stat[11]) + int(stat[12])) / tick
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.hwm[pid] = max(self.hwm.get(pid, 0), int(line.split()[1]) // 1024)

    def summary(self) -> dict[str, object]:
        by_kind: dict[str, dict[str, float]] = {}
        for pid, kind in self.kinds.items():
            row = by_kind.setdefault(kind, {"processes": 0, "cpu_s": 0.0, "peak_rss_mib": 0})
            row["processes"] += 1
            row["cpu_s"] = round(row["cpu_s"] + self.cpu.get(pid, 0.0), 1)
            row["peak_rss_mib"] = max(row["peak_rss_mib"], self.hwm.get(pid, 0))
        return {
            "cpu_s_sampled": round(sum(self.cpu.values()), 1),
            "by_kind": by_kind,
            "load_1min_max": max(self.loads, default=None),
            "load_1min_mean": round(sum(self.loads) / len(self.loads), 2) if self.loads else None,
        }


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def selection(names: list[str], count: int) -> list[dict[str, object]]:
    """Per asset, one partition range per instrument over its ``count`` months."""
    first, last = months(count)[0], months(count)[-1]
    ranges = [
        {
            "start": f"{s.removeprefix('perpetual-')}|{first}",
            "end": f"{s.removeprefix('perpetual-')}|{last}",
        }
        for s in names
    ]
    keys = [["binance_futures", "raw_trades"]] + [
        ["binance_futures", f"flow_bars_{i}"] for i in INTERVALS
    ]
    return [{"assetKey": {"path": k}, "partitions": {"ranges": ranges}} for k in keys]


def wait_backfill(dev: DagsterDev, backfill_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if found["status"] in TERMINAL:
            return found["status"]
        time.sleep(1.0)
    raise TimeoutError(f"backfill {backfill_id} not done after {timeout:.0f} s")


def backfill_runs(dev: DagsterDev, backfill_id: str) -> list[dict[str, object]]:
    flt = {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}
    return dev.graphql(RUNS, {"filter": flt})["runsOrError"]["results"]


def run_stats(runs: list[dict]) -> dict[str, object]:
    """Per kind of run (raw trades, bars, both): how many, their median time from start to end,
    their summed time (2 slots: the wall a full queue would need) and median wait in the queue."""
    kinds: dict[str, list[dict]] = {}
    for run in runs:
        names = {k["path"][-1] for k in run.get("assetSelection") or []}
        raw, bars = "raw_trades" in names, any(n.startswith("flow_bars") for n in names)
        kinds.setdefault("both" if raw and bars else "raw_trades" if raw else "bars", []).append(
            run
        )

    def median(values: list[float]) -> float | None:
        values = sorted(values)
        return round(values[len(values) // 2], 2) if values else None

    out: dict[str, object] = {}
    for kind, group in kinds.items():
        done = [r for r in group if r["startTime"] and r["endTime"]]
        spans = [r["endTime"] - r["startTime"] for r in done]
        waits = [r["startTime"] - r["creationTime"] for r in done]
        out[kind] = {
            "runs": len(group),
            "median_run_s": median(spans),
            "sum_run_s": round(sum(spans), 1),
            "median_queue_wait_s": median(waits),
        }
    return out


def run_backfill(args: argparse.Namespace, work: Path, archive_url: str) -> dict[str, object]:
    """The backfill of every instrument-month through the daemon, measured."""
    names = symbols(args.instruments)
    instruments = write_instruments(work / "instruments.yaml", names)
    env = instance_env(work / "home", archive_url, instruments)
    sync_instruments(env)
    cpu_before = _children_cpu()
    dev = DagsterDev(ROOT / "workspace.yaml", env, work / "dagster-dev.log")
    dev.start()
    try:
        sampler = Sampler(dev.process.pid).start()
        time.sleep(args.idle)
        idle_cpu = sum(sampler.cpu.values())
        params: dict[str, object] = {
            "partitionsByAssets": selection(names, args.months),
            "tags": [],
            "fromFailure": False,
        }
        if args.run_config == "in_process":
            params["runConfigData"] = {"execution": {"config": {"in_process": {}}}}
        started = time.monotonic()
        load_start = Path("/proc/loadavg").read_text().split()[:3]
        result = dev.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill refused: {result}")
        status = wait_backfill(dev, result["backfillId"], args.timeout)
        wall = time.monotonic() - started
        runs = backfill_runs(dev, result["backfillId"])
        busy_cpu = sum(sampler.cpu.values()) - idle_cpu
        sampler.stop()
    finally:
        dev.stop()
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    return {
        "status": status,
        "wall_s": round(wall, 1),
        "runs": len(runs),
        "run_statuses": statuses,
        "run_kinds": run_stats(runs),
        "idle_s": args.idle,
        "idle_cpu_s": round(idle_cpu, 1),
        "cpu_s_sampled_during_backfill": round(busy_cpu, 1),
        "cpu_s_rusage_dagster_dev_lifetime": round(_children_cpu() - cpu_before, 1),
        "loadavg_at_submit": load_start,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        **sampler.summary(),
    }


def run_reference(args: argparse.Namespace, work: Path, archive_url: str) -> dict[str, object]:
    """The same trades as one instrument-month, ``dagster asset materialize`` on a fresh
    instance."""
    instruments = write_instruments(work / "reference.yaml", [REF_SYMBOL])
    env = instance_env(work / "reference-home", archive_url, instruments)
    sync_instruments(env)
    command = [
        DAGSTER, "asset", "materialize", "-m", "flow_assets.definitions",
        "--select", "group:binance_futures", "--partition", f"REF-USDT:USDT|{FIRST_MONTH}",
    ]  # fmt: skip
    cpu_before = _children_cpu()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    started = time.monotonic()
    log = (work / "reference.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = Sampler(process.pid).start()
    code = process.wait()
    wall = time.monotonic() - started
    sampler.stop()
    return {
        "exit_code": code,
        "trades": args.instruments * args.months * args.trades,
        "wall_s": round(wall, 1),
        "cpu_s_rusage": round(_children_cpu() - cpu_before, 1),
        "loadavg_at_start": load_start,
        **sampler.summary(),
    }


def derive(backfill: dict, reference: dict | None, count: int) -> dict[str, object]:
    """Throughput and the fixed cost per instrument-month (the one month's cost removed)."""
    wall, cpu = backfill["wall_s"], backfill["cpu_s_sampled_during_backfill"]
    out: dict[str, object] = {
        "instrument_months": count,
        "instrument_months_per_hour": round(count * 3600 / wall, 1),
        "wall_s_per_instrument_month": round(wall / count, 2),
        "cpu_s_per_instrument_month": round(cpu / count, 2),
    }
    if reference:
        out["fixed_wall_s_per_instrument_month"] = round((wall - reference["wall_s"]) / count, 2)
        out["fixed_cpu_s_per_instrument_month"] = round(
            (cpu - reference["cpu_s_sampled"]) / count, 2
        )
        out["backfill_vs_one_month_wall"] = round(wall / reference["wall_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=4)
    parser.add_argument("--months", type=int, default=5)
    parser.add_argument("--trades", type=int, default=50_000)
    parser.add_argument("--run-config", choices=["default", "in_process"], default="default")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--idle", type=float, default=15.0, help="idle seconds sampled first")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--tag", default=datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "throughput")
    args = parser.parse_args()
    work = args.work / args.tag
    work.mkdir(parents=True, exist_ok=True)
    mirror = args.work / f"mirror-{args.months}m-{args.trades}"
    started = time.monotonic()
    generate_mirror(mirror, args.instruments, args.months, args.trades)
    if not args.no_reference:
        generate_reference(mirror, args.instruments * args.months * args.trades)
    generated = time.monotonic() - started
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    with ArchiveServer(mirror) as archive:
        backfill = run_backfill(args, work, archive.url)
        reference = None if args.no_reference else run_reference(args, work, archive.url)
    report = {
        "commit": commit,
        "args": {k: str(v) for k, v in vars(args).items()},
        "generate_s": round(generated, 1),
        "cpus": os.cpu_count(),
        **derive(backfill, reference, args.instruments * args.months),
        "backfill": backfill,
        "one_month": reference,
    }
    out = args.work / f"results-{args.tag}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
