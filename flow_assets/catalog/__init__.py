"""Instrument catalog: every perpetual the venues list, with Atlas ids and contract values.

Generic mechanisms only, no Dagster and no venue named: the frame schema, its row helpers and
merging (:mod:`.model`), contract-value histories (:mod:`.contracts`), fetching through a
venue's reader (:mod:`.fetch`), the object-store keys (:mod:`.storage`), a local server for
tests and the demo (:mod:`.mirror`) and names for sample listings (:mod:`.samples`). What each
venue's REST metadata looks like (paths, pagination, field mapping, sample answers) is in its
module, :mod:`flow_assets.venues`.
"""

from __future__ import annotations

from flow_assets.catalog.contracts import (
    CONTRACT_SCHEMA,
    VALUES_SCHEMA,
    ContractHistoryError,
    UnknownContractError,
    check_history,
    contract_values,
    empty_history,
    merge_snapshot,
    seed_history,
    value_at,
)
from flow_assets.catalog.fetch import (
    CatalogFetchError,
    fetch_catalog,
    resolve_api_url,
)
from flow_assets.catalog.model import (
    INSTRUMENT_SCHEMA,
    CatalogError,
    CatalogShapeError,
    empty_instruments,
    merge_listings,
)
from flow_assets.catalog.storage import (
    Catalog,
    contract_values_key,
    initial_catalog,
    instruments_key,
    load_catalog,
    merge_catalog,
    save_catalog,
    stored_contracts,
    update_catalog,
)

__all__ = [
    "CONTRACT_SCHEMA",
    "INSTRUMENT_SCHEMA",
    "VALUES_SCHEMA",
    "Catalog",
    "CatalogError",
    "CatalogFetchError",
    "CatalogShapeError",
    "ContractHistoryError",
    "UnknownContractError",
    "check_history",
    "contract_values",
    "contract_values_key",
    "empty_history",
    "empty_instruments",
    "fetch_catalog",
    "initial_catalog",
    "instruments_key",
    "load_catalog",
    "merge_catalog",
    "merge_listings",
    "merge_snapshot",
    "resolve_api_url",
    "save_catalog",
    "seed_history",
    "stored_contracts",
    "update_catalog",
    "value_at",
]
