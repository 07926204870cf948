"""The Dagster layer end to end, against archives served on 127.0.0.1 and a real S3 API."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster_aws.s3 import S3Resource
from polars.testing import assert_frame_equal

from flow_assets import month as month_mod
from flow_assets.client import get_metrics
from flow_assets.instruments import InstrumentEntry, InstrumentsConfig
from flow_assets.metrics import ALL_INTERVALS, BAR_SCHEMA, flow_bars_all
from flow_assets.orchestration import assets
from flow_assets.orchestration.automation import flow_job_name
from flow_assets.orchestration.catalog import register_instruments, run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.sources.mirror import Fault, sample_trades, write_tardis
from flow_assets.store import ObjectStore, open_store, summary_key
from flow_assets.venues import VENUES
from flow_assets.venues.binance_futures import write_binance
from flow_assets.venues.okx_perps import write_okx
from flow_assets_tests.runs import failure_text

BTC = InstrumentEntry("binance-futures", "perpetual-BTC-USDT:USDT", date(2024, 1, 1))
OKX_BTC = InstrumentEntry("okx-perps", "perpetual-BTC-USDT:USDT", date(2024, 2, 1))
JAN, FEB = date(2024, 1, 1), date(2024, 2, 1)
REPO = Path(__file__).resolve().parent.parent


def _binance_archives(url: str) -> ArchiveSources:
    """The archives resource with Binance USD-M served at ``url``."""
    return ArchiveSources(urls={"binance-futures": url})


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _bars(
    store: ObjectStore, entry: InstrumentEntry, month: date, interval: str, timestamp="exchange"
) -> pl.DataFrame:
    """The published bars of one interval, read through the month's manifest."""
    manifest = read_manifest(store, "flow", entry.exchange, entry.symbol, month)
    assert manifest is not None, f"{entry.key} {month} is not published"
    return store.read_parquet(manifest.key_of(flow_file(timestamp, interval)))


def _trades(store: ObjectStore, entry: InstrumentEntry, month: date) -> pl.DataFrame:
    manifest = read_manifest(store, "trades", entry.exchange, entry.symbol, month)
    assert manifest is not None, f"trades of {entry.key} {month} are not published"
    return store.read_parquet(manifest.key_of("trades"))


@pytest.fixture
def trades() -> dict[str, pl.DataFrame]:
    """Two months of BTC trades on Binance, one month on OKX (small, exact decimals)."""
    return {
        "binance": pl.concat(
            [
                sample_trades(_utc(JAN), _utc(FEB), 600, seed=1, first_id=1),
                sample_trades(_utc(FEB), _utc(date(2024, 3, 1)), 500, seed=2, first_id=601),
            ]
        ),
        "okx": sample_trades(_utc(FEB), _utc(date(2024, 3, 1)), 300, seed=3, first_id=10**6),
    }


@pytest.fixture
def archives(mirror_root, archive_server, trades) -> ArchiveSources:
    write_binance(trades["binance"], mirror_root, BTC.symbol, monthly=True, klines=True)
    write_okx(trades["okx"], mirror_root, OKX_BTC.symbol)
    return ArchiveSources(
        urls={"binance-futures": archive_server.url, "okx-perps": archive_server.url}
    )


@pytest.fixture
def local_store(tmp_path: Path) -> FlowStore:
    return FlowStore(url=str(tmp_path / "store"))


def _defs(archives: ArchiveSources, store: FlowStore) -> dg.Definitions:
    return build_definitions([BTC, OKX_BTC], {"archives": archives, "store": store})


def _key(entry: InstrumentEntry, month: date) -> str:
    return str(partition_key(entry, month))


def _synced(defs: dg.Definitions, instance=None) -> dg.DagsterInstance:
    """``instance`` (default: a new ephemeral one) with the instrument partitions and tracked
    instruments of ``defs`` registered, by evaluating its ``instruments_sensor``."""
    instance = instance or dg.DagsterInstance.ephemeral()
    run_instruments_sensor(defs, instance)
    return instance


def _run(defs: dg.Definitions, entry: InstrumentEntry, month: date, instance=None):
    instance = _synced(defs, instance)
    return defs.resolve_job_def(flow_job_name(entry.exchange)).execute_in_process(
        partition_key=_key(entry, month),
        instance=instance,
        raise_on_error=False,
    )


def _check_evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """The asset check evaluations of a run by (asset, check name)."""
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return {(c.asset_key.to_user_string(), c.check_name): c for c in evaluations}


def _check_results(result) -> dict[tuple[str, str], bool]:
    return {key: c.passed for key, c in _check_evaluations(result).items()}


def test_definitions_load_without_any_network_call(monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("definitions made a network call while loading")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    import flow_assets.definitions as module  # noqa: PLC0415

    defs = importlib.reload(module).defs
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    per_exchange = {"raw_trades", "instrument_catalog", "tracked_coverage"} | {
        f"flow_bars_{i}" for i in ALL_INTERVALS
    }
    exchanges = [v.slug for v in VENUES.values()]  # every venue of the registry
    assert exchanges[:2] == ["binance_futures", "okx_perps"]
    reconciled = [v.slug for v in VENUES.values() if v.exchange_figures is not None]
    assert reconciled == exchanges  # every venue publishes its own aggregation
    assert keys == (
        {"daily_flow_summary"}
        | {f"{e}/{n}" for e in exchanges for n in per_exchange}
        | {f"{e}/reconciliation" for e in reconciled}
    )
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    judged = {(a, c) for a, c in checks if c == "matches_exchange"}
    assert judged == {
        ("binance_futures/flow_bars_1m", "matches_exchange"),
        ("binance_futures_cm/flow_bars_1m", "matches_exchange"),
        ("okx_perps/flow_bars_1d", "matches_exchange"),
        ("bybit_perps/flow_bars_1d", "matches_exchange"),
    }
    assert ("okx_perps/raw_trades", "upstream_defects") in checks
    assert {
        ("binance_futures/flow_bars_1s", "bars_valid"),
        ("okx_perps/flow_bars_1d", "nothing_lost"),
    } <= checks
    bars_1d = assets.flow_asset_key("binance-futures", "1d")
    assert graph.get(bars_1d).parent_keys == {assets.raw_trades_key("binance-futures"), bars_1d}
    assert {s.name for s in defs.sensors} >= {"archive_sensor", "instruments_sensor"}
    assert [s.name for s in defs.schedules] == [
        *(f"{e}_running_month" for e in exchanges),
        "instrument_catalog_daily",
        "freshness_checks",
        "tracked_coverage_hourly",
    ]
    partitions = defs.resolve_job_def("binance_futures_flow_job").partitions_def
    dimensions = {d.name: d.partitions_def for d in partitions.partitions_defs}
    assert dimensions["instrument"].name == "binance_futures_instruments"  # dynamic
    assert dimensions["month"].start.strftime("%Y-%m") == "2019-09"


def test_runs_execute_their_steps_in_process_unless_their_config_says_multiprocess() -> None:
    defs = build_definitions([])
    jobs = [
        defs.resolve_job_def("binance_futures_flow_job"),
        defs.resolve_implicit_global_asset_job_def(),  # what asset backfills and the UI run
        defs.resolve_job_def("backfill_tracked_job"),
    ]
    for job in jobs:
        executor = job.executor_def
        assert executor.config_schema.as_field().default_value == {"in_process": {}}, job.name
        for mode in ("in_process", "multiprocess"):  # the launchpad's two choices
            dg.validate_run_config(job, {"execution": {"config": {mode: {}}}})
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(job, {"execution": {"config": {"celery": {}}}})


def test_the_catalog_documents_every_column_and_limits_each_archive_host(
    archives, local_store
) -> None:
    """Each bars asset carries the 37 columns with the spec's meaning; each exchange's
    downloads share one concurrency pool of their own."""
    defs = _defs(archives, local_store)
    graph = defs.resolve_asset_graph()
    for exchange in ("binance-futures", "okx-perps"):
        for interval in ALL_INTERVALS:
            node = graph.get(assets.flow_asset_key(exchange, interval))
            columns = node.metadata["dagster/column_schema"].columns
            assert [c.name for c in columns] == list(BAR_SCHEMA)
            assert all(c.description for c in columns)
            assert node.description.startswith(f"One row per {interval} bar")
        raw = defs.resolve_assets_def(assets.raw_trades_key(exchange))
        assert raw.op.pool == f"archive_{exchange.replace('-', '_')}"
    toxicity = next(c for c in columns if c.name == "flow_toxicity_score")
    assert "W=60, k=5" in toxicity.description
    automation = defs.resolve_sensor_def("summary_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING  # eager, as documented
    assert "latest month" in automation.description
    catalog = dg.AssetKey(["binance_futures", "instrument_catalog"])
    for key, width in ((assets.SUMMARY, 9), (catalog, 12)):
        columns = graph.get(key).metadata["dagster/column_schema"].columns
        assert len(columns) == width, key
        assert all(c.description for c in columns), key


def test_one_partition_end_to_end(archives, local_store, trades) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = _run(_defs(archives, local_store), BTC, JAN, instance)
    assert result.success
    checks = _check_results(result)
    assert checks[("binance_futures/flow_bars_1m", "matches_exchange")] is True  # the klines
    assert all(checks.values())
    store = local_store.open()
    assert _trades(store, BTC, JAN).height == 600
    manifest = read_manifest(store, "flow", BTC.exchange, BTC.symbol, JAN)
    assert set(manifest.files) == {flow_file("exchange", i) for i in ALL_INTERVALS} | {"state"}
    for interval in ALL_INTERVALS:
        bars = _bars(store, BTC, JAN, interval)
        assert bars["taker_buy_count"].sum() + bars["taker_sell_count"].sum() == 600
        assert bars["time"].dtype == pl.Datetime("us")
    for evaluation in _check_evaluations(result).values():  # judged on the run's partition
        assert evaluation.metadata["partition"].value == _key(BTC, JAN)
        assert evaluation.partition is None  # unpartitioned checks keep the UI fast
        judged = instance.fetch_materializations(  # the partition's materialization
            dg.AssetRecordsFilter(
                asset_key=evaluation.asset_key, asset_partitions=[_key(BTC, JAN)]
            ),
            limit=1,
        ).records
        assert evaluation.target_materialization_data is not None
        assert evaluation.target_materialization_data.storage_id == judged[0].storage_id
    materialized = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("binance_futures__raw_trades")
        + result.asset_materializations_for_node("binance_futures_flow_bars")
    }
    metadata = materialized["binance_futures/flow_bars_1h"]
    assert metadata["dagster/row_count"].value == 31 * 24
    assert metadata["trades_in"].value == {"exchange": 600}
    assert metadata["warm_up"].value is True
    assert metadata["history"].value == "warm-up: no published bars for 2023-12"
    assert "dagster/column_lineage" in metadata
    preview = metadata["preview"].value
    assert "bars **that have trades**" in preview  # what it leaves out, said ...
    assert f"The file is dense ({31 * 24} bars)" in preview  # ... and what the file holds
    raw = materialized["binance_futures/raw_trades"]
    assert raw["source_files"].value[0]["checksum_verified"] is True
    bars = get_metrics(
        metric="flow",
        exchange=BTC.exchange,
        symbol=BTC.symbol,
        interval="1d",
        start_date=date(2024, 1, 30),
        end_date=date(2024, 1, 31),
        storage_url=local_store.url,
    )
    assert bars.height == 2


def test_a_tardis_instrument_gets_bars_for_both_timestamp_sources(
    trades, local_store, tmp_path
) -> None:
    """One month of a Tardis file gives exchange-time and arrival-time bars."""
    january = trades["binance"].filter(pl.col("exchange_ts") < _utc(FEB))
    late = pl.col("trade_id") > 595  # the last five trades arrive in February
    january = january.with_columns(
        arrival_ts=pl.col("exchange_ts")
        + pl.when(late).then(pl.duration(days=31)).otherwise(pl.duration(milliseconds=250))
    )
    write_tardis(january, tmp_path / "tardis" / "2024-01.csv.gz", BTC.exchange, BTC.symbol)
    entry = InstrumentEntry(
        BTC.exchange, BTC.symbol, JAN, tardis=str(tmp_path / "tardis" / "{month}.csv.gz")
    )
    defs = build_definitions([entry], {"archives": ArchiveSources(), "store": local_store})
    result = _run(defs, entry, JAN)
    assert result.success
    checks = _check_evaluations(result)
    judged = checks.pop(("binance_futures/flow_bars_1m", "matches_exchange"))
    assert all(c.passed for c in checks.values())
    # the exchange's klines are not read for Tardis trades: not reconciled, a warning
    assert not judged.passed
    assert judged.severity == dg.AssetCheckSeverity.WARN
    assert "Tardis" in judged.metadata["not_reconciled"].value
    store = local_store.open()
    end = _utc(FEB)
    for timestamp in ("exchange", "true"):
        expected = flow_bars_all(january, _utc(JAN), end, intervals=("1m",), timestamp=timestamp)
        bars = _bars(store, entry, JAN, "1m", timestamp)
        assert_frame_equal(bars, expected["1m"], rel_tol=1e-12)
    in_january = january.filter(pl.col("arrival_ts") < end).height
    true_1d = _bars(store, entry, JAN, "1d", "true")
    assert true_1d["taker_buy_count"].sum() + true_1d["taker_sell_count"].sum() == in_january
    assert in_january == 595  # arrivals after the month end fall out of January's true bars


def test_months_in_order_equal_one_long_run_from_the_carried_state_alone(
    archives, local_store, trades, monkeypatch
) -> None:
    """January, then February read day by day: February's rolling fields continue January's
    from the state January published; January's trades are not read again (deleted first)."""
    monkeypatch.setattr(month_mod, "CHUNK_ROWS", 100)  # months of 500-600 trades, day by day
    defs = _defs(archives, local_store)
    instance = _synced(defs)
    store = local_store.open()
    assert _run(defs, BTC, JAN, instance).success
    january = read_manifest(store, "trades", BTC.exchange, BTC.symbol, JAN)
    store.delete(january.key_of("trades"))
    february = _run(defs, BTC, FEB, instance)
    assert february.success
    bars = february.asset_materializations_for_node("binance_futures_flow_bars")
    history = bars[0].metadata["history"]
    assert history.value.startswith("carried from 2024-01")
    assert _run(defs, OKX_BTC, FEB, instance).success
    long_run = flow_bars_all(
        trades["binance"], _utc(JAN), _utc(date(2024, 3, 1)), intervals=("1m", "5m", "4h")
    )
    for interval in ("1m", "5m", "4h"):
        february = _bars(store, BTC, FEB, interval)
        expected = long_run[interval].filter(pl.col("time") >= datetime(2024, 2, 1))
        assert_frame_equal(february, expected, rel_tol=1e-12)
        assert february["flow_toxicity_score"].drop_nulls().len() > 0
    summary = defs.resolve_job_def("summary_job").execute_in_process(
        partition_key=FEB.isoformat(), instance=instance
    )
    assert summary.success
    daily = store.read_parquet(summary_key("daily_flow", FEB))
    assert daily.height == 29
    assert daily["exchanges"].max() == 2
    assert daily["trades"].sum() == 500 + 300


def test_a_month_before_the_instruments_start_is_refused(archives, local_store) -> None:
    result = _run(_defs(archives, local_store), OKX_BTC, JAN)
    assert not result.success
    failure = failure_text(result)
    assert "starts in 2024-02: month 2024-01 is not materializable" in failure


def test_bars_of_a_month_without_raw_trades_fail_and_write_nothing(archives, local_store) -> None:
    defs = _defs(archives, local_store)
    flow_keys = [assets.flow_asset_key(BTC.exchange, i) for i in ALL_INTERVALS]
    job = defs.resolve_job_def(flow_job_name(BTC.exchange))
    alone = job.execute_in_process(
        partition_key=_key(BTC, FEB),
        asset_selection=flow_keys,
        raise_on_error=False,
        instance=_synced(defs),
    )
    assert not alone.success
    assert "raw trades of binance-futures:perpetual-BTC-USDT:USDT 2024-02 are not published" in (
        failure_text(alone)
    )
    assert local_store.open().list_keys("flow/") == []


def test_a_month_is_materialized_whole_never_one_interval_alone(archives, local_store) -> None:
    """The intervals of a month are one published unit: a subset cannot be selected."""
    defs = _defs(archives, local_store)
    job = defs.resolve_job_def(flow_job_name(BTC.exchange))
    with pytest.raises(dg.DagsterInvalidSubsetError, match="flow_bars"):
        job.execute_in_process(
            partition_key=_key(BTC, JAN),
            asset_selection=[
                assets.raw_trades_key(BTC.exchange),
                assets.flow_asset_key(BTC.exchange, "1h"),
            ],
            instance=_synced(defs),
        )


def test_a_backfill_of_months_targets_exactly_those_months(archives, local_store) -> None:
    """The previous-month dependency does not extend a backfill of A..B to B+1 (so a backfill
    whose runs all succeed ends as a success)."""
    from dagster._core.execution.asset_backfill import AssetBackfillData  # noqa: PLC0415

    defs = _defs(archives, local_store)
    graph = defs.resolve_asset_graph()
    selection = [
        k
        for k in graph.get_all_asset_keys()
        if k.path[0] == "binance_futures"
        and k.path[1] not in {"instrument_catalog", "tracked_coverage", "reconciliation"}
    ]
    keys = [_key(BTC, m) for m in (JAN, FEB)]
    backfill = AssetBackfillData.from_asset_partitions(
        asset_graph=graph,
        partition_names=keys,
        asset_selection=selection,
        dynamic_partitions_store=_synced(defs),
        backfill_start_timestamp=datetime.now(UTC).timestamp(),
        all_partitions=False,
    )
    targets = backfill.target_subset.partitions_subsets_by_asset_key
    assert set(targets) == set(selection)
    for subset in targets.values():
        assert sorted(subset.get_partition_keys()) == keys


def test_a_download_that_keeps_failing_is_retried_by_the_step(
    archives, local_store, mirror_root, archive_server, monkeypatch
) -> None:
    """The archive host answers 503 past the HTTP retries once: the raw_trades step asks to be
    retried (later, in production) and the second attempt publishes the month."""
    monkeypatch.setattr(assets, "DOWNLOAD_RETRY_WAIT", 0)
    zip_path = next(mirror_root.rglob("BTCUSDT-aggTrades-2024-01.zip"))
    unavailable = Fault(status=503, retry_after=0)  # the session's 1 + 5 tries, at once
    archive_server.inject(str(zip_path.relative_to(mirror_root)), *[unavailable] * 6)
    result = _run(_defs(archives, local_store), BTC, JAN)
    assert result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["binance_futures__raw_trades"]
    assert _trades(local_store.open(), BTC, JAN).height == 600


def test_a_corrupt_archive_fails_its_month_and_leaves_no_file(
    archives,
    local_store,
    mirror_root,
) -> None:
    zip_path = next(mirror_root.rglob("BTCUSDT-aggTrades-2024-02.zip"))
    zip_path.write_bytes(zip_path.read_bytes()[:-100] + b"\0" * 100)
    result = _run(_defs(archives, local_store), BTC, FEB)
    assert not result.success
    message = failure_text(result)
    assert "checksum" in message.lower()
    store = local_store.open()
    assert store.list_keys("trades/") == []
    assert store.list_keys("flow/") == []


def test_a_day_missing_inside_a_finished_month_blocks_its_trades(
    mirror_root, archive_server, trades, local_store
) -> None:
    """Daily files only, one of them never published: the upstream_defects check fails on the
    month (named in its metadata) and neither trades nor bars are published."""
    write_binance(trades["binance"], mirror_root, BTC.symbol, monthly=False, daily=True)
    gone = next(mirror_root.rglob("BTCUSDT-aggTrades-2024-01-10.zip"))
    gone.unlink()
    gone.with_name(gone.name + ".CHECKSUM").unlink()
    archives = _binance_archives(archive_server.url)
    result = _run(_defs(archives, local_store), BTC, JAN)
    assert not result.success
    evaluation = _check_evaluations(result)[("binance_futures/raw_trades", "upstream_defects")]
    assert not evaluation.passed
    assert evaluation.metadata["partition"].value == _key(BTC, JAN)  # the month it judged
    assert evaluation.metadata["days_missing"].value == ["2024-01-10"]
    assert "upstream defects block the month's trades" in failure_text(result)
    assert local_store.open().list_keys("trades/") == local_store.open().list_keys("flow/") == []


def test_bars_that_fail_validation_are_not_published(archives, local_store, monkeypatch) -> None:
    real_iter_bars = month_mod.FlowBarsEngine.iter_bars

    def with_a_nan_in_1h(self):
        for interval, bars in real_iter_bars(self):
            nan = pl.lit(float("nan")) if interval == "1h" else pl.col("flow_entropy")
            yield interval, bars.with_columns(flow_entropy=nan)

    monkeypatch.setattr(month_mod.FlowBarsEngine, "iter_bars", with_a_nan_in_1h)
    result = _run(_defs(archives, local_store), BTC, JAN)
    assert not result.success
    checks = _check_results(result)
    assert checks[("binance_futures/flow_bars_1h", "bars_valid")] is False
    assert checks[("binance_futures/flow_bars_1m", "bars_valid")] is True
    evaluation = _check_evaluations(result)[("binance_futures/flow_bars_1h", "bars_valid")]
    assert "flow_entropy" in evaluation.metadata["exchange_failure_cases"].value
    assert local_store.open().list_keys("flow/") == []


def test_bars_that_do_not_reconcile_with_the_source_are_not_published(
    archives, local_store, monkeypatch
) -> None:
    real_totals = month_mod.source_totals

    def one_trade_more(*args, **kwargs):
        totals = real_totals(*args, **kwargs)
        return {**totals, "trades": totals["trades"] + 1}

    monkeypatch.setattr(month_mod, "source_totals", one_trade_more)
    result = _run(_defs(archives, local_store), BTC, JAN)
    assert not result.success
    checks = _check_results(result)
    assert checks[("binance_futures/flow_bars_1m", "nothing_lost")] is False
    assert checks[("binance_futures/flow_bars_1m", "bars_valid")] is True
    evaluation = _check_evaluations(result)[("binance_futures/flow_bars_1m", "nothing_lost")]
    assert evaluation.metadata["unreconciled_timestamps"].value == ["exchange"]
    assert evaluation.metadata["exchange"].value["trades_in_source"] == 601
    assert local_store.open().list_keys("flow/") == []


def test_the_sensor_requests_new_and_revised_months(
    mirror_root, archive_server, local_store
) -> None:
    today = datetime.now(UTC).date()
    last = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    entry = InstrumentEntry("binance-futures", "perpetual-BTC-USDT:USDT", last)
    trades = sample_trades(_utc(last), _utc(today.replace(day=1)), 50, seed=4)
    write_binance(trades, mirror_root, entry.symbol, monthly=True)
    defs = build_definitions(
        [entry],
        {
            "archives": _binance_archives(archive_server.url),
            "store": local_store,
        },
    )
    _synced(defs)  # the tracked instruments the sensor probes
    sensor = defs.resolve_sensor_def("archive_sensor")
    resources = {
        "archives": _binance_archives(archive_server.url),
        "store": local_store,
    }
    instance = dg.DagsterInstance.ephemeral()  # where the sensor looks its requested runs up

    def evaluate(cursor=None):
        with dg.build_sensor_context(
            resources=resources, instance=instance, cursor=cursor
        ) as context:
            return sensor(context)

    first = evaluate()
    assert [r.partition_key for r in first.run_requests] == [_key(entry, last)]
    assert first.run_requests[0].job_name == "binance_futures_flow_job"
    assert first.run_requests[0].tags["flow_assets/trigger"] == "published"
    again = evaluate(first.cursor)
    assert again.run_requests == []  # requested already: not requested twice
    assert again.skip_reason is not None
    write_binance(trades.head(40), mirror_root, entry.symbol, monthly=True)  # reissued file
    revised = evaluate(first.cursor)
    assert revised.run_requests[0].tags["flow_assets/trigger"] == "revised"
    assert revised.run_requests[0].run_key != first.run_requests[0].run_key
    # each tick made one request, a listing of the instrument's monthly folder: no archive file
    # (nor CHECKSUM) was fetched
    assert [(method, path.split("&")[:2]) for method, path, _ in archive_server.log] == [
        ("GET", ["/?list-type=2", "prefix=data%2Ffutures%2Fum%2Fmonthly%2FaggTrades%2FBTCUSDT%2F"])
    ] * 3


def test_the_schedule_keeps_the_running_month_fresh(archives, local_store) -> None:
    defs = _defs(archives, local_store)
    instance = _synced(defs)
    schedule = defs.resolve_schedule_def("binance_futures_running_month")
    repository = defs.get_repository_def()

    def tick(at: datetime) -> list[dg.RunRequest]:
        with (
            dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=at,
                repository_def=repository,
                resources={"store": local_store},
            ) as context,
            dg.partition_loading_context(dynamic_partitions_store=instance),
        ):
            return schedule.evaluate_tick(context).run_requests

    requests = tick(datetime(2024, 1, 15, 1, 30, tzinfo=UTC))
    assert [r.partition_key for r in requests] == ["BTC-USDT:USDT|2024-01-01"]
    assert tick(datetime(2024, 2, 1, 1, 30, tzinfo=UTC)) == []


def test_end_to_end_on_a_real_s3_api(archives, s3_env, tmp_path) -> None:
    """Reads and writes through dagster-aws's S3Resource (one boto3 client)."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    s3 = FlowStore(url=s3_env, s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"))
    assert _run(_defs(archives, s3), BTC, JAN).success
    local = FlowStore(url=str(tmp_path / "local"))
    assert _run(_defs(archives, local), BTC, JAN).success
    for interval in ("1m", "1d"):
        from_s3 = get_metrics(
            metric="flow",
            exchange=BTC.exchange,
            symbol=BTC.symbol,
            interval=interval,
            start_date=JAN,
            end_date=date(2024, 1, 31),
            storage_url=s3_env,
        )
        from_disk = get_metrics(
            metric="flow",
            exchange=BTC.exchange,
            symbol=BTC.symbol,
            interval=interval,
            start_date=JAN,
            end_date=date(2024, 1, 31),
            storage_url=local.url,
        )
        assert_frame_equal(from_s3, from_disk)
    assert read_manifest(open_store(s3_env), "trades", BTC.exchange, BTC.symbol, JAN) is not None


def test_the_cli_materializes_one_instrument_month(archives, local_store, tmp_path) -> None:
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        "instruments:\n"
        f"  - exchange: {BTC.exchange}\n    symbol: {BTC.symbol}\n    start: 2024-01\n"
    )
    env = {
        **os.environ,
        "FLOW_ASSETS_INSTRUMENTS": str(instruments),
        "FLOW_ASSETS_STORAGE_URL": local_store.url,
        "FLOW_ASSETS_BINANCE_URL": archives.urls["binance-futures"],
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:  # the CLI's instance
        register_instruments(instance, local_store.open(), InstrumentsConfig(entries=(BTC,)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "flow_assets.definitions",
            "--select",
            "group:binance_futures",
            "--partition",
            "BTC-USDT:USDT|2024-01-01",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = read_manifest(local_store.open(), "flow", BTC.exchange, BTC.symbol, JAN)
    assert len(manifest.files) == len(ALL_INTERVALS) + 1  # and the carried state
    runs = json.dumps(sorted(p.name for p in (tmp_path / "home").iterdir()))
    assert "storage" in runs or "history" in runs
