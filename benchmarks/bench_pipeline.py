"""Benchmark of the whole asset path: archive zip on a local HTTP server -> Dagster -> store.

For each synthetic Binance USD-M aggTrades month, in this order, each in a fresh child process:

* **floor**: the ingestion floor named by the issue: unzip the monthly zip to disk (streamed) and
  ``pl.read_csv`` the CSV (all seven columns, typed); time and peak RSS;
* **pipeline**: ``dagster asset materialize -m flow_assets.definitions
  --select group:binance_futures --partition 'BTC-USDT:USDT|<month>'`` (raw_trades then
  flow_bars) against an
  :class:`~flow_assets.sources.mirror.ArchiveServer` serving the archive from this process, on a
  persistent ``DAGSTER_HOME`` and store folder; wall clock, the steps' times from the run's event
  log, and peak memory sampled from ``/proc`` every 0.2 s over the process tree: the largest
  single process (its kernel high-water mark ``VmHWM``) and the largest sum over the tree, with
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a light stdlib-only wrapper as a cross-check.

Months (one instrument, ``binance-futures:perpetual-BTC-USDT:USDT``; trades concentrated in the
first days of a month at ~5M trades a day, ~35M a week):

* ``W1``, ``W2``, ``W4``: 2024-01, 2024-03, 2024-05 holding 1, 2 and 4 weeks of trades; the months
  between are never published, so each starts from a fresh state (warm-up);
* ``M``: 2024-07, 150M trades over its 31 days (warm-up: 2024-06 is not published);
* ``M+1``: 2024-08, another 150M trades, whose bars start from the state ``M`` carried.

Archives are generated once, streamed a day at a time into the zip member (never a month in
memory), cached under ``data/bench/pipeline/archive-s<scale>-seed<seed>/`` in the exact
``data.binance.vision`` layout (zip + ``.zip.CHECKSUM``).

    .venv/bin/python benchmarks/bench_pipeline.py all                 # full size, see below
    .venv/bin/python benchmarks/bench_pipeline.py all --scale 0.02    # quick check (~80 s)
    .venv/bin/python benchmarks/bench_pipeline.py report data/bench/pipeline/results-*.json
    .venv/bin/python benchmarks/bench_pipeline.py generate --scale 0.02
    .venv/bin/python benchmarks/bench_pipeline.py run --scale 0.02 --only W1,M,M+1
    .venv/bin/python benchmarks/bench_pipeline.py profile --label M --py-spy PATH  # optional

The code measured is ``flow_assets`` of one commit (``--commit``, default HEAD) exported with
``git archive`` into the run folder and put first on ``PYTHONPATH`` of every process: commits
landing while a run lasts (every Dagster step process imports the code afresh) change nothing.

Full size: generating the five archives once takes ~8 min (8.5 GB of zips, 545M trades); a run
~9-11 min on 2 cores (each floor extracts a CSV of up to 9.5 GB, deleted after it; a run's store
holds ~4 GB). Results: ``data/bench/pipeline/results-<tag>.json``; story: RESULTS-pipeline.md.

Everything but generation and the floor child imports the standard library only at module level,
so the wrapper that launches Dagster stays small (its own memory is not in the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_PIPELINE_ROOT") or Path(__file__).resolve().parents[1])
BENCH_DIR = ROOT / "data" / "bench" / "pipeline"
SCRIPT = str(Path(__file__).resolve())
PYTHON = sys.executable
DAGSTER = str(Path(sys.executable).with_name("dagster"))

EXCHANGE = "binance-futures"
SYMBOL = "perpetual-BTC-USDT:USDT"
NATIVE = "BTCUSDT"
DATASET = "aggTrades"
INSTRUMENT = f"{EXCHANGE}:{SYMBOL}"
PARTITION_INSTRUMENT = "BTC-USDT:USDT"  # its key in the binance_futures assets
GROUP = "group:binance_futures"
HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"

WEEK_TRADES_PER_DAY = 5_000_000  # ~35M trades a week
MONTH_TRADES = 150_000_000
SAMPLE_S = 0.2
DAY_S = 86_400
SECOND_US = 1_000_000
MiB = 1 << 20


@dataclass(frozen=True)
class MonthSpec:
    """One benchmarked instrument-month: which month, how many days hold trades, how many."""

    label: str
    month: date
    days: int  # trades in the first ``days`` days of the month
    trades: int  # target (the generator is Poisson: the actual count is close to it)

    @property
    def partition(self) -> str:
        return f"{PARTITION_INSTRUMENT}|{self.month.isoformat()}"

    @property
    def period(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def zip_name(self) -> str:
        return f"{NATIVE}-{DATASET}-{self.period}.zip"


def plan(scale: float) -> list[MonthSpec]:
    """The five months, in the order they are generated and run."""
    per_day = round(WEEK_TRADES_PER_DAY * scale)
    return [
        MonthSpec("W1", date(2024, 1, 1), 7, per_day * 7),
        MonthSpec("W2", date(2024, 3, 1), 14, per_day * 14),
        MonthSpec("W4", date(2024, 5, 1), 28, per_day * 28),
        MonthSpec("M", date(2024, 7, 1), 31, round(MONTH_TRADES * scale)),
        MonthSpec("M+1", date(2024, 8, 1), 31, round(MONTH_TRADES * scale)),
    ]


def archive_root(scale: float, seed: int) -> Path:
    return BENCH_DIR / f"archive-s{scale:g}-seed{seed}"


def monthly_folder(root: Path) -> Path:
    return root / "data/futures/um/monthly" / DATASET / NATIVE


# ---------------------------------------------------------------------------------------------
# generation (numpy + polars; imported here only)
# ---------------------------------------------------------------------------------------------


def _day_csv(frame, rng, first_agg: int) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    """Binance aggTrades CSV rows (no header) for one day of synthetic trades; next first id.

    Quantities are rounded to BTCUSDT's 0.001 step (at least 0.001), times are epoch ms,
    ``first_trade_id``/``last_trade_id`` cover 1 + Geometric fills per aggregate trade.
    """
    import numpy as np  # noqa: PLC0415
    import polars as pl  # noqa: PLC0415

    n = frame.height
    fills = rng.geometric(0.5, n).astype(np.int64)
    last = first_agg + np.cumsum(fills) - 1
    first = last - fills + 1
    csv = frame.select(
        pl.col("trade_id").alias("agg_trade_id"),
        pl.col("price"),
        (pl.col("base_qty").round(3).clip(lower_bound=0.001)).alias("quantity"),
        pl.Series("first_trade_id", first),
        pl.Series("last_trade_id", last),
        (pl.col("exchange_ts").dt.epoch("ms")).alias("transact_time"),
        pl.when(pl.col("is_taker_buy"))
        .then(pl.lit("false"))
        .otherwise(pl.lit("true"))
        .alias("is_buyer_maker"),
    ).write_csv(include_header=False)
    return csv.encode(), int(last[-1]) + 1 if n else first_agg


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def generate_month(spec: MonthSpec, root: Path, seed: int, index: int, carry: dict) -> dict:
    """Write ``spec``'s zip (+ CHECKSUM) day by day; its facts (cached in a sidecar JSON)."""
    import zipfile  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from bench_flow import synthetic_trades  # the realistic generator of the engine benchmark  # noqa: PLC0415

    folder = monthly_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.zip_name
    sidecar = path.with_name(path.name + ".bench.json")
    params = {**asdict(spec), "month": spec.period, "seed": seed, "carry_in": carry}
    if sidecar.exists() and path.exists():
        facts = json.loads(sidecar.read_text())
        if facts.get("params") == params:
            return facts
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, index])
    per_day = -(-spec.trades // spec.days)
    start = datetime(spec.month.year, spec.month.month, 1, tzinfo=UTC)
    trade_id, agg_first, price = carry["trade_id"], carry["agg_first"], carry["price"]
    total = csv_bytes = 0
    part = path.with_name(path.name + ".part")
    member = spec.zip_name.removesuffix(".zip") + ".csv"
    with (
        zipfile.ZipFile(
            part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True
        ) as archive,
        archive.open(member, "w", force_zip64=True) as out,
    ):
        out.write(HEADER.encode())
        csv_bytes += len(HEADER)
        for day in range(spec.days):
            day_us = int((start + timedelta(days=day)).timestamp()) * SECOND_US
            frame = synthetic_trades(
                rng, day_us, DAY_S, per_day, first_id=trade_id, first_price=price
            )
            data, agg_first = _day_csv(frame, rng, agg_first)
            out.write(data)
            csv_bytes += len(data)
            total += frame.height
            trade_id += frame.height
            price = float(frame["price"][-1])
            del frame, data
    part.rename(path)
    digest = _sha256(path)
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")
    facts = {
        "params": params,
        "trades": total,
        "zip_bytes": path.stat().st_size,
        "csv_bytes": csv_bytes,
        "sha256": digest,
        "seconds": round(time.perf_counter() - t0, 1),
        "carry_out": {"trade_id": trade_id, "agg_first": agg_first, "price": price},
    }
    sidecar.write_text(json.dumps(facts, indent=1))
    return facts


def generate(scale: float, seed: int) -> dict[str, dict]:
    """All months of the plan (cached); prints their sizes."""
    root = archive_root(scale, seed)
    carry = {"trade_id": 1_000_000_000, "agg_first": 4_000_000_000, "price": 60_000.0}
    out = {}
    for index, spec in enumerate(plan(scale)):
        facts = generate_month(spec, root, seed, index, carry)
        carry = facts["carry_out"]
        out[spec.label] = facts
        print(
            f"{spec.label:>4} {spec.period}: {facts['trades']:>12,} trades in {spec.days:>2} days, "
            f"zip {facts['zip_bytes'] / MiB:>8,.1f} MiB, CSV {facts['csv_bytes'] / MiB:>9,.1f} MiB"
            f" (generated in {facts['seconds']} s)",
            flush=True,
        )
    return out


# ---------------------------------------------------------------------------------------------
# the floor (child process)
# ---------------------------------------------------------------------------------------------


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def floor_child(zip_path: Path, workdir: Path) -> dict:
    """Unzip (streamed, to disk) and ``pl.read_csv`` the CSV; delete the CSV; times, RSS.

    Then, outside the floor, the inflation alone (the member streamed to ``/dev/null``): how much
    of the unzip is writing the CSV to disk. Its CPU time is reported apart (``extra_cpu_s``).
    """
    import zipfile  # noqa: PLC0415

    import polars as pl  # noqa: PLC0415

    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        (member,) = archive.infolist()
        csv = workdir / Path(member.filename).name
        with archive.open(member) as source, csv.open("wb") as out:
            shutil.copyfileobj(source, out, 4 * MiB)
    t1 = time.perf_counter()
    schema = {
        "agg_trade_id": pl.Int64,
        "price": pl.Float64,
        "quantity": pl.Float64,
        "first_trade_id": pl.Int64,
        "last_trade_id": pl.Int64,
        "transact_time": pl.Int64,
        "is_buyer_maker": pl.Boolean,
    }
    frame = pl.read_csv(csv, schema=schema)
    t2 = time.perf_counter()
    rows = frame.height
    del frame
    csv_bytes = csv.stat().st_size
    csv.unlink()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0, t3 = _cpu_self(), time.perf_counter()
    with (
        zipfile.ZipFile(zip_path) as archive,
        archive.open(member) as source,
        open(os.devnull, "wb") as out,
    ):
        shutil.copyfileobj(source, out, 4 * MiB)
    return {
        "rows": rows,
        "csv_bytes": csv_bytes,
        "unzip_s": t1 - t0,
        "read_csv_s": t2 - t1,
        "floor_s": t2 - t0,
        "self_ru_maxrss_mib": peak,
        "inflate_only_s": time.perf_counter() - t3,
        "extra_cpu_s": _cpu_self() - cpu0,
    }


# ---------------------------------------------------------------------------------------------
# measuring a process tree (stdlib only)
# ---------------------------------------------------------------------------------------------


def _stat(pid: str) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of a process from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick


def _status_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            text = fh.read()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line[:5]] = int(line.split()[1])
    if "VmRSS" not in values:
        return None  # a zombie
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


HELPERS = {  # substring of a command line -> the name of that process
    "resource_tracker": "multiprocessing resource tracker",
    "asset materialize": "dagster CLI (run coordinator)",
    "floor-child": "floor",
    "watch_orphans": "dagster orphan watcher",
    "tail -F": "compute log tail",
}


def _label(cmdline: str, step_index: int) -> str:
    """A short name for a process of the tree. Dagster's multiprocess executor runs each step in
    a ``multiprocessing`` spawned child; the two steps run one after the other, so the first such
    child is raw_trades and the second flow_bars."""
    if "spawn_main" in cmdline:
        step = ("raw_trades", "flow_bars", "?")[min(step_index, 2)]
        return f"step process {step_index + 1} ({step})"
    for needle, name in HELPERS.items():
        if needle in cmdline:
            return name
    return cmdline[:60]


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from the ppid of every process in /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(name)
            if st is not None:
                children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_busy() -> int:
    """Busy (non-idle) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return sum(values) - values[3] - values[4]


def measure(cmd: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run ``cmd``; wall clock and memory of its process tree, load and CPU of the machine."""
    busy0 = _cpu_busy()
    loads: list[float] = []
    peak_tree = 0
    hwm: dict[int, tuple[str, int]] = {}  # pid -> (label, VmHWM KiB)
    series: list[tuple[float, int, int]] = []  # (s, tree RSS MiB, largest process RSS MiB)
    step_order: dict[int, int] = {}  # pid of a step process -> 0, 1, ...
    t0_epoch = time.time()
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        last_series = -1.0
        while True:
            done = proc.poll() is not None
            tree_rss = biggest = 0
            for pid in _tree(proc.pid) if not done else []:
                got = _status_kib(pid)
                if got is None:
                    continue
                rss, high = got
                tree_rss += rss
                # the command line is read every time: a process seen between fork and exec
                # still shows its parent's (or none)
                cmdline = _cmdline(pid)
                if "spawn_main" in cmdline and pid not in step_order:
                    step_order[pid] = len(step_order)
                label = _label(cmdline, step_order.get(pid, 0)) if cmdline else ""
                label = label or hwm.get(pid, ("?", 0))[0]
                hwm[pid] = (label, max(high, hwm.get(pid, ("", 0))[1]))
                biggest = max(biggest, rss)
            peak_tree = max(peak_tree, tree_rss)
            now = time.perf_counter() - t0
            if now - last_series >= 1.0 and not done:
                series.append((round(now, 1), round(tree_rss / 1024), round(biggest / 1024)))
                with open("/proc/loadavg") as fh:
                    loads.append(float(fh.read().split()[0]))
                last_series = now
            if done:
                break
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - t0
    busy1 = _cpu_busy()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    ncpu = len(os.sched_getaffinity(0))
    by_label: dict[str, int] = {}
    for label, high in hwm.values():
        by_label[label] = max(by_label.get(label, 0), high)
    machine_busy_s = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    tree_cpu_s = usage.ru_utime + usage.ru_stime
    return {
        "returncode": proc.returncode,
        "t0_epoch": t0_epoch,
        "wall_s": wall,
        "peak_rss_max_process_mib": max((h for _, h in hwm.values()), default=0) / 1024,
        "peak_rss_tree_mib": peak_tree / 1024,
        "peak_rss_by_process_mib": {k: v / 1024 for k, v in sorted(by_label.items())},
        "ru_maxrss_children_mib": usage.ru_maxrss / 1024,
        "tree_cpu_s": tree_cpu_s,
        "machine_busy_cpu_s": machine_busy_s,
        "others_cpu_s": max(0.0, machine_busy_s - tree_cpu_s),
        "cores": ncpu,
        "loadavg_1m": {
            "min": min(loads, default=0.0),
            "mean": sum(loads) / len(loads) if loads else 0.0,
            "max": max(loads, default=0.0),
        },
        "rss_series_mib": series,
    }


def run_events(partition: str, t0_epoch: float) -> dict:
    """The partition's latest run: outcome, step times and a timeline (seconds since the
    measurement started) of its step events and log lines, from the Dagster instance."""
    import dagster as dg  # noqa: PLC0415

    kinds = dg.DagsterEventType
    marked = {
        kinds.RUN_START: "RUN_START",
        kinds.RUN_SUCCESS: "RUN_SUCCESS",
        kinds.RUN_FAILURE: "RUN_FAILURE",
        kinds.STEP_WORKER_STARTING: "STEP_WORKER_STARTING",
        kinds.STEP_START: "STEP_START",
        kinds.STEP_SUCCESS: "STEP_SUCCESS",
        kinds.STEP_FAILURE: "STEP_FAILURE",
    }
    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition}), limit=1)
    marks: dict[str, dict[str, float]] = {}
    timeline: list[tuple[float, str | None, str]] = []
    for entry in instance.all_logs(run.run_id):
        at = round(entry.timestamp - t0_epoch, 2)
        event = entry.dagster_event
        if event is None:
            timeline.append((at, entry.step_key, entry.user_message))
        elif event.event_type in marked:
            name = marked[event.event_type]
            marks.setdefault(entry.step_key or "run", {})[name] = entry.timestamp
            timeline.append((at, entry.step_key, name))
    steps = {}
    for key, got in marks.items():
        if key != "run" and "STEP_START" in got and "STEP_SUCCESS" in got:
            steps[key] = {"step_s": got["STEP_SUCCESS"] - got["STEP_START"]}
            if "STEP_WORKER_STARTING" in got:
                steps[key]["worker_start_s"] = got["STEP_START"] - got["STEP_WORKER_STARTING"]
    run_marks = marks.get("run", {})
    return {
        "run_id": run.run_id,
        "status": str(run.status.value),
        "steps": steps,
        "run_s": run_marks["RUN_SUCCESS"] - run_marks["RUN_START"]
        if {"RUN_START", "RUN_SUCCESS"} <= set(run_marks)
        else None,
        "timeline": timeline,
    }


def published(store_url: str, month: date) -> dict:
    """The published trades and bars of the month (manifests)."""
    from flow_assets.publish import read_manifest  # noqa: PLC0415
    from flow_assets.store import open_store  # noqa: PLC0415

    store = open_store(store_url)
    trades = read_manifest(store, "trades", EXCHANGE, SYMBOL, month)
    flow = read_manifest(store, "flow", EXCHANGE, SYMBOL, month)
    return {
        "trades_rows": trades.files["trades"].rows if trades else None,
        "trades_bytes": trades.files["trades"].size if trades else None,
        "flow_trades_in": flow.metadata["trades_in"] if flow else None,
        "flow_history": flow.metadata["history"] if flow else None,
    }


def materialize_command(partition: str) -> list[str]:
    """The measured path: ``dagster asset materialize`` of one partition of the exchange's
    group (raw_trades, then flow_bars)."""
    return [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "flow_assets.definitions",
        "--select",
        GROUP,
        "--partition",
        partition,
    ]


def pipeline_wrapper(partition: str, log_path: Path) -> dict:
    """(Wrapper process, standard library only) the materialization of one partition, measured."""
    return measure(materialize_command(partition), dict(os.environ), log_path)


def collect(months_json: str) -> dict:
    """(Child process, after the runs) each run's events from the Dagster instance and each
    month's published manifests from the store."""
    out = {}
    for label, (partition, month, t0_epoch) in json.loads(months_json).items():
        out[label] = {
            "events": run_events(partition, t0_epoch),
            "published": published(
                os.environ["FLOW_ASSETS_STORAGE_URL"], date.fromisoformat(month)
            ),
        }
    return out


def floor_wrapper(zip_path: Path, workdir: Path, log_path: Path) -> dict:
    """(Wrapper process) the floor child, measured the same way as the pipeline."""
    cmd = [PYTHON, SCRIPT, "floor-child", str(zip_path), str(workdir)]
    result = measure(cmd, dict(os.environ), log_path)
    lines = log_path.read_text().strip().splitlines()
    result["floor"] = json.loads(lines[-1]) if result["returncode"] == 0 and lines else None
    return result


def sync_instruments(env: dict[str, str], cwd: Path) -> None:
    """Register the instruments file's partitions in the benchmark's instance (what the
    daemon's instruments_sensor does), so ``dagster asset materialize`` finds them."""
    command = [PYTHON, "-m", "flow_assets.orchestration", "sync-instruments"]
    subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=True)


def _child_json(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict:
    out = subprocess.run(
        [PYTHON, SCRIPT, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def machine() -> dict:
    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "mem_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def snapshot(out_dir: Path, commit: str) -> tuple[Path, dict[str, str]]:
    """``commit``'s ``flow_assets`` exported (``git archive``) to ``out_dir/src``, and the
    environment that makes every process of the run import it from there.

    Others commit to the repository while a run lasts, and every Dagster step process imports
    the code afresh: without a snapshot, months of one run could measure different code.
    """
    src = out_dir / "src"
    src.mkdir(parents=True)
    data = subprocess.run(
        ["git", "archive", "--format=tar", commit, "flow_assets"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(src, filter="data")
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    probe = "import flow_assets; print(flow_assets.__file__)"
    where = subprocess.run(
        [PYTHON, "-c", probe], env=env, cwd=src, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not where.startswith(str(src)):
        raise RuntimeError(f"flow_assets resolves to {where}, not to the snapshot {src}")
    return src, env


FLOOR_DEFINITION = (
    "floor: the monthly zip unzipped to disk (streamed, 4 MiB copies) then pl.read_csv of the CSV"
    " (7 typed columns), one fresh process; strict floor: inflate to /dev/null + the same read_csv"
)
SERVERS = {
    "archive": "ArchiveServer (threaded; hashes each file (MD5 ETag) before sending it)",
    "plain": "python -m http.server --bind 127.0.0.1 (ThreadingHTTPServer, HTTP/1.0, no ETag)",
}
INSTANCES = {
    "run": "one DAGSTER_HOME for the run's months (fresh at the run's start)",
    "fresh": "a fresh DAGSTER_HOME for every month (instruments synced first)",
}


@contextlib.contextmanager
def serve(root: Path, kind: str) -> Iterator[str]:
    """The archive under ``root`` on 127.0.0.1: ``archive`` (the repo's ArchiveServer, in this
    process) or ``plain`` (``python -m http.server`` in a child process); yields its URL."""
    if kind == "archive":
        from flow_assets.sources.mirror import ArchiveServer  # noqa: PLC0415

        with ArchiveServer(root) as server:
            yield server.url
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def new_home(folder: Path) -> Path:
    """A fresh Dagster instance folder with the repo's ``dagster.yaml``."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", folder / "dagster.yaml")
    return folder


def run(
    scale: float,
    seed: int,
    only: set[str] | None,
    tag: str | None,
    commit: str = "HEAD",
    server_kind: str = "archive",
    instance: str = "run",
) -> dict:
    """Floor then pipeline for each month, in order; the results (also written as JSON)."""
    root = archive_root(scale, seed)
    name = tag or f"s{scale:g}-seed{seed}"
    out_dir = BENCH_DIR / f"run-{name}"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a fresh store and Dagster instance for every run
    head = _git("rev-parse", commit)
    src, code_env = snapshot(out_dir, head)
    sys.path.insert(0, str(src))
    global SCRIPT  # noqa: PLW0603  (the run's children run a copy: edits meanwhile change nothing)
    SCRIPT = shutil.copy(__file__, out_dir / "bench_pipeline.py")
    code_env["BENCH_PIPELINE_ROOT"] = str(ROOT)
    (out_dir / "logs").mkdir(parents=True)
    home = new_home(out_dir / "dagster_home")
    store = out_dir / "store"
    store.mkdir()
    instruments = out_dir / "instruments.yaml"
    instruments.write_text(
        f"instruments:\n  - exchange: {EXCHANGE}\n    symbol: {SYMBOL}\n    start: 2024-01\n"
    )
    work = out_dir / "floor-work"
    months = [s for s in plan(scale) if only is None or s.label in only]
    facts = {}
    for spec in months:
        sidecar = monthly_folder(root) / (spec.zip_name + ".bench.json")
        if not sidecar.exists():
            raise SystemExit(f"{sidecar} is missing: run `generate --scale {scale:g}` first")
        facts[spec.label] = json.loads(sidecar.read_text())
    results: dict = {
        "scale": scale,
        "seed": seed,
        "commit": head,
        "code": f"flow_assets of {head} (git archive into {src})",
        "shim_present": "TEMPORARY SHIM"
        in (src / "flow_assets/orchestration/resources.py").read_text(),
        "machine": machine(),
        "conditions": {
            "floor": FLOOR_DEFINITION,
            "server": f"{server_kind}: {SERVERS[server_kind]}",
            "instance": f"{instance}: {INSTANCES[instance]}",
            "load": "1-minute load average sampled every second of each measurement (loadavg_1m)"
            " and the CPU seconds the rest of the machine used meanwhile (others_cpu_s)",
            "commit": f"flow_assets of {head}",
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "months": {},
    }
    json_path = BENCH_DIR / f"results-{name}.json"
    with serve(root, server_kind) as url:
        env = {
            **code_env,
            "DAGSTER_HOME": str(home),
            "FLOW_ASSETS_STORAGE_URL": str(store),
            "FLOW_ASSETS_BINANCE_URL": url,
            "FLOW_ASSETS_INSTRUMENTS": str(instruments),
            "PYTHONUNBUFFERED": "1",
        }
        sync_instruments(env, src)
        for spec in months:
            if instance == "fresh" and spec is not months[0]:
                env["DAGSTER_HOME"] = str(new_home(out_dir / f"dagster_home-{spec.label}"))
                sync_instruments(env, src)
            zip_path = monthly_folder(root) / spec.zip_name
            row: dict = {
                "label": spec.label,
                "month": spec.period,
                "partition": spec.partition,
                "days_with_trades": spec.days,
                "trades": facts[spec.label]["trades"],
                "zip_mib": facts[spec.label]["zip_bytes"] / MiB,
                "csv_mib": facts[spec.label]["csv_bytes"] / MiB,
                "dagster_home": env["DAGSTER_HOME"],
            }
            print(f"[{_now()}] {spec.label} {spec.period}: floor ...", flush=True)
            floor = _child_json(
                [
                    "floor-wrapper",
                    str(zip_path),
                    str(work),
                    str(out_dir / "logs" / f"{spec.label}-floor.log"),
                ],
                env,
                src,
            )
            if floor["floor"] is None:
                raise RuntimeError(f"floor of {spec.label} failed: see {out_dir / 'logs'}")
            row["floor"] = floor
            print(
                f"[{_now()}]   floor {floor['floor']['floor_s']:.1f} s (unzip "
                f"{floor['floor']['unzip_s']:.1f} + read_csv {floor['floor']['read_csv_s']:.1f}),"
                f" peak RSS {floor['peak_rss_max_process_mib']:,.0f} MiB; inflate alone "
                f"{floor['floor']['inflate_only_s']:.1f} s",
                flush=True,
            )
            print(f"[{_now()}] {spec.label} {spec.period}: pipeline ...", flush=True)
            log_path = out_dir / "logs" / f"{spec.label}-pipeline.log"
            pipe = _child_json(["pipeline-wrapper", spec.partition, str(log_path)], env, src)
            row["pipeline"] = pipe
            results["months"][spec.label] = row
            if pipe["returncode"] != 0:
                print(f"  pipeline FAILED (rc {pipe['returncode']}): see {log_path}", flush=True)
            else:
                print(
                    f"[{_now()}]   pipeline {pipe['wall_s']:.1f} s, peak RSS "
                    f"{pipe['peak_rss_max_process_mib']:,.0f} MiB (tree "
                    f"{pipe['peak_rss_tree_mib']:,.0f}), load "
                    f"{pipe['loadavg_1m']['mean']:.1f}",
                    flush=True,
                )
            json_path.write_text(json.dumps(results, indent=1, default=str))
        collected = {}
        for dagster_home in {row["dagster_home"] for row in results["months"].values()}:
            done = {
                label: (row["partition"], row["month"] + "-01", row["pipeline"]["t0_epoch"])
                for label, row in results["months"].items()
                if row["pipeline"]["returncode"] == 0 and row["dagster_home"] == dagster_home
            }
            at_home = {**env, "DAGSTER_HOME": dagster_home}
            collected |= _child_json(["collect", json.dumps(done)], at_home, src)
    for label, row in results["months"].items():
        row["pipeline"].update(collected.get(label, {}))
        row["checks"] = _checks(row)
        if label in collected:
            row["phases"] = phases(row["pipeline"])
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["summary"] = summarize(results)
    json_path.write_text(json.dumps(results, indent=1, default=str))
    print_table(results)
    print(f"\nresults: {json_path}")
    return results


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _checks(row: dict) -> dict:
    """The published month holds the generated trades (raw trades and bars)."""
    pipe = row["pipeline"]
    if pipe["returncode"] != 0:
        return {"ok": False, "why": "run failed"}
    pub = pipe["published"]
    history = pub["flow_history"] or ""
    want_history = "carried from" if row["label"] == "M+1" else "warm-up"
    ok = (
        pub["trades_rows"] == row["trades"]
        and (pub["flow_trades_in"] or {}).get("exchange") == row["trades"]
        and history.startswith(want_history)
    )
    return {
        "ok": ok,
        "trades_rows": pub["trades_rows"],
        "bars_trades_in": (pub["flow_trades_in"] or {}).get("exchange"),
        "history": history,
    }


def step_name(step_key: str | None) -> str | None:
    """``raw_trades`` or ``flow_bars`` for an exchange's step key (``binance_futures__raw_trades``,
    ``binance_futures_flow_bars``), else the key itself."""
    for name in ("raw_trades", "flow_bars"):
        if step_key and step_key.endswith(name):
            return name
    return step_key


def named_steps(pipe: dict) -> dict[str, dict]:
    """A run's step figures keyed by :func:`step_name`."""
    return {step_name(key): value for key, value in pipe["events"]["steps"].items()}


def phases(pipe: dict) -> dict[str, float]:
    """Where the wall clock of one pipeline run went, from its timeline (seconds).

    raw_trades logs the download's end, the parse's end ("rows parsed (end of file)"), each day
    written to the sorted Parquet file, and the day-by-day validation; flow_bars logs the
    history it starts from and the end of binning + checking + staging of the bars.
    """
    timeline = pipe["events"]["timeline"]

    def at(step: str | None, test) -> float | None:  # type: ignore[no-untyped-def]
        hits = [
            t
            for t, key, msg in timeline
            if (step is None or step_name(key) == step) and test(msg or "")
        ]
        return hits[-1] if hits else None

    marks = {
        "run_start": at(None, lambda m: m == "RUN_START"),
        "raw_worker": at("raw_trades", lambda m: m == "STEP_WORKER_STARTING"),
        "raw_start": at("raw_trades", lambda m: m == "STEP_START"),
        "downloaded": at("raw_trades", lambda m: ": downloaded, " in m),
        "parsed": at("raw_trades", lambda m: "rows parsed (end of file)" in m),
        "written": at("raw_trades", lambda m: "trades written" in m),
        "validated": at("raw_trades", lambda m: "trades validated" in m),
        "raw_end": at("raw_trades", lambda m: m == "STEP_SUCCESS"),
        "bars_worker": at("flow_bars", lambda m: m == "STEP_WORKER_STARTING"),
        "bars_start": at("flow_bars", lambda m: m == "STEP_START"),
        "history": at("flow_bars", lambda m: ": history " in m),
        "binned": at("flow_bars", lambda m: "trades binned into" in m),
        "bars_end": at("flow_bars", lambda m: m == "STEP_SUCCESS"),
        "run_end": at(None, lambda m: m == "RUN_SUCCESS"),
    }
    spans = [
        ("cli start + load definitions", 0.0, "run_start"),
        ("raw_trades: step process start", "raw_worker", "raw_start"),
        ("raw_trades: download (HTTP, sha256)", "raw_start", "downloaded"),
        ("raw_trades: unzip + parse + spill by day", "downloaded", "parsed"),
        ("raw_trades: sorted Parquet write", "parsed", "written"),
        ("raw_trades: validation (pandera, by day)", "written", "validated"),
        ("raw_trades: defects check + store upload + commit", "validated", "raw_end"),
        ("between steps", "raw_end", "bars_worker"),
        ("flow_bars: step process start", "bars_worker", "bars_start"),
        ("flow_bars: manifests + carried state", "bars_start", "history"),
        ("flow_bars: binning + checks + staging", "history", "binned"),
        ("flow_bars: state + commit + 10 materializations", "binned", "bars_end"),
        ("run end + cli exit", "bars_end", "wall"),
    ]
    marks["wall"] = pipe["wall_s"]
    out = {}
    for name, a, b in spans:
        start = a if isinstance(a, float) else marks.get(a)
        end = marks.get(b)
        if start is not None and end is not None:
            out[name] = round(end - start, 2)
    return out


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares ``y = intercept + slope * x``: (slope, intercept, R^2)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return slope, intercept, (1 - ss_res / ss_tot) if ss_tot else 1.0


def _floor_cpu(floor: dict) -> float:
    """CPU seconds of the floor process, without the inflate-only pass after it."""
    return floor["tree_cpu_s"] - floor["floor"].get("extra_cpu_s", 0.0)


def summarize(results: dict) -> dict:
    """Ratios and verdicts against the issue's targets."""
    months = results["months"]
    summary: dict = {"per_month": {}}
    for label, row in months.items():
        if row["pipeline"]["returncode"] != 0:
            continue
        floor = row["floor"]["floor"]["floor_s"]
        steps = row["pipeline"]["events"]["steps"]
        steps_s = sum(s["step_s"] for s in steps.values())
        inflate = row["floor"]["floor"].get("inflate_only_s")
        strict = None if inflate is None else inflate + row["floor"]["floor"]["read_csv_s"]
        summary["per_month"][label] = {
            "strict_floor_s": strict,
            "ratio_pipeline_strict_floor": None
            if strict is None
            else row["pipeline"]["wall_s"] / strict,
            "trades": row["trades"],
            "floor_s": floor,
            "pipeline_s": row["pipeline"]["wall_s"],
            "steps_s": steps_s,
            "ratio_pipeline_floor": row["pipeline"]["wall_s"] / floor,
            "ratio_steps_floor": steps_s / floor,
            "cpu_pipeline_s": row["pipeline"]["tree_cpu_s"],
            "cpu_floor_s": _floor_cpu(row["floor"]),
            "ratio_cpu": row["pipeline"]["tree_cpu_s"] / _floor_cpu(row["floor"]),
            "peak_rss_max_process_mib": row["pipeline"]["peak_rss_max_process_mib"],
            "peak_rss_tree_mib": row["pipeline"]["peak_rss_tree_mib"],
        }
    per = summary["per_month"]
    weeks = [per[k] for k in ("W1", "W2", "W4") if k in per]
    if len(weeks) >= 2:
        xs = [w["trades"] / 1e6 for w in weeks]
        for what in ("pipeline_s", "steps_s", "cpu_pipeline_s"):
            ys = [w[what] for w in weeks]
            slope, intercept, r2 = _fit(xs, ys)
            summary[f"weeks_fit_{what}"] = {
                "seconds_per_million_trades": slope,
                "intercept_s": intercept,
                "r2": r2,
                "seconds_per_million_each": [y / x for x, y in zip(xs, ys, strict=True)],
            }
        rss = [w["peak_rss_max_process_mib"] for w in weeks]
        summary["weeks_peak_rss_max_over_min"] = max(rss) / min(rss)
    all_rss = [p["peak_rss_max_process_mib"] for p in per.values()]
    summary["peak_rss_under_2gib_every_run"] = bool(all_rss) and max(all_rss) < 2048
    summary["peak_rss_tree_under_2gib_every_run"] = (
        bool(per) and max(p["peak_rss_tree_mib"] for p in per.values()) < 2048
    )
    if "M" in per:
        summary["M_ratio"] = per["M"]["ratio_pipeline_floor"]
        summary["M_ratio_target_2x"] = per["M"]["ratio_pipeline_floor"] <= 2
        summary["M_ratio_acceptable_3x"] = per["M"]["ratio_pipeline_floor"] <= 3
    if "M" in per and "M+1" in per:
        summary["M1_over_M"] = per["M+1"]["pipeline_s"] / per["M"]["pipeline_s"]
        summary["M1_over_M_steps"] = per["M+1"]["steps_s"] / per["M"]["steps_s"]
        summary["M1_over_M_target_1.3x"] = summary["M1_over_M"] <= 1.3
    summary["all_checks_ok"] = all(r["checks"]["ok"] for r in months.values())
    return summary


def report(paths: list[Path]) -> None:
    """Medians over several runs (results JSONs) of the figures that load on a shared machine
    moves the most; every run's own figures as well."""
    import statistics  # noqa: PLC0415

    runs = [json.loads(p.read_text()) for p in paths]
    for r in runs:
        r["summary"] = summarize(r)  # recomputed: older JSONs lack some fields
    labels = [label for label in ("W1", "W2", "W4", "M", "M+1") if label in runs[0]["months"]]
    fields = [
        ("floor_s", "floor s", ".1f"),
        ("strict_floor_s", "strict fl s", ".1f"),
        ("ratio_pipeline_strict_floor", "pipe/strict", ".2f"),
        ("pipeline_s", "pipe s", ".1f"),
        ("steps_s", "steps s", ".1f"),
        ("ratio_pipeline_floor", "pipe/floor", ".2f"),
        ("ratio_steps_floor", "steps/floor", ".2f"),
        ("cpu_floor_s", "floor cpu", ".0f"),
        ("cpu_pipeline_s", "pipe cpu", ".0f"),
        ("ratio_cpu", "cpu ratio", ".2f"),
        ("peak_rss_max_process_mib", "RSS max", ",.0f"),
        ("peak_rss_tree_mib", "RSS tree", ",.0f"),
    ]
    print(
        "runs: "
        + ", ".join(f"{p.name} ({r['commit'][:8]})" for p, r in zip(paths, runs, strict=True))
    )
    for label in labels:
        per = [r["summary"]["per_month"][label] for r in runs]
        print(f"{label} ({per[0]['trades']:,} trades)")
        for key, name, fmt in fields:
            values = [p.get(key) for p in per if p.get(key) is not None]
            if not values:
                continue
            each = "  ".join(format(v, fmt) for v in values)
            print(f"  {name:<12} median {format(statistics.median(values), fmt):>8}   runs: {each}")
    for key in ("M1_over_M", "M1_over_M_steps"):
        values = [r["summary"][key] for r in runs if key in r["summary"]]
        if values:
            each = "  ".join(f"{v:.2f}" for v in values)
            print(f"{key:<16} median {statistics.median(values):.2f}   runs: {each}")
    if "M" in labels and "M+1" in labels:
        for what in ("pipeline_s", "cpu_pipeline_s"):
            m = statistics.median(r["summary"]["per_month"]["M"][what] for r in runs)
            m1 = statistics.median(r["summary"]["per_month"]["M+1"][what] for r in runs)
            print(f"median M+1 / median M ({what}): {m1 / m:.2f}")
    weeks = [w for w in ("W1", "W2", "W4") if w in labels]
    if len(weeks) == 3:
        for what in ("pipeline_s", "steps_s", "cpu_pipeline_s"):
            med = [
                statistics.median(r["summary"]["per_month"][w][what] for r in runs) for w in weeks
            ]
            trades = [runs[0]["summary"]["per_month"][w]["trades"] / 1e6 for w in weeks]
            per_m = "  ".join(f"{y / x:.3f}" for x, y in zip(trades, med, strict=True))
            slope, intercept, r2 = _fit(trades, med)
            print(
                f"weeks, median {what}: per M trades (W1 W2 W4) {per_m}; fit {slope:.3f} s per "
                f"M trades + {intercept:.1f} s (R^2 {r2:.4f})"
            )


def print_table(results: dict) -> None:
    print()
    print(
        f"machine: {results['machine']}  commit {results['commit'][:10]}"
        f"  scale {results['scale']:g}  shim present: {results['shim_present']}"
    )
    for key, value in results.get("conditions", {}).items():
        print(f"  {key}: {value}")
    head = (
        f"{'month':<5} {'trades':>12} {'zip MiB':>8} {'floor s':>8} {'pipe s':>8} {'ratio':>6} "
        f"{'cpu f/p s':>9} {'cpu rat':>7} "
        f"{'raw s':>7} {'bars s':>7} {'RSS max':>8} {'RSS tree':>9} {'ru_max':>7} "
        f"{'floorRSS':>9} {'load':>9} {'check':>5}"
    )
    print(head)
    for label, row in results["months"].items():
        pipe, floor = row["pipeline"], row["floor"]
        if pipe["returncode"] != 0:
            print(f"{label:<5} {row['trades']:>12,} pipeline failed")
            continue
        steps = named_steps(pipe)
        load = pipe["loadavg_1m"]
        print(
            f"{label:<5} {row['trades']:>12,} {row['zip_mib']:>8,.0f} "
            f"{floor['floor']['floor_s']:>8.1f} {pipe['wall_s']:>8.1f} "
            f"{pipe['wall_s'] / floor['floor']['floor_s']:>5.2f}x "
            f"{_floor_cpu(floor):>4.0f}/{pipe['tree_cpu_s']:<4.0f} "
            f"{pipe['tree_cpu_s'] / _floor_cpu(floor):>6.2f}x "
            f"{steps.get('raw_trades', {}).get('step_s', float('nan')):>7.1f} "
            f"{steps.get('flow_bars', {}).get('step_s', float('nan')):>7.1f} "
            f"{pipe['peak_rss_max_process_mib']:>8,.0f} {pipe['peak_rss_tree_mib']:>9,.0f} "
            f"{pipe['ru_maxrss_children_mib']:>7,.0f} {floor['peak_rss_max_process_mib']:>9,.0f} "
            f"{load['min']:>4.1f}-{load['max']:<4.1f} {'ok' if row['checks']['ok'] else 'FAIL':>5}"
        )
    rows = [r for r in results["months"].values() if "phases" in r]
    if rows:
        print()
        print(f"{'phase (s)':<52}" + "".join(f"{r['label']:>8}" for r in rows))
        for name in rows[-1]["phases"]:
            print(
                f"{name:<52}"
                + "".join(f"{r['phases'].get(name, float('nan')):>8.1f}" for r in rows)
            )
    s = results.get("summary", {})
    for what in ("pipeline_s", "steps_s", "cpu_pipeline_s"):
        fit = s.get(f"weeks_fit_{what}")
        if fit:
            each = ", ".join(f"{v:.3f}" for v in fit["seconds_per_million_each"])
            print(
                f"weeks, {what}: {fit['seconds_per_million_trades']:.3f} s per M trades + "
                f"{fit['intercept_s']:.1f} s fixed (R^2 {fit['r2']:.4f}); s per M trades each: "
                f"{each}"
            )
    if "weeks_peak_rss_max_over_min" in s:
        print(f"weeks: peak RSS (max process) max/min = {s['weeks_peak_rss_max_over_min']:.2f}")
    if results["scale"] != 1:
        print(
            f"(scale {results['scale']:g}: a functional check; the verdicts below are the issue's "
            "only at scale 1, since a month's fixed costs dominate small months)"
        )
    if "M_ratio" in s:
        print(
            f"M: pipeline / floor = {s['M_ratio']:.2f}x (target <= 2x: "
            f"{'met' if s['M_ratio_target_2x'] else 'NOT met'}; <= 3x: "
            f"{'met' if s['M_ratio_acceptable_3x'] else 'NOT met'})"
        )
    if "M1_over_M" in s:
        print(
            f"M+1 / M = {s['M1_over_M']:.2f}x wall, {s['M1_over_M_steps']:.2f}x steps (target <= "
            f"1.3x: {'met' if s['M1_over_M_target_1.3x'] else 'NOT met'})"
        )
    if s:
        print(
            f"peak RSS < 2 GiB in every run: max process "
            f"{'met' if s['peak_rss_under_2gib_every_run'] else 'NOT met'}, tree "
            f"{'met' if s['peak_rss_tree_under_2gib_every_run'] else 'NOT met'};"
            f" checks {'ok' if s['all_checks_ok'] else 'FAILED'}"
        )


# ---------------------------------------------------------------------------------------------
# optional profile (py-spy, not needed for the figures)
# ---------------------------------------------------------------------------------------------

# (category, substrings of a stack: the first category with a match wins)
CATEGORIES = [
    ("imports (process start)", ("_find_and_load",)),
    ("raw: download (HTTP + sha256)", ("download_verified", "download (")),
    ("raw: sorted Parquet write (TradeSink.commit)", ("TradeSink.commit",)),
    ("raw: row policies + spill by day (TradeSink.add)", ("TradeSink.add",)),
    ("raw: unzip + CSV parse (read_trades)", ("read_trades", "parse_chunks")),
    ("raw: validation (validate_trades)", ("validate_trades",)),
    ("raw: defects check (upstream_defects)", ("upstream_defects",)),
    ("bars: validation (validate_bars)", ("validate_bars",)),
    ("bars: reconciliation (source_totals, reconcile)", ("source_totals", "reconcile (")),
    ("bars: carried state read", ("_carried_state",)),
    ("bars: trades read by day (_chunks)", ("_chunks (",)),
    ("bars: engine add (binning)", ("FlowBarsEngine.add",)),
    ("bars: engine bars (iter_bars: grids, rolling)", ("iter_bars", "FlowBarsEngine.finish")),
    ("bars: engine carry / state", ("FlowBarsEngine.carry", "state_to_frame")),
    ("store: Parquet writes + uploads + commits", ("write_parquet", "put_file", "Staging.commit")),
]


def categorize(stack: str) -> str:
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            return name
    return "dagster (event log, sqlite, runtime)"


def profile(
    scale: float, seed: int, label: str, py_spy: str, rate: int, commit: str = "HEAD"
) -> dict:
    """Materialize one month under ``py-spy record --subprocesses --idle`` (a fresh store; ``M+1``
    after an unprofiled ``M``) and attribute the main threads' wall time to categories."""
    specs = {s.label: s for s in plan(scale)}
    todo = ["M", "M+1"] if label == "M+1" else [label]
    out_dir = BENCH_DIR / f"profile-s{scale:g}-{label}"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    head = _git("rev-parse", commit)
    src, code_env = snapshot(out_dir, head)
    sys.path.insert(0, str(src))
    from flow_assets.sources.mirror import ArchiveServer  # noqa: PLC0415

    (out_dir / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", out_dir / "dagster_home" / "dagster.yaml")
    instruments = out_dir / "instruments.yaml"
    instruments.write_text(
        f"instruments:\n  - exchange: {EXCHANGE}\n    symbol: {SYMBOL}\n    start: 2024-01\n"
    )
    raw = out_dir / "py-spy.txt"
    with ArchiveServer(archive_root(scale, seed)) as server:
        env = {
            **code_env,
            "DAGSTER_HOME": str(out_dir / "dagster_home"),
            "FLOW_ASSETS_STORAGE_URL": str(out_dir / "store"),
            "FLOW_ASSETS_BINANCE_URL": server.url,
            "FLOW_ASSETS_INSTRUMENTS": str(instruments),
        }
        sync_instruments(env, src)
        for name in todo:
            cmd = materialize_command(specs[name].partition)
            if name == label:
                spy = [py_spy, "record", "--subprocesses", "--idle", "--threads", "-r", str(rate)]
                cmd = [*spy, "-f", "raw", "-o", str(raw), "--", *cmd]
            t0 = time.perf_counter()
            with (out_dir / f"{name}.log").open("wb") as log:
                subprocess.run(
                    cmd, env=env, cwd=src, stdout=log, stderr=subprocess.STDOUT, check=True
                )
            print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    seconds: dict[str, float] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        processes, _, rest = stack.partition(";thread (")
        process = processes.rsplit("process ", 1)[-1]
        if not rest.split(";", 1)[0].endswith(": MainThread"):
            continue  # background threads (heartbeats, the CSV read-ahead) would double count
        if "spawn_main" in process:
            kind = "step process"
        elif "asset materialize" in process:
            kind = "dagster CLI"
        else:
            continue  # resource tracker, orphan watchers: idle helpers
        key = f"{kind} | {categorize(rest)}"
        seconds[key] = seconds.get(key, 0.0) + int(count) / rate
    result = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
    (out_dir / "profile.json").write_text(json.dumps(result, indent=1))
    print(f"code: flow_assets of {head}")
    print(f"main-thread wall seconds by category (py-spy at {rate} Hz, idle included):")
    for key, value in result.items():
        print(f"  {value:8.1f}  {key}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "run", "all"):
        p = sub.add_parser(name)
        p.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
        p.add_argument("--seed", type=int, default=7)
        if name != "generate":
            p.add_argument("--only", default=None, help="comma-separated labels: W1,W2,W4,M,M+1")
            p.add_argument("--tag", default=None, help="name of the run folder and results JSON")
            p.add_argument("--commit", default="HEAD", help="the commit whose code is measured")
            p.add_argument("--server", default="archive", choices=sorted(SERVERS))
            p.add_argument("--instance", default="run", choices=sorted(INSTANCES))
    p = sub.add_parser("report", help="medians over several results JSONs")
    p.add_argument("results", nargs="+", type=Path)
    p = sub.add_parser("profile", help="one month under py-spy (optional)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--label", default="M", choices=["W1", "W2", "W4", "M", "M+1"])
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    p.add_argument("--rate", type=int, default=20, help="samples per second")
    p.add_argument("--commit", default="HEAD", help="the commit whose code is profiled")
    p = sub.add_parser("floor-child")
    p.add_argument("zip")
    p.add_argument("workdir")
    p = sub.add_parser("floor-wrapper")
    p.add_argument("zip")
    p.add_argument("workdir")
    p.add_argument("log")
    p = sub.add_parser("pipeline-wrapper")
    p.add_argument("partition")
    p.add_argument("log")
    p = sub.add_parser("collect")
    p.add_argument("months")
    ns = parser.parse_args(argv)
    if ns.command == "generate":
        generate(ns.scale, ns.seed)
    elif ns.command in ("run", "all"):
        if ns.command == "all":  # in a child: this process stays small
            cmd = [PYTHON, __file__, "generate", "--scale", f"{ns.scale:g}", "--seed", str(ns.seed)]
            subprocess.run(cmd, check=True, cwd=ROOT)
        only = set(ns.only.split(",")) if ns.only else None
        run(ns.scale, ns.seed, only, ns.tag, ns.commit, ns.server, ns.instance)
    elif ns.command == "report":
        report(ns.results)
    elif ns.command == "profile":
        profile(ns.scale, ns.seed, ns.label, ns.py_spy, ns.rate, ns.commit)
    elif ns.command == "floor-child":
        print(json.dumps(floor_child(Path(ns.zip), Path(ns.workdir))))
    elif ns.command == "floor-wrapper":
        print(json.dumps(floor_wrapper(Path(ns.zip), Path(ns.workdir), Path(ns.log))))
    elif ns.command == "pipeline-wrapper":
        print(json.dumps(pipeline_wrapper(ns.partition, Path(ns.log))))
    else:
        print(json.dumps(collect(ns.months), default=str))


if __name__ == "__main__":
    main()
