"""The main job on the embedded defaults, offline: ``python -m flow_assets.demo``.

1. Generates a local mirror of the venues' archives (each venue's exact layout and format, with
   its checksum files where it publishes them, by its own writer) plus a Tardis-style CSV with
   arrival times, for a few instruments over three months, under ``data/demo/mirror``.
2. Serves the mirror on 127.0.0.1 and points every venue's archive variable
   (``FLOW_ASSETS_BINANCE_URL``, ...) at it; serves every venue's metadata endpoints in its exact
   JSON shape (a sample of every kind of listed perpetual) for its catalog variable
   (``FLOW_ASSETS_BINANCE_API_URL``, ...).
3. Starts ``dagster dev`` (webserver, daemon, code server) on the persistent SQLite instance in
   ``.dagster_home`` and launches everything through the webserver's GraphQL API, as the UI
   does: the instrument catalogs (one run; contract values come from there), then the
   instrument partitions are registered (what ``instruments_sensor`` does on the daemon), then a
   backfill of each venue's flow job over every instrument-month and one of ``summary_job``,
   which the daemon's queue executes (2 runs at once, an instrument's months in order). The runs
   carry the code location's origin: the job's Runs tab, Overview's timeline and the Backfills
   tab list them in ``dagster dev`` afterwards (``--dev`` keeps it running, with the mirror
   still served).
"""

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.catalog.mirror import CatalogServer
from flow_assets.cli import api_howto
from flow_assets.client import get_metrics
from flow_assets.instruments import InstrumentEntry, InstrumentsConfig, load_config
from flow_assets.orchestration.automation import flow_job_name
from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.coverage import COVERAGE_JOB
from flow_assets.orchestration.definitions import build_definitions, default_resources
from flow_assets.orchestration.partitions import partition_key
from flow_assets.publish import list_manifests, manifest_key
from flow_assets.sources.mirror import (
    ArchiveServer,
    sample_trades,
    write_tardis,
)
from flow_assets.sources.report import month_bounds
from flow_assets.store import ObjectStore, open_store
from flow_assets.venues import VENUES, venue
from flow_assets.webui import (
    IN_PROCESS,
    TERMINAL,
    DagsterDev,
    LaunchError,
    launch_job_backfill,
    launch_run,
    wait_runs,
)

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "data" / "demo"
DAGSTER_HOME = REPO / ".dagster_home"
MONTHS = (date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1))
ARCHIVE_INSTRUMENTS = (
    ("binance-futures", "perpetual-BTC-USDT:USDT"),
    ("binance-futures", "perpetual-ETH-USDT:USDT"),
    ("okx-perps", "perpetual-BTC-USDT:USDT"),
    ("binance-futures-cm", "perpetual-BTC-USD:BTC"),
    ("bybit-perps", "perpetual-BTC-USDT:USDT"),
)
TARDIS_INSTRUMENT = ("binance-futures", "perpetual-SOL-USDT:USDT")
# Steps in the run worker's process, console logs quiet (the UI has them all).
RUN_CONFIG = {**IN_PROCESS, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RUN_TIMEOUT = 900.0  # seconds the demo waits for its runs
# The catalogs are the local mirror's: no pacing of OKX's candle requests (20 per 2 s there);
# its REST roots stay the venues' variables, which the demo sets.
CATALOG_RUN_CONFIG = {**RUN_CONFIG, "resources": {"catalog_api": {"config": {"candle_pace": 0}}}}


def _trades(months: tuple[date, ...], per_month: int, seed: int) -> pl.DataFrame:
    frames = []
    for number, month in enumerate(months):
        start, stop = month_bounds(month)
        frames.append(
            sample_trades(
                start, stop, per_month, seed=seed + number, first_id=1 + number * per_month
            )
        )
    return pl.concat(frames)


def generate_mirror(
    root: Path, months: tuple[date, ...], per_month: int
) -> tuple[Path, dict[str, Any]]:
    """Write the archive mirror under ``root``; returns the instruments file it describes and
    each venue's catalog document (its sample, also answering the venue's own daily figures
    for the trades where its REST API publishes them)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    documents = {name: v.catalog.sample() for name, v in VENUES.items()}
    lines = ["instruments:"]
    for number, (exchange, symbol) in enumerate(ARCHIVE_INSTRUMENTS):
        trades = _trades(months, per_month, seed=100 * number)
        described = venue(exchange)
        figures = described.exchange_figures  # the exchange's own aggregation, where it has one
        options = {"klines": True} if figures is not None and figures.root == "archive" else {}
        described.write_archive(trades, root, symbol, **options)
        if figures is not None and figures.serve is not None:
            documents[exchange] = figures.serve(documents[exchange], symbol, trades)
        lines += [
            f"  - exchange: {exchange}",
            f"    symbol: {symbol}",
            f"    start: {months[0]:%Y-%m}",
        ]
    exchange, symbol = TARDIS_INSTRUMENT
    rng = random.Random(7)
    for number, month in enumerate(months):
        trades = _trades((month,), per_month, seed=900 + number).with_columns(
            trade_id=pl.col("trade_id") + number * per_month,
            arrival_ts=pl.col("exchange_ts")
            + pl.Series([timedelta(milliseconds=rng.randrange(20, 400)) for _ in range(per_month)]),
        )
        write_tardis(
            trades, root / "tardis" / "SOLUSDT" / f"{month:%Y-%m}.csv.gz", exchange, symbol
        )
    lines += [
        f"  - exchange: {exchange}",
        f"    symbol: {symbol}",
        f"    start: {months[0]:%Y-%m}",
        f"    tardis: {root}/tardis/{{native}}/{{month}}.csv.gz",
    ]
    instruments = root.parent / "instruments.yaml"
    instruments.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return instruments, documents


def _partitions(entries: list[InstrumentEntry], months: tuple[date, ...]) -> dict[str, list[str]]:
    """Each exchange's flow job and its partitions, months in order (a backfill submits its runs
    in this order, and the queue runs one instrument's months one after another)."""
    jobs: dict[str, list[str]] = {}
    for month in months:
        for entry in entries:
            jobs.setdefault(flow_job_name(entry.exchange), []).append(
                str(partition_key(entry, month))
            )
    return jobs


def _printer(done: set[str]):
    """A progress callback printing each run once it has ended."""

    def show(found: list[dict]) -> None:
        for run in found:
            if run["status"] in TERMINAL and run["runId"] not in done:
                done.add(run["runId"])
                key = run["tags"].get("dagster/partition", "")
                print(f"  {run['jobName']} {key} {run['status']}", flush=True)

    return show


def run_backfill(
    dev: DagsterDev, entries: list[InstrumentEntry], months: tuple[date, ...], tags: dict
) -> list[dict]:
    """A backfill of each exchange's flow job over every instrument-month, launched through the
    webserver as the UI's "Launch backfill" does and executed by the daemon; then one of
    ``summary_job`` over the months. Returns every run, with its status."""
    done: set[str] = set()
    jobs = _partitions(entries, months)
    flow_tags = {**tags, "flow_assets/step": "flow"}
    for job, keys in jobs.items():
        backfill = launch_job_backfill(dev, job, keys, RUN_CONFIG, flow_tags)
        print(f"  backfill {backfill}: {job}, {len(keys)} instrument-months", flush=True)
    total = sum(len(keys) for keys in jobs.values())
    flow = wait_runs(dev, flow_tags, total, RUN_TIMEOUT, _printer(done))
    summary_tags = {**tags, "flow_assets/step": "summary"}
    backfill = launch_job_backfill(
        dev, "summary_job", [m.isoformat() for m in months], RUN_CONFIG, summary_tags
    )
    print(f"  backfill {backfill}: summary_job, {len(months)} months", flush=True)
    summary = wait_runs(dev, summary_tags, len(months), RUN_TIMEOUT, _printer(done))
    coverage_tags = {**tags, "flow_assets/step": "coverage"}  # which months tracked, which done
    launch_run(dev, COVERAGE_JOB, RUN_CONFIG, coverage_tags)
    return flow + summary + wait_runs(dev, coverage_tags, 1, RUN_TIMEOUT, _printer(done))


def report(store: ObjectStore, runs: list[dict], instruments: Path, dev: DagsterDev) -> None:
    """What was published, a read back through ``get_metrics``, and how to go on."""
    failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
    published = list_manifests(store, "flow")
    files = sum(len(m.files) for m in published)
    print(
        f"\n{len(runs) - len(failed)}/{len(runs)} runs succeeded; {len(published)} "
        f"instrument-months published ({files} files, each month under one manifest)"
    )
    for m in published[:2]:
        print(f"  {store.uri(manifest_key('flow', m.exchange, m.symbol, m.month))}")
    print("  ...")
    exchange, symbol = ARCHIVE_INSTRUMENTS[0]
    start, end = MONTHS[0], MONTHS[0] + timedelta(days=2)
    sample = get_metrics(
        metric="flow",
        exchange=exchange,
        symbol=symbol,
        interval="1d",
        start_date=start,
        end_date=end,
    )
    print(
        f"\nget_metrics(metric='flow', exchange={exchange!r}, symbol={symbol!r}, "
        f"interval='1d', ...):\n{sample.select(sample.columns[:6])}"
    )
    print("\n" + api_howto(exchange, symbol, start, end))
    env = f"DAGSTER_HOME={DAGSTER_HOME} FLOW_ASSETS_INSTRUMENTS={instruments}"
    print(
        f"\nThe runs, the backfills (Runs -> Backfills), the materializations and checks "
        f"were in {dev.url} while the demo ran. Browse them again:\n"
        f"  {env} .venv/bin/dagster dev      # http://127.0.0.1:3000, Ctrl-C stops it\n"
        "(or `bash scripts/demo.sh --dev` to keep the mirror and the catalog served for new runs)"
    )


def materialize(
    dev: DagsterDev, config: InstrumentsConfig, months: tuple[date, ...], tags: dict
) -> list[dict]:
    """Through ``dev``: the catalogs (one run), the instrument partitions, then the backfills
    of every instrument over ``months``. Returns every run with its status."""
    print("4/5 materializing the instrument catalogs (every listed perpetual)", flush=True)
    catalog_tags = {**tags, "flow_assets/step": "catalog"}
    launch_run(dev, "instrument_catalog_job", CATALOG_RUN_CONFIG, catalog_tags)
    runs = wait_runs(dev, catalog_tags, 1, RUN_TIMEOUT)
    if runs[0]["status"] != "SUCCESS":
        raise LaunchError(f"the catalog run {runs[0]['runId']} ended {runs[0]['status']}")
    # What instruments_sensor does on the daemon (every 5 minutes): the instrument partitions
    # and their tracked months (catalog/{exchange}/tracked.json in the store).
    defs = build_definitions(config, default_resources())
    with dg.DagsterInstance.get() as instance:
        run_instruments_sensor(defs, instance)
    _exit_on_sigterm()  # Dagster's in-process evaluation remaps SIGTERM (_utils/interrupts.py)
    entries = list(config.entries)
    print(
        f"5/5 backfilling {len(entries)} instruments x {len(months)} months "
        "(runs queued by the daemon, 2 at a time)",
        flush=True,
    )
    return runs + run_backfill(dev, entries, months, tags)


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so `dagster dev` (its own process group) is stopped too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades-per-month", type=int, default=20_000)
    parser.add_argument("--dev", action="store_true", help="keep `dagster dev` running after")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    _exit_on_sigterm()

    DAGSTER_HOME.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", DAGSTER_HOME / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(DAGSTER_HOME)
    print(f"1/5 generating a local archive mirror under {DEMO_DIR / 'mirror'}", flush=True)
    instruments, documents = generate_mirror(DEMO_DIR / "mirror", MONTHS, args.trades_per_month)
    os.environ["FLOW_ASSETS_INSTRUMENTS"] = str(instruments)
    store = open_store()
    tags = {"flow_assets/backfill": f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"}
    with (
        ArchiveServer(DEMO_DIR / "mirror") as server,
        CatalogServer(documents) as catalogs,
    ):
        for each in VENUES.values():
            os.environ[each.archive.url_env] = server.url
            os.environ[each.catalog.url_env] = catalogs.url
        print(f"2/5 serving it on {server.url}, the exchanges' metadata on {catalogs.url}")
        port = 3000 if args.dev else 0
        log = DEMO_DIR / "dagster-dev.log"
        with DagsterDev(REPO / "workspace.yaml", os.environ, log, port) as dev:
            print(f"3/5 dagster dev (webserver and daemon) on {dev.url}, its output in {log}")
            runs = materialize(dev, load_config(instruments), MONTHS, tags)
            report(store, runs, instruments, dev)
            if args.dev:
                print(f"\nServing {dev.url} with the mirror; Ctrl-C stops it.", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    dev.process.wait()
    return 0 if all(r["status"] == "SUCCESS" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
