"""Every venue side by side in ONE backfill on the production topology.

One instrument-month of each venue of the registry, each archive in its venue's exact layout,
is launched as one asset backfill through the webserver's GraphQL ``launchPartitionBackfill``
(as the UI sends a backfill of several assets) and executed by a real daemon. The venues'
assets have different partitions definitions (each venue's instrument dimension is its own
dynamic partitions), so the backfill names a partition per asset (``partitionsByAssets``, one
key range per asset) rather than one list of partition names for every asset, which Dagster
accepts only when every selected asset shares one partitions definition.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from flow_assets.instruments import InstrumentEntry
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import FlowStore
from flow_assets.sources.mirror import sample_trades
from flow_assets.sources.report import month_bounds
from flow_assets.venues import VENUES
from flow_assets_tests.production import REPO, Topology, render_instance
from flow_assets_tests.s3_fixtures import ACCESS_KEY, REGION, SECRET_KEY, moto_client
from flow_assets_tests.test_production import (
    LAUNCH,
    OVERRIDES,
    RUN_CONFIG,
    backfill_runs,
    wait_backfill,
)
from flow_assets_tests.venue_runs import assert_bars_match_reference, published_trades

MONTH = date(2024, 3, 1)
TRADES = 300
# One instrument per venue, all different instrument keys (so the per-instrument run limit
# does not serialize them), each with a contract value in the seed table where sizes are
# contracts (no catalog is materialized here).
SYMBOLS = {
    "binance-futures": "perpetual-ETH-USDT:USDT",
    "okx-perps": "perpetual-BTC-USDT:USDT",
    "binance-futures-cm": "perpetual-BTC-USD:BTC",
    "bybit-perps": "perpetual-SOL-USDT:USDT",
}
CONTRACT_USD = {"binance-futures-cm": 100.0}  # notional in whole contracts of this size


@dataclass
class Venues:
    topology: Topology
    store_url: str
    trades: dict[str, pl.DataFrame]


def _source_trades(n: int, exchange: str) -> pl.DataFrame:
    start, stop = month_bounds(MONTH)
    trades = sample_trades(start, stop, TRADES, seed=70 + n)
    size = CONTRACT_USD.get(exchange)
    if size is None:
        return trades
    notional = (pl.col("notional") / size).ceil() * size
    return trades.with_columns(notional=notional, base_qty=notional / pl.col("price"))


def _environment(tmp_path: Path, archive_url: str, postgres_env: dict[str, str]) -> dict[str, str]:
    instruments = tmp_path / "instruments.yaml"
    listed = [{"exchange": e, "symbol": s, "start": f"{MONTH:%Y-%m}"} for e, s in SYMBOLS.items()]
    instruments.write_text(yaml.safe_dump({"instruments": listed}))
    urls = {v.archive.url_env: archive_url for v in VENUES.values()}  # the registry's names
    return {
        **postgres_env,
        **urls,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FLOW_ASSETS_INSTRUMENTS": str(instruments),
        "FLOW_ASSETS_STORAGE_URL": str(tmp_path / "store"),
        "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


@pytest.fixture
def venues(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_env: dict[str, str],
    s3_server: str,
    mirror_root: Path,
    archive_server,
) -> Iterator[Venues]:
    assert set(SYMBOLS) == set(VENUES), "one instrument of every venue of the registry"
    trades = {}
    for n, (exchange, symbol) in enumerate(SYMBOLS.items()):
        trades[exchange] = _source_trades(n, exchange)
        VENUES[exchange].write_archive(trades[exchange], mirror_root, symbol)
    bucket = f"logs-{os.urandom(6).hex()}"
    moto_client(s3_server).create_bucket(Bucket=bucket)
    env = _environment(tmp_path, archive_server.url, postgres_env)
    env |= {"DAGSTER_COMPUTE_LOGS_BUCKET": bucket, "DAGSTER_COMPUTE_LOGS_ENDPOINT": s3_server}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    render_instance(REPO / "deploy" / "dagster.postgres.yaml", Path(env["DAGSTER_HOME"]), OVERRIDES)
    workdir = tmp_path / "topology"
    workdir.mkdir()
    topology = Topology(workdir, dict(os.environ))
    with topology:
        yield Venues(topology, env["FLOW_ASSETS_STORAGE_URL"], trades)
    assert topology.leftovers() == [], "processes of the topology survived its teardown"


def _selection() -> dict[str, list[dg.AssetKey]]:
    """Per venue: its raw_trades and flow_bars_* asset keys, read from the Definitions."""
    import flow_assets.definitions as module  # noqa: PLC0415

    graph = importlib.reload(module).defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    return {
        name: sorted(
            k
            for k in keys
            if k.path[0] == venue.slug
            and (k.path[-1] == "raw_trades" or k.path[-1].startswith("flow_bars"))
        )
        for name, venue in VENUES.items()
    }


def _wait_for_instruments(instance: dg.DagsterInstance, timeout: float = 60) -> None:
    """Until the daemon's instruments_sensor has registered every venue's instrument."""
    deadline = time.monotonic() + timeout
    for exchange, symbol in SYMBOLS.items():
        wanted = partition_key(InstrumentEntry(exchange, symbol), MONTH)
        dimension = f"{VENUES[exchange].slug}_instruments"
        while wanted.keys_by_dimension["instrument"] not in instance.get_dynamic_partitions(
            dimension
        ):
            assert time.monotonic() < deadline, f"{dimension} not registered"
            time.sleep(0.5)


def _launch(topology: Topology, selection: dict[str, list[dg.AssetKey]]) -> str:
    """ONE backfill: every venue's assets, each at its venue's instrument-month."""
    by_asset = []
    for exchange, keys in selection.items():
        key = str(partition_key(InstrumentEntry(exchange, SYMBOLS[exchange]), MONTH))
        by_asset += [
            {
                "assetKey": {"path": list(k.path)},
                "partitions": {"ranges": [{"start": key, "end": key}]},
            }
            for k in keys
        ]
    params = {"partitionsByAssets": by_asset, "tags": [], "runConfigData": RUN_CONFIG}
    result = topology.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


MESSAGES = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""


def _run_messages(topology: Topology, run_id: str) -> list[str]:
    """The event messages of a run (why it failed)."""
    logs = topology.graphql(MESSAGES, {"runId": run_id})["logsForRun"]
    return [e.get("message", "") for e in logs.get("events", [])]


def test_every_venue_side_by_side_in_one_backfill(venues: Venues) -> None:
    selection = _selection()
    assert all(len(keys) == 11 for keys in selection.values()), selection  # raw + 10 intervals
    _wait_for_instruments(dg.DagsterInstance.get())
    started = time.monotonic()
    backfill_id = _launch(venues.topology, selection)
    backfill = wait_backfill(venues.topology, backfill_id, timeout=400)
    elapsed = time.monotonic() - started
    runs = backfill_runs(venues.topology, backfill_id)
    summary = sorted((r["tags"].get("dagster/partition"), r["status"]) for r in runs)
    log = venues.topology.log("daemon")
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, summary, log)
    failed = [r["runId"] for r in runs if r["status"] != "SUCCESS"]
    assert not failed, (summary, [_run_messages(venues.topology, f) for f in failed])
    expected = {str(partition_key(InstrumentEntry(e, s), MONTH)) for e, s in SYMBOLS.items()}
    assert {r["tags"]["dagster/partition"] for r in runs} == expected
    assert len(runs) == 2 * len(SYMBOLS)  # per instrument-month: raw_trades, then its bars

    store = FlowStore(url=venues.store_url)
    window = month_bounds(MONTH)[0] + timedelta(days=11)
    for exchange, symbol in SYMBOLS.items():
        source = venues.trades[exchange]
        got = published_trades(store, exchange, symbol, MONTH)
        assert got.height == source.height, exchange
        assert got["notional"].to_list() == pytest.approx(source["notional"].to_list(), rel=1e-9)
        assert got["exchange_ts"].to_list() == source["exchange_ts"].to_list(), exchange
        assert_bars_match_reference(store, exchange, symbol, MONTH, got, window)
    print(f"one backfill of {len(SYMBOLS)} venues: {len(runs)} runs in {elapsed:.1f} s")
