"""Helpers for a venue's month end to end: its catalog served, partitions synced, the month
materialized through Dagster, and its published bars compared with the naive reference.

Not fixtures: the tests call them with the ``store`` / ``archive_server`` fixtures they use.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
from polars.testing import assert_frame_equal

from flow_assets.catalog.mirror import CatalogServer
from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics.intervals import ALL_INTERVALS, interval_micros
from flow_assets.metrics.schema import FLOW_FIELDS
from flow_assets.orchestration.automation import flow_job_name
from flow_assets.orchestration.catalog import CatalogApi, run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.sources.report import month_bounds
from flow_assets.venues import VENUES
from flow_assets_tests.reference import reference_bars
from flow_assets_tests.runs import failure_text

FINE = ("1s", "15s", "30s", "1m")  # compared over a window of WINDOW_HOURS, the rest whole


def run_months(
    store: FlowStore,
    archive_url: str,
    entries: list[InstrumentEntry],
    month: date,
    catalogs: dict[str, Any] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Serve every venue's catalog (its sample, or the document in ``catalogs``), materialize
    them, sync the partitions and run every entry's month through its venue's flow job, side
    by side in one instance; every run must succeed."""
    documents = {name: v.catalog.sample() for name, v in VENUES.items()} | (catalogs or {})
    instance = dg.DagsterInstance.ephemeral()
    with CatalogServer(documents) as server:
        resources = {
            "catalog_api": CatalogApi(urls=dict.fromkeys(documents, server.url), candle_pace=0),
            "archives": ArchiveSources(urls=dict.fromkeys(VENUES, archive_url)),
            "store": store,
        }
        defs = build_definitions(entries, resources)
        catalog = defs.resolve_job_def("instrument_catalog_job").execute_in_process(
            instance=instance
        )
        assert catalog.success, failure_text(catalog)
        run_instruments_sensor(defs, instance)
        results = []
        for entry in entries:
            result = defs.resolve_job_def(flow_job_name(entry.exchange)).execute_in_process(
                partition_key=str(partition_key(entry, month)),
                instance=instance,
                raise_on_error=False,
            )
            assert result.success, failure_text(result)
            results.append(result)
    return results


def published_trades(store: FlowStore, exchange: str, symbol: str, month: date) -> pl.DataFrame:
    """The trades of a published month."""
    objects = store.open()
    manifest = read_manifest(objects, "trades", exchange, symbol, month)
    return objects.read_parquet(manifest.key_of("trades"))


def assert_bars_match_reference(
    store: FlowStore,
    exchange: str,
    symbol: str,
    month: date,
    expected_trades: pl.DataFrame,
    window_start: datetime,
    window_hours: int = 4,
) -> None:
    """Every interval's published bars equal the naive reference computed from
    ``expected_trades``: the whole month for 5m and coarser, a window of ``window_hours`` from
    ``window_start`` (with the trades before it as history) for the finer ones."""
    objects = store.open()
    manifest = read_manifest(objects, "flow", exchange, symbol, month)
    start, end = month_bounds(month)
    for interval in ALL_INTERVALS:
        bars = objects.read_parquet(manifest.key_of(flow_file("exchange", interval)))
        low, high = start, end
        if interval in FINE:
            low, high = window_start, window_start + timedelta(hours=window_hours)
        assert interval_micros(interval) <= (high - low).total_seconds() * 1e6
        expected = reference_bars(expected_trades, interval, low, high)
        got = bars.filter(
            pl.col("time").is_between(
                low.replace(tzinfo=None), high.replace(tzinfo=None), closed="left"
            )
        )
        _assert_close(got, expected, interval)


def _assert_close(got: pl.DataFrame, expected: pl.DataFrame, interval: str) -> None:
    others = [f for f in FLOW_FIELDS if f != "flow_toxicity_score"]
    assert got.height == expected.height, interval
    assert_frame_equal(
        got.select("time", *others), expected.select("time", *others), rel_tol=1e-9, abs_tol=1e-9
    )
    assert_frame_equal(
        got.select("flow_toxicity_score"),
        expected.select("flow_toxicity_score"),
        rel_tol=1e-6,
        abs_tol=1e-6,
    )
