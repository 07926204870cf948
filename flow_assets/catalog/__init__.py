"""Instrument catalog: every perpetual the exchanges list, with Atlas ids and contract values.

No Dagster here: pure parsing and merging (:mod:`.model`, :mod:`.contracts`), fetching over
HTTP (:mod:`.fetch`), the object-store keys (:mod:`.storage`) and a local server for tests
(:mod:`.mirror`, :mod:`.samples`).
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
    OkxApiError,
    fetch_binance,
    fetch_catalog,
    fetch_okx,
    resolve_api_url,
)
from flow_assets.catalog.model import (
    INSTRUMENT_SCHEMA,
    CatalogError,
    CatalogShapeError,
    empty_instruments,
    merge_listings,
    parse_binance,
    parse_okx,
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
    "OkxApiError",
    "UnknownContractError",
    "check_history",
    "contract_values",
    "contract_values_key",
    "empty_history",
    "empty_instruments",
    "fetch_binance",
    "fetch_catalog",
    "fetch_okx",
    "initial_catalog",
    "instruments_key",
    "load_catalog",
    "merge_catalog",
    "merge_listings",
    "merge_snapshot",
    "parse_binance",
    "parse_okx",
    "resolve_api_url",
    "save_catalog",
    "seed_history",
    "stored_contracts",
    "update_catalog",
    "value_at",
]
