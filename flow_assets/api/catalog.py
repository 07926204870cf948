"""What the store publishes, as the API describes it: files of a query, symbols, the catalog.

Reads only manifests (:mod:`flow_assets.publish`): a month is served once its manifest names it,
and only the files the manifest names. No HTTP here and nothing of Dagster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from flow_assets.client import months_between, published_keys
from flow_assets.metrics.intervals import ALL_INTERVALS, interval_micros
from flow_assets.metrics.schema import BAR_SCHEMA, COUNT_FIELDS
from flow_assets.publish import MANIFEST, Manifest, list_manifests
from flow_assets.store import TIMESTAMPS, ObjectStore

FLOW_METRIC = {
    "id": "flow",
    "name": "Order flow",
    "description": (
        "Taker buy/sell volumes, counts, deltas, ratios, entropy and toxicity, and the same "
        "split into small (< 100 USD), medium and large (>= 1000 USD) trades, per bar "
        "[time, time + interval) aligned to the UTC epoch."
    ),
    "category": "trades",
}


@dataclass(frozen=True)
class PublishedFile:
    """One monthly file a query is answered with: its month and store key."""

    month: date
    key: str


def files_for(
    store: ObjectStore,
    exchange: str,
    symbol: str,
    timestamp: str,
    interval: str,
    start: date,
    end: date,
) -> list[PublishedFile]:
    """The published files of the months ``start`` .. ``end`` touch, in month order."""
    lookup = published_keys(
        store, exchange, symbol, timestamp, interval, months_between(start, end)
    )
    return [PublishedFile(month, key) for month, key in lookup.found]


def symbols_of(store: ObjectStore, exchange: str) -> list[str]:
    """Symbols of ``exchange`` with at least one published month, sorted."""
    found = set()
    for key in store.list_keys(f"flow/{exchange}/"):
        parts = key.split("/")  # flow / exchange / symbol / YYYY-MM / manifest.json
        if len(parts) == 5 and parts[4] == MANIFEST:
            found.add(parts[2])
    return sorted(found)


def _field_type(name: str) -> str:
    if name == "time":
        return "datetime[us]"
    return "int64" if name in COUNT_FIELDS else "float64"


def flow_fields() -> list[dict[str, str]]:
    """The columns of every flow file, in file order, with their types."""
    return [{"name": name, "type": _field_type(name)} for name in BAR_SCHEMA]


def _coverage_entry(manifests: list[Manifest]) -> dict[str, Any]:
    """First and last published month, intervals and timestamp sources of one instrument."""
    manifests = sorted(manifests, key=lambda m: m.month)
    names = {
        tuple(name.split("/", 1)) for m in manifests for name in m.files if name.count("/") == 1
    }
    timestamps = sorted({ts for ts, iv in names if ts in TIMESTAMPS and iv in ALL_INTERVALS})
    intervals = sorted(
        {iv for ts, iv in names if ts in TIMESTAMPS and iv in ALL_INTERVALS}, key=interval_micros
    )
    last = manifests[-1]
    covered = last.metadata.get("covered_until")
    return {
        "exchange": last.exchange,
        "symbol": last.symbol,
        "intervals": intervals,
        "timestamps": timestamps,
        "first_month": f"{manifests[0].month:%Y-%m}",
        "last_month": f"{last.month:%Y-%m}",
        "last_month_complete": bool(last.metadata.get("complete", False)),
        "covered_until": covered if isinstance(covered, str) else None,
    }


def catalog(store: ObjectStore) -> dict[str, Any]:
    """The metrics served, with fields and, per exchange and symbol, what is published."""
    by_instrument: dict[tuple[str, str], list[Manifest]] = defaultdict(list)
    for manifest in list_manifests(store, "flow"):
        by_instrument[(manifest.exchange, manifest.symbol)].append(manifest)
    coverage = [_coverage_entry(by_instrument[k]) for k in sorted(by_instrument)]
    metric = {
        **FLOW_METRIC,
        "fields": flow_fields(),
        "intervals": list(ALL_INTERVALS),
        "timestamps": list(TIMESTAMPS),
        "coverage": coverage,
    }
    return {"metrics": [metric]}
