"""What is tracked and what of it is done: tracked months vs Dagster's month dimension."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import yaml

from flow_assets.instruments import InstrumentEntry
from flow_assets.orchestration.assets import flow_asset_key
from flow_assets.orchestration.catalog import InstrumentsFile, run_instruments_sensor
from flow_assets.orchestration.coverage import COVERAGE_JOB, coverage_key
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import FlowPartitions, partition_key
from flow_assets.orchestration.resources import FlowStore
from flow_assets.tracked import coverage, month_of, tracked_months

OKX = "okx-perps"


def test_tracked_months_run_from_the_first_month_to_the_delisting_or_the_running_month() -> None:
    listed = InstrumentEntry(OKX, "perpetual-BTC-USDT:USDT", date(2025, 11, 1))
    delisted = InstrumentEntry(
        OKX, "perpetual-ETH-USDT:USDT", date(2025, 11, 1), None, date(2025, 12, 1)
    )
    running = date(2026, 2, 1)
    assert tracked_months(listed, running) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert tracked_months(delisted, running) == [date(2025, 11, 1), date(2025, 12, 1)]
    table = coverage([listed, delisted], {("BTC-USDT:USDT", date(2025, 11, 1))}, running)
    assert table.select("instrument", "tracked", "done", "missing", "first_missing").rows() == [
        ("BTC-USDT:USDT", 4, 1, 3, "2025-12"),
        ("ETH-USDT:USDT", 2, 0, 2, "2025-11"),
    ]


def test_coverage_tells_tracked_months_not_done_from_months_never_tracked(tmp_path) -> None:
    """Two instruments tracked from their own first months, one month done: the asset counts
    the tracked months, the done one, and every other partition as never tracked."""
    path = tmp_path / "instruments.yaml"
    running = month_of(date.today())
    first = date(running.year - 1, running.month, 1)  # 13 tracked months
    entries = [
        {"exchange": OKX, "symbol": "perpetual-BTC-USDT:USDT", "start": f"{first:%Y-%m}"},
        {"exchange": OKX, "symbol": "perpetual-ETH-USDT:USDT", "start": f"{running:%Y-%m}"},
    ]
    path.write_text(yaml.safe_dump({"instruments": entries}))
    store = FlowStore(url=str(tmp_path / "store"))
    defs = build_definitions(
        resources={"store": store, "instruments": InstrumentsFile(path=str(path))}
    )
    instance = dg.DagsterInstance.ephemeral()
    run_instruments_sensor(defs, instance)
    btc = InstrumentEntry(OKX, "perpetual-BTC-USDT:USDT", first)
    done = str(partition_key(btc, first))
    instance.report_runless_asset_event(
        dg.AssetMaterialization(flow_asset_key(OKX, "1d"), partition=done)
    )
    result = defs.resolve_job_def(COVERAGE_JOB).execute_in_process(instance=instance)
    assert result.success
    [materialization] = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["okx_perps", "tracked_coverage"])
    ]
    metadata = {k: v.value for k, v in materialization.materialization.metadata.items()}
    months = len(FlowPartitions().months.get_partition_keys())
    assert metadata["tracked_instrument_months"] == 14
    assert metadata["done"] == 1
    assert metadata["tracked_not_done"] == 13
    assert metadata["never_tracked_partitions"] == 2 * months - 14
    assert "BTC-USDT:USDT" in metadata["not_done"]
    table = pl.read_parquet(tmp_path / "store" / coverage_key(OKX))
    assert table.select("instrument", "tracked", "done", "missing").rows() == [
        ("BTC-USDT:USDT", 13, 1, 12),
        ("ETH-USDT:USDT", 1, 0, 1),
    ]
