"""Scale: a backfill of every partition, as the daemon plans it, on many synthetic instruments.

Issue 14's requirement: such a backfill plans no run for a month outside an instrument's tracked
range, and each instrument's months run in order from its own first month. Dagster 1.13 cannot
plan that for this project's partitions (instrument x month is a full grid: see the README,
"A backfill of every partition"), so the test is a strict xfail that documents the open
requirement and turns into a failure ("XPASS") the day a design meets it.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from flow_assets_tests.backfill_plan import first_iteration

INSTRUMENTS = 30  # the planner's cost is linear in partitions; bench_backfill_plan.py: 1,000


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
