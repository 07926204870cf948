"""The main job on the embedded defaults, offline: ``python -m flow_assets.demo``.

1. Generates a local mirror of the Binance USD-M and OKX archives (exact layouts and formats,
   with CHECKSUM files for Binance) plus a Tardis-style CSV with arrival times, for a few
   instruments over three months, under ``data/demo/mirror``.
2. Serves the mirror on 127.0.0.1 and points ``FLOW_ASSETS_BINANCE_URL`` / ``FLOW_ASSETS_OKX_URL``
   at it; serves the exchanges' metadata endpoints (a sample of every kind of listed perpetual)
   for ``FLOW_ASSETS_BINANCE_API_URL`` / ``FLOW_ASSETS_OKX_API_URL``.
3. Materializes the instrument catalogs (the OKX contract values come from there) and registers
   the instrument partitions, as ``instruments_sensor`` does on the daemon.
4. Runs every instrument-month through Dagster (each exchange's flow job: raw trades, flow bars
   and their checks), months in order, then the daily cross-exchange summary, on the persistent
   SQLite instance in ``.dagster_home`` — so the runs, materializations and checks can be browsed in
   ``dagster dev`` afterwards (``--dev`` starts it, with the mirror still served).
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from flow_assets.catalog.mirror import CatalogServer
from flow_assets.catalog.samples import binance_sample, okx_sample
from flow_assets.cli import api_howto
from flow_assets.client import get_metrics
from flow_assets.instruments import InstrumentEntry, load_config
from flow_assets.orchestration.automation import flow_job_name
from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.coverage import COVERAGE_JOB
from flow_assets.orchestration.definitions import build_definitions, default_resources
from flow_assets.orchestration.partitions import partition_key
from flow_assets.publish import list_manifests, manifest_key
from flow_assets.sources.mirror import (
    ArchiveServer,
    sample_trades,
    write_binance,
    write_okx,
    write_tardis,
)
from flow_assets.sources.report import month_bounds
from flow_assets.store import ObjectStore, open_store

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO / "data" / "demo"
DAGSTER_HOME = REPO / ".dagster_home"
MONTHS = (date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1))
ARCHIVE_INSTRUMENTS = (
    ("binance-futures", "perpetual-BTC-USDT:USDT"),
    ("binance-futures", "perpetual-ETH-USDT:USDT"),
    ("okx-perps", "perpetual-BTC-USDT:USDT"),
)
TARDIS_INSTRUMENT = ("binance-futures", "perpetual-SOL-USDT:USDT")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the UI has it all


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


def generate_mirror(root: Path, months: tuple[date, ...], per_month: int) -> Path:
    """Write the archive mirror under ``root``; returns the instruments file it describes."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    lines = ["instruments:"]
    for number, (exchange, symbol) in enumerate(ARCHIVE_INSTRUMENTS):
        trades = _trades(months, per_month, seed=100 * number)
        if exchange == "binance-futures":
            write_binance(trades, root, symbol, monthly=True)
        else:
            write_okx(trades, root, symbol)
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
    return instruments


def run_backfill(
    defs: dg.Definitions,
    entries: list[InstrumentEntry],
    months: tuple[date, ...],
    instance: dg.DagsterInstance,
) -> list[dg.ExecuteInProcessResult]:
    """Every instrument-month through its exchange's flow job (months in order), the summaries,
    then each exchange's tracked coverage."""
    summary_job = defs.resolve_job_def("summary_job")
    results = []
    tags = {"flow_assets/backfill": f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"}
    for month in months:
        for entry in entries:
            key = str(partition_key(entry, month))
            print(f"  {entry.exchange} {key} ...", flush=True)
            result = defs.resolve_job_def(flow_job_name(entry.exchange)).execute_in_process(
                partition_key=key, instance=instance, tags=tags, run_config=QUIET
            )
            results.append(result)
        results.append(
            summary_job.execute_in_process(
                partition_key=month.isoformat(), instance=instance, tags=tags, run_config=QUIET
            )
        )
    coverage_job = defs.resolve_job_def(COVERAGE_JOB)  # which months are tracked, which done
    results.append(coverage_job.execute_in_process(instance=instance, tags=tags))
    return results


def report(store: ObjectStore, results: list[dg.ExecuteInProcessResult], instruments: Path) -> None:
    """What was published, a read back through ``get_metrics``, and how to go on."""
    failed = [r.run_id for r in results if not r.success]
    published = list_manifests(store, "flow")
    files = sum(len(m.files) for m in published)
    print(
        f"\n{len(results) - len(failed)}/{len(results)} runs succeeded; {len(published)} "
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
        f"\nBrowse it all:  {env} .venv/bin/dagster dev\n"
        "(or `bash scripts/demo.sh --dev` to also keep the mirror and the catalog served for "
        "new runs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades-per-month", type=int, default=20_000)
    parser.add_argument("--dev", action="store_true", help="then start `dagster dev` on it")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    DAGSTER_HOME.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", DAGSTER_HOME / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(DAGSTER_HOME)
    print(f"1/4 generating a local archive mirror under {DEMO_DIR / 'mirror'}", flush=True)
    instruments = generate_mirror(DEMO_DIR / "mirror", MONTHS, args.trades_per_month)
    os.environ["FLOW_ASSETS_INSTRUMENTS"] = str(instruments)
    store = open_store()
    with (
        ArchiveServer(DEMO_DIR / "mirror") as server,
        CatalogServer(binance_sample(), okx_sample()) as catalogs,
    ):
        for name, url in (("BINANCE", server.url), ("OKX", server.url)):
            os.environ[f"FLOW_ASSETS_{name}_URL"] = url
            os.environ[f"FLOW_ASSETS_{name}_API_URL"] = catalogs.url
        print(f"2/4 serving it on {server.url}, the exchanges' metadata on {catalogs.url}")
        config = load_config(instruments)
        defs = build_definitions(config, default_resources())
        with dg.DagsterInstance.get() as instance:
            print("3/4 materializing the instrument catalogs (every listed perpetual)", flush=True)
            catalog = defs.resolve_job_def("instrument_catalog_job")
            results = [catalog.execute_in_process(instance=instance, run_config=QUIET)]
            # What the instruments_sensor does on the daemon: the instrument partitions and
            # their tracked months (catalog/{exchange}/tracked.json in the store).
            run_instruments_sensor(defs, instance)
            entries = list(config.entries)
            print(f"4/4 materializing {len(entries)} instruments x {len(MONTHS)} months")
            results += run_backfill(defs, entries, MONTHS, instance)
        report(store, results, instruments)
        if args.dev:
            subprocess.run(
                [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml")],
                cwd=REPO,
                check=False,
            )
    return 0 if all(r.success for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
