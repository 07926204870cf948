"""The month computation without Dagster: carried state, arrival-time spill, warm-up, defects."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets import month as month_mod
from flow_assets.metrics import ALL_INTERVALS, FlowBarsEngine, flow_bars_all
from flow_assets.month import FlowSettings, MonthNotReadyError, publish_flow, publish_trades
from flow_assets.publish import Manifest, flow_file, read_manifest
from flow_assets.sources.report import FetchReport, FileRecord, month_bounds
from flow_assets.store import LocalStore, ObjectStore, unit_prefix, write_parquet_file
from flow_assets_tests.trade_frames import trades_frame, utc

EXCHANGE, SYMBOL = "binance-futures", "perpetual-BTC-USDT:USDT"
MONTHS = [date(2024, m, 1) for m in range(1, 5)]
FINE = ("1s", "15s", "30s")
FEW = ("1m", "1h", "1d")  # for tests that are not about every interval (a 1s month takes ~4 s)


def ingest_of(
    trades: pl.DataFrame, month: date, *, complete: bool = True, days_missing: tuple = ()
) -> Callable[[Path], FetchReport]:
    """An ``ingest`` writing the month's share of ``trades`` (sorted) and a matching report."""

    def ingest(dest: Path) -> FetchReport:
        start, end = month_bounds(month)
        inside = trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left"))
        inside = inside.sort("exchange_ts", "trade_id")
        write_parquet_file(inside, dest)
        digest = hashlib.sha256(inside.write_csv().encode()).hexdigest()
        report = FetchReport(EXCHANGE, SYMBOL, month, rows_read=inside.height)
        report.files = [FileRecord(f"{month:%Y-%m}.zip", "http://test", digest, 1, True)]
        report.complete, report.end = complete, end
        report.days_missing = list(days_missing)
        return report

    return ingest


def publish_month(
    store: ObjectStore,
    trades: pl.DataFrame,
    month: date,
    timestamps=("exchange",),
    intervals=FEW,
    **kw,
) -> month_mod.FlowOutcome:
    assert publish_trades(store, EXCHANGE, SYMBOL, month, ingest_of(trades, month, **kw)).published
    return publish_flow(store, EXCHANGE, SYMBOL, month, timestamps, intervals=intervals)


def published_bars(store: ObjectStore, month: date, interval: str, timestamp="exchange"):
    manifest = read_manifest(store, "flow", EXCHANGE, SYMBOL, month)
    assert manifest is not None
    return store.read_parquet(manifest.key_of(flow_file(timestamp, interval)))


def sparse_trades(first: date, last: date, *, arrival: Callable | None = None) -> pl.DataFrame:
    """A trade every 7 hours (plus a burst of three each 5 days): every 1d bar has trades."""
    start = utc(first.year, first.month, first.day)
    hours = int((utc(last.year, last.month, last.day) - start) / timedelta(hours=7))
    rows = []
    for i in range(hours):
        burst = 3 if i % 17 == 0 else 1
        for j in range(burst):
            time = start + timedelta(hours=7 * i, seconds=(i % 13) + j)
            row = (time, 10 * i + j, 100 + (i * 37 % 29) / 4, 1 + (i + j) % 5, (i + j) % 3 != 0)
            rows.append((*row, arrival(time, i) if arrival else None))
    return trades_frame(rows, with_arrival=arrival is not None)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_months_one_by_one_from_carried_state_equal_one_long_run(store) -> None:
    """Four months, each from its predecessor's state only (its trades deleted first).

    Every interval at W = 60, k = 5; April's 1d rolling fields reach back into January.
    """
    trades = sparse_trades(MONTHS[0], date(2024, 5, 1))
    coarse = [i for i in ALL_INTERVALS if i not in FINE]
    one_run = flow_bars_all(trades, utc(2024, 1, 1), utc(2024, 5, 1), intervals=coarse)
    histories = []
    for month in MONTHS:
        outcome = publish_month(store, trades, month, intervals=ALL_INTERVALS)
        histories.append(outcome.history)
        store.delete(read_manifest(store, "trades", EXCHANGE, SYMBOL, month).key_of("trades"))
        start, end = month_bounds(month)
        naive = (start.replace(tzinfo=None), end.replace(tzinfo=None))
        for interval in coarse:
            expected = one_run[interval].filter(pl.col("time").is_between(*naive, closed="left"))
            assert_frame_equal(published_bars(store, month, interval), expected, check_exact=True)
        # the fine grids of the long run would not fit a test: the engine fed every earlier
        # trade as history is the long run's cut (test_metrics_properties proves it)
        everything_before = trades.filter(pl.col("exchange_ts") < end)
        reference = flow_bars_all(everything_before, start, end, intervals=FINE)
        for interval in FINE:
            assert_frame_equal(published_bars(store, month, interval), reference[interval])
    assert histories[0].startswith("warm-up")
    assert all(h.startswith("carried from") for h in histories[1:])
    april = published_bars(store, MONTHS[-1], "1d")["flow_toxicity_score"]
    assert april.drop_nulls().len() == 30


def test_arrival_time_bars_count_late_trades_in_the_month_they_arrive(store) -> None:
    """Trades exchanged at January's end that arrive in February count in February's bars."""

    def arrival(time: datetime, i: int) -> datetime:
        late = time >= utc(2024, 1, 31, 12)
        return time + (timedelta(days=1) if late else timedelta(milliseconds=250))

    trades = sparse_trades(MONTHS[0], date(2024, 3, 1), arrival=arrival)
    both = ("exchange", "true")
    january = publish_month(store, trades, MONTHS[0], both)
    february = publish_month(store, trades, MONTHS[1], both)
    late = trades.filter(
        pl.col("arrival_ts") >= utc(2024, 2, 1), pl.col("exchange_ts") < utc(2024, 2, 1)
    )
    assert late.height > 0
    assert january.trades_in["true"] == january.trades_in["exchange"] - late.height
    in_february = trades.filter(pl.col("arrival_ts").is_between(utc(2024, 2, 1), utc(2024, 3, 1)))
    assert february.trades_in["true"] == in_february.height
    one_run = flow_bars_all(
        trades, utc(2024, 1, 1), utc(2024, 3, 1), intervals=("1m", "1h", "1d"), timestamp="true"
    )
    for interval in ("1m", "1h", "1d"):
        expected = one_run[interval].filter(pl.col("time") >= datetime(2024, 2, 1))
        assert_frame_equal(published_bars(store, MONTHS[1], interval, "true"), expected)


def test_a_month_warms_up_without_a_usable_predecessor(store) -> None:
    trades = sparse_trades(MONTHS[0], date(2024, 3, 1))
    assert "no published bars for 2024-01" in publish_month(store, trades, MONTHS[1]).history
    publish_month(store, trades, MONTHS[0], complete=False)  # as if January were still running
    history = publish_flow(store, EXCHANGE, SYMBOL, MONTHS[1], ("exchange",), intervals=FEW).history
    assert history == "warm-up: the bars of 2024-01 are of an incomplete month"
    publish_trades(store, EXCHANGE, SYMBOL, MONTHS[0], ingest_of(trades, MONTHS[0]))
    publish_flow(store, EXCHANGE, SYMBOL, MONTHS[0], ("exchange",), FlowSettings(30), intervals=FEW)
    mismatch = publish_flow(
        store, EXCHANGE, SYMBOL, MONTHS[1], ("exchange",), intervals=FEW
    ).history
    assert "was made with" in mismatch  # January's state is of W = 30, February wants 60


def test_bars_of_a_month_without_published_trades_are_not_ready(store) -> None:
    with pytest.raises(MonthNotReadyError, match=r"raw trades of .* 2024-02 are not published"):
        publish_flow(store, EXCHANGE, SYMBOL, MONTHS[1], ("exchange",))


@pytest.mark.parametrize("defect", ["missing_day", "one_sided_day"])
def test_upstream_defects_block_the_months_trades(store, defect) -> None:
    trades = sparse_trades(MONTHS[0], date(2024, 2, 1))
    missing: tuple = ()
    if defect == "missing_day":
        missing = (date(2024, 1, 10),)
    else:
        day = [(utc(2024, 1, 9, 0, 0, s), 10**6 + s, 100.0, 1.0, True) for s in range(12)]
        on_the_9th = pl.col("exchange_ts").dt.day() == 9
        trades = pl.concat([trades, trades_frame(day)]).with_columns(
            is_taker_buy=pl.col("is_taker_buy") | on_the_9th
        )
    outcome = publish_trades(
        store, EXCHANGE, SYMBOL, MONTHS[0], ingest_of(trades, MONTHS[0], days_missing=missing)
    )
    assert outcome.severity == "error"
    assert not outcome.published
    key = "days_missing" if defect == "missing_day" else "one_sided_days"
    assert outcome.findings[key] == ["2024-01-10" if missing else "2024-01-09"]
    assert store.list_keys("trades/") == []


def test_failed_checks_publish_nothing_and_leave_no_staged_file(store, monkeypatch) -> None:
    trades = sparse_trades(MONTHS[0], date(2024, 2, 1))
    first = publish_month(store, trades, MONTHS[0])
    real_reconcile = month_mod.reconcile

    def lose_one(bars, totals):
        return real_reconcile(bars, {**totals, "trades": totals["trades"] + 1})

    monkeypatch.setattr(month_mod, "reconcile", lose_one)
    failed = publish_flow(store, EXCHANGE, SYMBOL, MONTHS[0], ("exchange",), intervals=FEW)
    assert not failed.published
    assert all(r.unreconciled == ["exchange"] for r in failed.intervals.values())
    manifest = read_manifest(store, "flow", EXCHANGE, SYMBOL, MONTHS[0])
    assert manifest == first.manifest
    prefix = unit_prefix("flow", EXCHANGE, SYMBOL, MONTHS[0])
    versions = {k.split("/")[4] for k in store.list_keys(prefix + "/")}
    assert versions == {"manifest.json", manifest.version}


def test_every_file_of_a_published_month_is_in_its_manifest(store) -> None:
    trades = sparse_trades(MONTHS[0], date(2024, 2, 1))
    manifest: Manifest = publish_month(store, trades, MONTHS[0]).manifest
    names = {flow_file("exchange", i) for i in FEW} | {"state"}
    assert set(manifest.files) == names
    prefix = unit_prefix("flow", EXCHANGE, SYMBOL, MONTHS[0])
    listed = set(store.list_keys(prefix + "/")) - {f"{prefix}/manifest.json"}
    assert listed == {f.key for f in manifest.files.values()}
    assert manifest.metadata["complete"] is True
    assert manifest.metadata["covered_until"] == "2024-02-01T00:00:00+00:00"
    for name, published in manifest.files.items():
        assert store.read_parquet(published.key).height == published.rows, name
    engine = FlowBarsEngine(utc(2024, 1, 1), utc(2024, 2, 1), intervals=FEW)
    engine.add(trades)
    carried = engine.carry()
    state = store.read_parquet(manifest.key_of("state"))
    for interval in FEW:
        stored = state.filter(pl.col("interval") == interval).drop("timestamp", "interval")
        assert_frame_equal(stored, carried[interval])


def test_chunked_months_read_a_day_at_a_time_and_give_the_same_bars(store, monkeypatch) -> None:
    """Bars made, checked and written a day at a time (every interval, each day its own part)
    are the same files as those of the whole month at once."""
    trades = sparse_trades(MONTHS[0], date(2024, 3, 1))
    whole = [publish_month(store, trades, m).manifest for m in MONTHS[:2]]
    monkeypatch.setattr(month_mod, "CHUNK_ROWS", 10)
    monkeypatch.setattr(month_mod, "PART_BARS", 1)
    monkeypatch.setattr(month_mod, "PART_GROUP_ROWS", 7)
    days = []
    real_chunks = month_mod._chunks

    def counted(*args):
        for chunk, sealed in real_chunks(*args):
            if sealed:  # a day's trades, then that day's bars
                days.append(len(sealed))
            yield chunk, sealed

    monkeypatch.setattr(month_mod, "_chunks", counted)
    for month, before in zip(MONTHS[:2], whole, strict=True):
        publish_flow(store, EXCHANGE, SYMBOL, month, ("exchange",), intervals=FEW)
        for a, b in itertools.pairwise(
            [before, read_manifest(store, "flow", EXCHANGE, SYMBOL, month)]
        ):
            for name in a.files:
                assert_frame_equal(
                    store.read_parquet(a.key_of(name)), store.read_parquet(b.key_of(name))
                )
    assert days == [1] * (31 + 29)


KILLED_RUN = """
import json, os, signal, sys
from datetime import date

import polars as pl

from flow_assets.month import publish_flow, publish_trades
from flow_assets.store import LocalStore
from flow_assets_tests.test_month import EXCHANGE, FEW, SYMBOL, ingest_of

root, trades_path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = []


def killing(method):
    def wrapper(self, key, *args, **kwargs):
        calls.append((method.__name__, key))
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return method(self, key, *args, **kwargs)

    return wrapper


for name in ("put_bytes", "put_file", "delete"):
    setattr(LocalStore, name, killing(getattr(LocalStore, name)))
store, month = LocalStore(root), date(2024, 1, 1)
trades = pl.read_parquet(trades_path)
publish_trades(store, EXCHANGE, SYMBOL, month, ingest_of(trades, month))
publish_flow(store, EXCHANGE, SYMBOL, month, ("exchange",), intervals=FEW)
print(json.dumps(calls))
"""


def _run_killable(root: Path, trades_path: Path, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(root), str(trades_path), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )


def _read_published_month(store: ObjectStore) -> dict[str, pl.DataFrame]:
    """What a reader sees: the bars named by the manifest, all from one version."""
    manifest = read_manifest(store, "flow", EXCHANGE, SYMBOL, MONTHS[0])
    assert manifest is not None
    assert {f.key.split("/")[4] for f in manifest.files.values()} == {manifest.version}
    return {i: store.read_parquet(manifest.key_of(flow_file("exchange", i))) for i in FEW}


def test_a_run_killed_at_any_stage_of_publishing_leaves_a_whole_month(store, tmp_path) -> None:
    """SIGKILL at every store write of a revised month's run: readers see the old month or the
    new one, whole; the re-run completes it and removes what the killed run left."""
    old = sparse_trades(MONTHS[0], date(2024, 2, 1))
    new = old.filter(pl.col("trade_id") % 5 != 0)  # the revised archive
    expected = {
        name: flow_bars_all(t, utc(2024, 1, 1), utc(2024, 2, 1), intervals=FEW)
        for name, t in (("old", old), ("new", new))
    }
    paths = {name: tmp_path / f"{name}.parquet" for name in ("old", "new")}
    old.write_parquet(paths["old"])
    new.write_parquet(paths["new"])
    for _ in range(2):  # two published versions, so the revised run's commit also deletes one
        publish_month(store, old, MONTHS[0])
    calls = json.loads(_run_killable(store.root, paths["new"], 0).stdout)
    publish_month(store, old, MONTHS[0])  # back to the old month

    def first(method: str, kind: str, suffix: str = "") -> int:
        """The 1-based index of the first such write of the run."""
        return 1 + next(
            n
            for n, (name, key) in enumerate(calls)
            if name == method and key.startswith(kind) and key.endswith(suffix)
        )

    points = {
        first("put_file", "trades/"),  # the trades file
        first("put_bytes", "trades/", "manifest.json"),  # the trades' commit
        first("put_file", "flow/"),  # the first bars
        first("put_file", "flow/") + 1,  # between two intervals
        first("put_bytes", "flow/", "manifest.json"),  # the bars' commit
        first("delete", "flow/"),  # after the commit, removing the oldest version
    }
    seen = set()
    for kill_at in sorted(points):
        killed = _run_killable(store.root, paths["new"], kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        bars = _read_published_month(store)
        version = "old" if bars["1h"].equals(expected["old"]["1h"]) else "new"
        seen.add(version)
        for interval in FEW:
            assert_frame_equal(bars[interval], expected[version][interval])
        publish_month(store, new, MONTHS[0])  # the re-run completes the month
        for interval, frame in _read_published_month(store).items():
            assert_frame_equal(frame, expected["new"][interval])
        for kind in ("trades", "flow"):
            manifest = read_manifest(store, kind, EXCHANGE, SYMBOL, MONTHS[0])
            prefix = unit_prefix(kind, EXCHANGE, SYMBOL, MONTHS[0])
            versions = {k.split("/")[4] for k in store.list_keys(prefix + "/")} - {"manifest.json"}
            assert versions <= {manifest.version, manifest.previous_version}  # strays removed
        publish_month(store, old, MONTHS[0])
    assert seen == {"old", "new"}  # killed before and after the commit
