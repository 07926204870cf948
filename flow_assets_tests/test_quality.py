"""Data-quality findings: reconciliation and upstream defects."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from flow_assets.metrics import flow_bars
from flow_assets.quality import reconcile, source_totals, upstream_defects
from flow_assets_tests.trade_frames import trades_frame, utc

DAY = utc(2024, 5, 1)


def _trades(n: int, *, all_buys: bool = False, arrival_shift: timedelta | None = None):
    rows = [
        (DAY + timedelta(minutes=i), i, 100.0, 1.5, all_buys or i % 2 == 0, None) for i in range(n)
    ]
    if arrival_shift is not None:
        rows = [(*r[:5], r[0] + arrival_shift) for r in rows]
    return trades_frame(rows, with_arrival=arrival_shift is not None)


def test_reconcile_passes_on_the_bars_of_the_trades_and_fails_when_one_is_lost() -> None:
    trades = _trades(30)
    end = DAY + timedelta(days=1)
    totals = source_totals(trades.lazy(), DAY, end)
    assert totals == {"trades": 30, "taker_buy_volume": 22.5, "taker_sell_volume": 22.5}
    bars = flow_bars(trades, "1h", DAY, end)
    assert reconcile(bars, totals)[0]
    lost = flow_bars(trades.slice(1), "1h", DAY, end)
    passed, findings = reconcile(lost, totals)
    assert not passed
    assert findings["trades_in_bars"] == 29


def test_upstream_defects_grade_one_sided_days_missing_days_and_repairs() -> None:
    clean = {"days_missing": [], "defects": [], "rows_dropped": {}}
    assert upstream_defects(_trades(30), clean)[0] == "ok"
    severity, findings = upstream_defects(_trades(30, all_buys=True), clean)
    assert severity == "error"
    assert findings["one_sided_days"] == ["2024-05-01"]
    assert upstream_defects(_trades(5, all_buys=True), clean)[0] == "ok"  # too few to tell
    assert upstream_defects(_trades(30), {**clean, "days_missing": ["2024-05-02"]})[0] == "error"
    assert upstream_defects(_trades(30), {**clean, "defects": ["3 duplicate ids"]})[0] == "warn"
    early = _trades(30, arrival_shift=-timedelta(seconds=1))
    severity, findings = upstream_defects(early, clean)
    assert (severity, findings["arrived_before_exchange_time"]) == ("warn", 30)
    later = _trades(30, arrival_shift=timedelta(milliseconds=120))
    assert upstream_defects(later, clean)[0] == "ok"
    assert pl.Series(findings["one_sided_days"]).len() == 0
