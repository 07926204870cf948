"""The catalog in the object store: one listing and one contract-value history per exchange.

Keys: ``catalog/{exchange}/instruments.parquet`` (:data:`INSTRUMENT_SCHEMA` rows),
``catalog/{exchange}/contract_values.parquet`` (:data:`CONTRACT_SCHEMA` rows, the exchange's
seed rows included) and, for a venue whose candles date its contract values,
``catalog/{exchange}/contract_candles.parquet`` (how far they were read).
:func:`update_catalog` is the daily step: merge a fresh snapshot (and what the candles show)
into what is stored and store the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from flow_assets.catalog.contract_dating import STATE_SCHEMA, Timeline, empty_state
from flow_assets.catalog.contracts import (
    CONTRACT_SCHEMA,
    check_history,
    merge_snapshot,
    seed_history,
)
from flow_assets.catalog.model import INSTRUMENT_SCHEMA, empty_instruments, merge_listings
from flow_assets.store import MissingObjectError, ObjectStore


@dataclass(frozen=True)
class Catalog:
    """One exchange's listing (``instruments``) and contract-value history (``contracts``)."""

    exchange: str
    instruments: pl.DataFrame
    contracts: pl.DataFrame


def instruments_key(exchange: str) -> str:
    """Where the exchange's listing is stored."""
    return f"catalog/{exchange}/instruments.parquet"


def contract_values_key(exchange: str) -> str:
    """Where the exchange's contract-value history is stored."""
    return f"catalog/{exchange}/contract_values.parquet"


def candle_state_key(exchange: str) -> str:
    """Where the exchange's candle reading state is stored (how far each instrument's daily
    candles were read, :data:`~flow_assets.catalog.contract_dating.STATE_SCHEMA`)."""
    return f"catalog/{exchange}/contract_candles.parquet"


def load_candle_state(store: ObjectStore, exchange: str) -> pl.DataFrame:
    """The stored candle reading state of ``exchange`` (empty: never read)."""
    try:
        return _read(store, candle_state_key(exchange), STATE_SCHEMA)
    except MissingObjectError:
        return empty_state()


def save_candle_state(store: ObjectStore, exchange: str, state: pl.DataFrame) -> None:
    """Store the candle reading state (one atomic write)."""
    store.write_parquet(candle_state_key(exchange), state.select(list(STATE_SCHEMA)))


def save_catalog(store: ObjectStore, catalog: Catalog) -> None:
    """Store both frames of ``catalog`` (each one atomic write)."""
    store.write_parquet(
        instruments_key(catalog.exchange), catalog.instruments.select(list(INSTRUMENT_SCHEMA))
    )
    store.write_parquet(
        contract_values_key(catalog.exchange), catalog.contracts.select(list(CONTRACT_SCHEMA))
    )


def _read(store: ObjectStore, key: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frame = store.read_parquet(key)
    if "dated_by" in schema and "dated_by" not in frame.columns:  # stored before candles
        frame = frame.with_columns(dated_by=pl.lit("snapshot"))
    return frame.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def load_catalog(store: ObjectStore, exchange: str) -> Catalog:
    """The stored catalog of ``exchange``; :class:`MissingObjectError` if none is stored."""
    instruments = _read(store, instruments_key(exchange), INSTRUMENT_SCHEMA)
    contracts = check_history(_read(store, contract_values_key(exchange), CONTRACT_SCHEMA))
    return Catalog(exchange, instruments, contracts)


def stored_contracts(store: ObjectStore, exchange: str) -> pl.DataFrame:
    """The exchange's contract-value history: the stored catalog's, else the seed's (no
    snapshot taken yet)."""
    try:
        return load_catalog(store, exchange).contracts
    except MissingObjectError:
        return initial_catalog(exchange).contracts


def initial_catalog(exchange: str) -> Catalog:
    """The catalog before any snapshot: no listing, the seed's contract values."""
    seed = seed_history().filter(pl.col("exchange") == exchange)
    return Catalog(exchange, empty_instruments(), seed)


def merge_catalog(
    catalog: Catalog,
    snapshot: pl.DataFrame,
    seen_at: datetime,
    timelines: Mapping[str, Timeline] | None = None,
) -> Catalog:
    """``catalog`` after a snapshot of its exchange taken at ``seen_at``, with the candles'
    ``timelines`` where read (pure)."""
    wrong = snapshot.filter(pl.col("exchange") != catalog.exchange)
    if not wrong.is_empty():
        raise ValueError(
            f"snapshot rows of {wrong['exchange'][0]} for a {catalog.exchange} catalog"
        )
    return Catalog(
        catalog.exchange,
        merge_listings(catalog.instruments, snapshot, seen_at),
        merge_snapshot(catalog.contracts, snapshot, seen_at, timelines),
    )


def update_catalog(
    store: ObjectStore,
    exchange: str,
    snapshot: pl.DataFrame,
    seen_at: datetime,
    timelines: Mapping[str, Timeline] | None = None,
) -> Catalog:
    """Merge ``snapshot`` (fetched at ``seen_at``) and the candles' ``timelines`` into the
    stored catalog, store and return it.

    With nothing stored yet it starts from :func:`initial_catalog`.
    """
    try:
        catalog = load_catalog(store, exchange)
    except MissingObjectError:
        catalog = initial_catalog(exchange)
    merged = merge_catalog(catalog, snapshot, seen_at, timelines)
    save_catalog(store, merged)
    return merged
