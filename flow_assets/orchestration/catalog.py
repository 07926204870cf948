"""Instruments as data: the catalog assets, their daily schedule, and the instruments sensor.

* ``{slug}/instrument_catalog`` (one per exchange, not partitioned): fetches the exchange's
  public metadata and merges it into the stored catalog (``update_catalog``). The only place
  that calls the exchanges' REST APIs; refreshed daily by ``instrument_catalog_daily``.
* ``instruments_sensor``: resolves the instruments file (explicit entries and selection rules)
  against the stored catalogs, stores the tracked instruments of each exchange
  (:mod:`flow_assets.tracked`) and keeps the dynamic instrument dimensions in sync (adds new
  keys, deletes keys no longer tracked; refused keys are logged, never added). A key created
  by hand (the UI's "+ Add a partition": Dagster does not validate dynamic keys) is deleted on
  the next tick, with a warning naming it; a run of it meanwhile fails as "not tracked".

:func:`sync_instruments` is that step as a plain function; :func:`register_instruments` applies
it to an instance directly (the demo and the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.legacy_storage import LegacyEventLogStorage

from flow_assets.catalog import (
    Catalog,
    contract_values_key,
    instruments_key,
    load_catalog,
    update_catalog,
)
from flow_assets.catalog.contract_dating import ContractDating
from flow_assets.catalog.model import INSTRUMENT_DESCRIPTIONS, INSTRUMENT_SCHEMA
from flow_assets.catalog.storage import load_candle_state, save_candle_state
from flow_assets.instruments import InstrumentsConfig, load_config
from flow_assets.orchestration.assets import _markdown_table, _schema_metadata
from flow_assets.orchestration.partitions import FlowPartitions, exchange_slug
from flow_assets.orchestration.resources import CatalogApi, FlowStore
from flow_assets.store import MissingObjectError, ObjectStore
from flow_assets.tracked import (
    instrument_key,
    resolve_instruments,
    save_tracked,
    tracked_entries,
    tracked_key,
)

CATALOG_GROUP = "catalog"
CATALOG_JOB = "instrument_catalog_job"
SYNC_INTERVAL_SECONDS = 300
FOREIGN_KEYS = (
    "removed {exchange} instrument keys that no instruments file tracks (created by hand, e.g. "
    "with the UI's '+ Add a partition': Dagster does not validate dynamic keys; add the "
    "instrument to the instruments file instead)"
)
PREVIEW_COLUMNS = ["native", "symbol", "kind", "ct_val", "ct_val_ccy", "listed", "delisted"]


def catalog_asset_key(exchange: str) -> dg.AssetKey:
    """Asset key of an exchange's catalog, e.g. ``binance_futures/instrument_catalog``."""
    return dg.AssetKey([exchange_slug(exchange), "instrument_catalog"])


def _names(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["native"].to_list())


def catalog_changes(previous: pl.DataFrame | None, current: pl.DataFrame) -> dict[str, list[str]]:
    """New listings, delistings and contract-value changes between two listings (natives)."""
    columns = ["native", "ct_val", "ct_val_ccy", "delisted"]
    before = (previous if previous is not None else current.clear()).select(columns)
    joined = current.select(columns).join(before, on="native", how="left", suffix="_before")
    known = pl.col("native").is_in(before["native"].implode())
    changed = (pl.col("ct_val") != pl.col("ct_val_before")) | (
        pl.col("ct_val_ccy") != pl.col("ct_val_ccy_before")
    )
    return {
        "new_listings": _names(joined.filter(~known)) if previous is not None else [],
        "delistings": _names(
            joined.filter(pl.col("delisted").is_not_null() & pl.col("delisted_before").is_null())
        ),
        "contract_value_changes": _names(joined.filter(known & changed)),
    }


def _changes_metadata(
    previous: pl.DataFrame | None, instruments: pl.DataFrame
) -> dict[str, dg.MetadataValue]:
    """What changed since the previous snapshot; on the first one, that there is none to
    compare with (its delisted rows were already delisted, not delisted since)."""
    if previous is None:
        delisted = instruments.filter(pl.col("delisted").is_not_null()).height
        return {
            "first_snapshot": dg.MetadataValue.bool(True),
            "changes_since_previous_snapshot": dg.MetadataValue.text(
                f"none: first snapshot, nothing to compare with ({instruments.height} rows, "
                f"{delisted} of them already delisted)"
            ),
        }
    changes = catalog_changes(previous, instruments)
    return {
        "first_snapshot": dg.MetadataValue.bool(False),
        **{name: dg.MetadataValue.json(names) for name, names in changes.items()},
    }


def _dating_metadata(
    contracts: pl.DataFrame, dating: ContractDating | None
) -> dict[str, dg.MetadataValue]:
    """How the contract values' starts were dated (rows per ``dated_by``), and the candles
    read for it: requests, swaps whose candles could not be had (snapshot rule for them)."""
    counts = contracts.group_by("dated_by").len().sort("dated_by").rows()
    metadata = {"contract_values_dated_by": dg.MetadataValue.json(dict(counts))}
    if dating is None:
        return metadata | {"contract_values_from_candles": dg.MetadataValue.bool(False)}
    snapshot_dated = contracts.filter(pl.col("dated_by") == "snapshot")["native"].unique()
    return metadata | {
        "contract_values_from_candles": dg.MetadataValue.bool(True),
        "candle_requests": dg.MetadataValue.int(dating.requests),
        "candles_unavailable": dg.MetadataValue.json(sorted(dating.unavailable)),
        "dated_by_snapshot_fallback": dg.MetadataValue.json(sorted(snapshot_dated.to_list())),
    }


def _catalog_preview(instruments: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    shown = instruments.sort("native").head(rows)
    caption = f"The first {shown.height} of {instruments.height} rows, by native id."
    return _markdown_table(shown.select(PREVIEW_COLUMNS), caption)


def instrument_catalog_asset(exchange: str) -> dg.AssetsDefinition:
    """``{slug}/instrument_catalog``: the exchange's listing and contract values, merged daily."""
    schema = _schema_metadata(INSTRUMENT_SCHEMA, INSTRUMENT_DESCRIPTIONS)

    @dg.asset(
        key=catalog_asset_key(exchange),
        group_name=CATALOG_GROUP,
        kinds={"polars", "parquet"},
        description=f"One row per perpetual {exchange} lists or has delisted (Atlas id, "
        "base/quote/settle, contract value, listing and delisting times), with the history of "
        "contract values beside it, merged from the exchange's public metadata; where the "
        "venue has candles counting contracts (OKX), each change is dated to the minute by "
        "them (the snapshot's time only as a fallback, marked dated_by=snapshot). Runs "
        "computing bars read this stored catalog; only this asset calls the exchange's REST API.",
        metadata={"dagster/column_schema": schema},
    )
    def instrument_catalog(catalog_api: CatalogApi, store: FlowStore) -> dg.MaterializeResult:
        objects = store.open()
        try:
            previous: pl.DataFrame | None = load_catalog(objects, exchange).instruments
        except MissingObjectError:
            previous = None
        snapshot = catalog_api.fetch(exchange)
        dating = catalog_api.date_contracts(
            exchange, snapshot, load_candle_state(objects, exchange)
        )
        timelines = dating.timelines if dating else None
        merged: Catalog = update_catalog(objects, exchange, snapshot, datetime.now(UTC), timelines)
        if dating is not None:
            save_candle_state(objects, exchange, dating.state)
        listed = merged.instruments.filter(pl.col("delisted").is_null()).height
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": merged.instruments.height,
                "dagster/column_schema": schema,
                "instruments_listed": listed,
                **_changes_metadata(previous, merged.instruments),
                **_dating_metadata(merged.contracts, dating),
                "stored_keys": dg.MetadataValue.json(
                    [objects.uri(k(exchange)) for k in (instruments_key, contract_values_key)]
                ),
                "preview": _catalog_preview(merged.instruments),
            }
        )

    return instrument_catalog


def build_catalog_automation(
    partitions: FlowPartitions,
) -> tuple[list[dg.AssetsDefinition], Any, dg.ScheduleDefinition]:
    """The catalog assets, their job and the daily schedule."""
    catalog_assets = [instrument_catalog_asset(p.exchange) for p in partitions.exchanges]
    job = dg.define_asset_job(
        CATALOG_JOB,
        selection=dg.AssetSelection.groups(CATALOG_GROUP),
        description="Refresh every exchange's instrument catalog from its public metadata.",
    )
    schedule = dg.ScheduleDefinition(
        name="instrument_catalog_daily",
        job=job,
        cron_schedule="10 0 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Each day: new listings, delistings and contract-value changes.",
    )
    return catalog_assets, job, schedule


@dataclass(frozen=True)
class SyncOutcome:
    """One sync: the partition requests, what is tracked per exchange, what was refused, and
    the keys removed that no sync ever added (``foreign``: created by hand, e.g. with the
    UI's "+ Add a partition", which Dagster does not validate)."""

    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]
    tracked: dict[str, list[str]]
    refused: list[str]
    stored: list[str]
    foreign: dict[str, list[str]] = field(default_factory=dict)


def _stored_listing(store: ObjectStore, exchange: str) -> pl.DataFrame | None:
    try:
        return load_catalog(store, exchange).instruments
    except MissingObjectError:
        return None


def sync_instruments(
    store: ObjectStore,
    config: InstrumentsConfig,
    current_keys: Callable[[str], Sequence[str]],
    partitions: FlowPartitions | None = None,
) -> SyncOutcome:
    """Resolve ``config`` against the stored catalogs, store the tracked instruments, and the
    requests that bring each dynamic dimension (``current_keys(name)``) in line with them.

    An exchange whose selection rules have no stored catalog yet keeps every key it has (and
    its tracked instruments): a missing catalog never deletes partitions.
    """
    partitions = partitions or FlowPartitions()
    exchanges = partitions.exchanges
    catalogs = {p.exchange: _stored_listing(store, p.exchange) for p in exchanges}
    resolution = resolve_instruments(config, catalogs, partitions.months_start)
    requests: list[Any] = []
    tracked, stored, foreign = {}, [], {}
    for p in exchanges:
        chosen = dict(resolution.tracked.get(p.exchange, {}))
        current = list(current_keys(p.instruments_name))
        before = {instrument_key(e.symbol): e for e in tracked_entries(store, p.exchange)}
        if p.exchange in resolution.incomplete:  # keep what was tracked before
            chosen = dict(sorted({**before, **chosen}.items()))
        if save_tracked(store, p.exchange, chosen.values()):
            stored.append(store.uri(tracked_key(p.exchange)))
        tracked[p.exchange] = list(chosen)
        added = [k for k in chosen if k not in current]
        if added:
            requests.append(dg.AddDynamicPartitionsRequest(p.instruments_name, added))
        gone = [k for k in current if k not in chosen]
        if gone and p.exchange not in resolution.incomplete:
            requests.append(dg.DeleteDynamicPartitionsRequest(p.instruments_name, gone))
            foreign[p.exchange] = [k for k in gone if k not in before]
    return SyncOutcome(requests, tracked, resolution.refused, stored, foreign)


DELETE_CHUNK = 500  # keys per DELETE statement (SQLite binds at most 999 parameters)


def _sql_event_log(instance: dg.DagsterInstance) -> SqlEventLogStorage | None:
    """The instance's event log as Dagster's SQL storage (SQLite, PostgreSQL, MySQL), if it is."""
    storage = instance.event_log_storage
    if isinstance(storage, LegacyEventLogStorage):  # ``storage:`` in dagster.yaml wraps it
        storage = storage._storage.event_log_storage
    return storage if isinstance(storage, SqlEventLogStorage) else None


def delete_partition_keys(instance: dg.DagsterInstance, name: str, keys: Sequence[str]) -> None:
    """Delete ``keys`` from the dynamic partitions ``name`` in one transaction.

    Dagster 1.13 has no bulk delete: its daemon applies a ``DeleteDynamicPartitionsRequest`` one
    key at a time, two storage queries each (650 instruments removed from the file: 23.6 s on
    SQLite, 0.06 s in one batch, ``benchmarks/bench_partition_removal.py``). On Dagster's SQL
    storages this is one ``DELETE`` per 500 keys in one transaction; on any other storage,
    Dagster's own per-key delete.
    """
    storage = _sql_event_log(instance)
    if storage is None:
        for key in keys:
            instance.delete_dynamic_partition(name, key)
        return
    table = DynamicPartitionsTable
    with storage.index_connection() as conn:
        for start in range(0, len(keys), DELETE_CHUNK):
            chunk = list(keys[start : start + DELETE_CHUNK])
            conn.execute(
                table.delete().where(
                    table.c.partitions_def_name == name, table.c.partition.in_(chunk)
                )
            )


def apply_requests(instance: dg.DagsterInstance, requests: Sequence[Any]) -> None:
    """Apply dynamic partition requests to ``instance``, each one batch (one insert of every
    new key; one transaction deleting every removed key)."""
    for request in requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            delete_partition_keys(instance, request.partitions_def_name, request.partition_keys)


def register_instruments(
    instance: dg.DagsterInstance,
    store: ObjectStore,
    config: InstrumentsConfig,
    partitions: FlowPartitions | None = None,
) -> SyncOutcome:
    """One sync applied directly to ``instance`` (the demo and tests; the sensor in production)."""
    outcome = sync_instruments(store, config, instance.get_dynamic_partitions, partitions)
    apply_requests(instance, outcome.requests)
    return outcome


class InstrumentsFile(dg.ConfigurableResource):
    """The instruments file (entries and selection rules), read again on every sync, so an
    instrument is added or removed by editing it: no code change, no reload. Empty: the shipped
    ``flow_assets/instruments.yaml``."""

    path: str | None = None

    def load(self) -> InstrumentsConfig:
        return load_config(self.path)


def build_instruments_sensor(
    fixed: InstrumentsConfig | None, partitions: FlowPartitions
) -> dg.SensorDefinition:
    """``instruments_sensor``: keeps the instrument dimensions in sync with the file + catalog
    (``fixed``: these instruments instead of the file's, for tests and the demo)."""

    @dg.sensor(
        name="instruments_sensor",
        minimum_interval_seconds=SYNC_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Resolves the instruments file (entries and selection rules) against the "
        "stored catalogs, stores the tracked instruments and their months, and adds/deletes "
        "the instrument partitions accordingly; a key created by hand ('+ Add a partition') "
        "is deleted, with a warning in the tick's log. Reads the store only.",
    )
    def instruments_sensor(
        context: dg.SensorEvaluationContext, store: FlowStore, instruments: InstrumentsFile
    ) -> dg.SensorResult | dg.SkipReason:
        config = fixed or instruments.load()
        outcome = sync_instruments(
            store.open(), config, context.instance.get_dynamic_partitions, partitions
        )
        for message in outcome.refused:
            context.log.warning(f"refused: {message}")
        for exchange, keys in outcome.foreign.items():
            if keys:
                context.log.warning(f"{FOREIGN_KEYS.format(exchange=exchange)}: {keys}")
        adds = [r for r in outcome.requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
        for request in outcome.requests:
            verb = "add" if request in adds else "delete"
            keys = request.partition_keys
            context.log.info(f"{verb} {len(keys)} {request.partitions_def_name}: {keys}")
            if request not in adds:  # one batch here: the daemon would delete key by key
                delete_partition_keys(context.instance, request.partitions_def_name, keys)
        if not outcome.requests:
            counts = ", ".join(f"{e}: {len(k)}" for e, k in outcome.tracked.items())
            return dg.SkipReason(f"instrument partitions in sync ({counts})")
        return dg.SensorResult(dynamic_partitions_requests=adds)

    return instruments_sensor


def run_instruments_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> dg.SensorResult | dg.SkipReason:
    """Evaluate ``instruments_sensor`` of ``defs`` once and apply its partition requests to
    ``instance`` (the demo and the tests: no daemon)."""
    sensor = defs.resolve_sensor_def("instruments_sensor")
    store = defs.resources["store"]
    resources = {"store": store, "instruments": defs.resources["instruments"]}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = sensor(context)
    if isinstance(result, dg.SensorResult):
        apply_requests(instance, result.dynamic_partitions_requests or [])
    return result
