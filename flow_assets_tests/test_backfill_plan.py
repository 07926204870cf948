"""Scale: a backfill of every partition, as the daemon plans it, on many synthetic instruments.

Issue 14's requirement: such a backfill plans no run for a month outside an instrument's tracked
range, and each instrument's months run in order from its own first month. Dagster 1.13 cannot
plan that for this project's partitions (instrument x month is a full grid: see the README,
"A backfill of every partition"), so the test is a strict xfail that documents the open
requirement and turns into a failure ("XPASS") the day a design meets it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import dagster as dg
import pytest
import yaml

from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics import ALL_INTERVALS
from flow_assets.orchestration.assets import flow_asset_key
from flow_assets.orchestration.backfill import BACKFILL_JOB
from flow_assets.orchestration.catalog import InstrumentsFile, run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import FlowStore
from flow_assets.tracked import month_of, tracked_months
from flow_assets_tests.backfill_plan import first_iteration, plan_iterations

INSTRUMENTS = 30  # the planner's cost is linear in partitions; bench_backfill_plan.py: 1,000
OKX = "okx-perps"
ITERATED = 8  # three iterations, each with the previous one's runs succeeded


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,  # the planner ran and planned wrong; a crash is a real failure
    reason="issue 14 open: Dagster 1.13's planner requests every month of the instrument x "
    "month grid, tracked or not",
)
def test_a_backfill_of_every_partition_plans_only_tracked_months_first_months_first() -> None:
    plan = first_iteration(INSTRUMENTS)
    assert plan.requested, "the first iteration requests runs"
    outside = [r for r in plan.requested if r.month < r.first_month]
    assert not outside, f"{len(outside)} of {len(plan.requested)} runs outside tracked months"
    by_instrument = defaultdict(list)
    for request in plan.requested:
        by_instrument[request.instrument].append(request)
    assert len(by_instrument) == INSTRUMENTS
    for requests in by_instrument.values():  # its first month, bars only after their history
        assert min(r.month for r in requests) == requests[0].first_month
        bars = [r for r in requests if any("flow_bars" in a for a in r.assets)]
        assert all(r.month == r.first_month for r in bars)


def test_a_backfill_of_every_tracked_month_runs_each_instrument_from_its_first_month() -> None:
    """What ``backfill_tracked_job`` submits (one range per instrument from its first month),
    planned by Dagster's daemon, each iteration's runs succeeding before the next: the raw
    trades of every tracked month and of no other, then each instrument's first month of bars,
    then its second."""
    plan = plan_iterations(ITERATED, tracked_only=True, iterations=3)
    first, second, third = plan.iterations
    assert len(first) == plan.tracked_instrument_months
    assert all(r.month >= r.first_month for r in first)
    assert {r.assets for r in first} == {("binance_futures/raw_trades",)}
    bars = tuple(sorted(f"binance_futures/flow_bars_{i}" for i in ALL_INTERVALS))
    assert sorted((r.instrument, r.month, r.assets) for r in second) == sorted(
        (i, start, bars) for i, start in plan.first_months.items()
    )
    assert {r.assets for r in third} == {bars}
    assert all(r.month == _next(r.first_month) for r in third)
    assert len(third) == sum(s < plan.last_month for s in plan.first_months.values())


def _next(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12}-{number % 12 + 1:02d}-01"


def test_backfill_tracked_job_submits_the_tracked_months_not_done(tmp_path) -> None:
    """Two instruments with different first months, one month of one of them done: the job
    submits one asset backfill of raw_trades and every interval over exactly the months not
    done, from each instrument's first month not done to the running month."""
    path = tmp_path / "instruments.yaml"
    running = month_of(date.today())
    first = date(running.year - 1, running.month, 1)  # 13 tracked months
    entries = [
        {"exchange": OKX, "symbol": "perpetual-BTC-USDT:USDT", "start": f"{first:%Y-%m}"},
        {"exchange": OKX, "symbol": "perpetual-ETH-USDT:USDT", "start": f"{running:%Y-%m}"},
    ]
    path.write_text(yaml.safe_dump({"instruments": entries}))
    store = FlowStore(url=str(tmp_path / "store"))
    resources = {"store": store, "instruments": InstrumentsFile(path=str(path))}
    defs = build_definitions(resources=resources)
    instance = dg.DagsterInstance.ephemeral()
    run_instruments_sensor(defs, instance)
    btc = InstrumentEntry(OKX, "perpetual-BTC-USDT:USDT", first)
    done = str(partition_key(btc, first))
    instance.report_runless_asset_event(
        dg.AssetMaterialization(flow_asset_key(OKX, "1d"), partition=done)
    )
    assert defs.resolve_job_def(BACKFILL_JOB).execute_in_process(instance=instance).success
    [backfill] = instance.get_backfills()
    target = backfill.asset_backfill_data.target_subset
    expected = {
        *(str(partition_key(btc, m)) for m in tracked_months(btc, running)[1:]),
        f"ETH-USDT:USDT|{running.isoformat()}",
    }
    assert len(target.partitions_subsets_by_asset_key) == 1 + len(ALL_INTERVALS)
    for key, subset in target.partitions_subsets_by_asset_key.items():
        assert key.path[0] == "okx_perps"
        assert set(subset.get_partition_keys()) == expected
