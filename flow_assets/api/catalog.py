"""What the store publishes, as the API describes it: files of a query, symbols, the catalog.

Reads only manifests (:mod:`flow_assets.publish`): a month is served once its manifest names it,
and only the files the manifest names. No HTTP here and nothing of Dagster.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date
from typing import Any

from flow_assets.client import months_between, published_keys
from flow_assets.metrics.intervals import ALL_INTERVALS, interval_micros
from flow_assets.metrics.schema import BAR_SCHEMA, COUNT_FIELDS
from flow_assets.publish import MANIFEST, Manifest, list_manifests, read_manifest
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


class TtlCache:
    """Values computed on demand and reused for ``max_age`` seconds, at most ``max_entries``."""

    def __init__(self, max_age: float, max_entries: int = 10_000) -> None:
        self.max_age, self.max_entries = max_age, max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, or ``compute()`` when there is none fresh enough."""
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and now - hit[0] < self.max_age:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._values) >= self.max_entries:
                fresh = {k: v for k, v in self._values.items() if now - v[0] < self.max_age}
                self._values = fresh if len(fresh) < self.max_entries else {}
            self._values[key] = (now, value)
        return value


class Published:
    """The store as the API serves it: manifests, symbol lists and the catalog, each reused for
    ``max_age`` seconds (a republished month shows within that time; the version it replaced
    stays in the store, so links handed out meanwhile keep working)."""

    def __init__(self, store: ObjectStore, max_age: float) -> None:
        self.store = store
        self._cache = TtlCache(max_age)

    def manifest(self, exchange: str, symbol: str, month: date) -> Manifest | None:
        """The published version of one flow month, or None."""
        return self._cache.get(
            ("manifest", exchange, symbol, month),
            lambda: read_manifest(self.store, "flow", exchange, symbol, month),
        )

    def files(
        self,
        exchange: str,
        symbol: str,
        timestamp: str,
        interval: str,
        start: date,
        end: date,
    ) -> list[PublishedFile]:
        """The published files of the months ``start`` .. ``end`` touch, in month order."""
        lookup = published_keys(
            lambda month: self.manifest(exchange, symbol, month),
            timestamp,
            interval,
            months_between(start, end),
        )
        return [PublishedFile(month, key) for month, key in lookup.found]

    def symbols(self, exchange: str) -> list[str]:
        """Symbols of ``exchange`` with at least one published month, sorted."""
        return self._cache.get(("symbols", exchange), lambda: symbols_of(self.store, exchange))

    def catalog(self) -> dict[str, Any]:
        """The catalog document (see :func:`catalog`)."""
        return self._cache.get(("catalog",), lambda: catalog(self.store))


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
        "reconciled": {f"{m.month:%Y-%m}": _reconciled(m) for m in manifests},
    }


def _reconciled(manifest: Manifest) -> bool | None:
    """Whether the month's bars agreed with the exchange's own figures when published."""
    value = manifest.metadata.get("reconciled")
    return value if isinstance(value, bool) else None


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
