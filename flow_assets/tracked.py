"""Tracked instruments: the instruments file resolved against the stored catalog.

Which instruments are tracked, and over which months, is decided by the ``instruments_sensor``
(:mod:`flow_assets.orchestration.catalog`) from the instruments file and the stored catalog, and
written per exchange to ``catalog/{exchange}/tracked.json``. Runs and sensors read it from
there (:func:`tracked_entries`), never from the exchanges' REST APIs.

* First month: the file's ``start`` if set, else the catalog's listing month; never before
  :data:`MONTHS_START` (the first month of the partitions).
* Last month: the month of the catalog's delisting time (None while listed).
* A partition key is the Atlas symbol minus ``perpetual-`` and must map back to the exchange's
  native id; a key with ``| , [ ]`` (which multi-partition keys cannot hold) is refused.

No Dagster here (plain functions the sensor, the assets, the demo and the tests share).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from flow_assets.instruments import InstrumentEntry, InstrumentsConfig, TrackedInstrument
from flow_assets.store import MissingObjectError, ObjectStore
from flow_assets.symbology import (
    SymbolError,
    format_symbol,
    from_native,
    parse_symbol,
    to_native,
)
from flow_assets.venues import NAMES

# The months dimension starts here, a fixed month: loading definitions reads neither the store
# nor the exchanges, so it cannot start at the earliest tracked instrument. 2019-09 is the first
# month of Binance USD-M's first perpetual (BTCUSDT, onboarded 2019-09-08); an instrument listed
# earlier (OKX swaps date from 2018) is tracked from here.
MONTHS_START = date(2019, 9, 1)
SYMBOL_TYPE = "perpetual-"  # every tracked instrument is a perpetual
FORBIDDEN_KEY_CHARACTERS = "|,[]"  # Dagster multi-partition keys cannot contain them


class KeyRefusedError(ValueError):
    """An instrument that cannot be a partition key (the message says why)."""


def tracked_key(exchange: str) -> str:
    """Where the tracked instruments of ``exchange`` are stored."""
    return f"catalog/{exchange}/tracked.json"


def instrument_key(symbol: str) -> str:
    """The partition key of an Atlas perpetual: ``perpetual-BTC-USDT:USDT`` -> ``BTC-USDT:USDT``."""
    if not symbol.startswith(SYMBOL_TYPE):
        raise ValueError(f"{symbol!r} is not a perpetual's Atlas symbol")
    return symbol.removeprefix(SYMBOL_TYPE)


def check_instrument(exchange: str, symbol: object, native: str | None = None) -> str:
    """The partition key of ``symbol`` on ``exchange``, or :class:`KeyRefusedError`.

    The symbol must be an Atlas perpetual that maps to an id of the exchange and back (to
    ``native`` when given), and its key must hold none of ``| , [ ]``.
    """
    if not isinstance(symbol, str) or not symbol:
        raise KeyRefusedError(f"{native or '?'} has no Atlas symbol (outside the Atlas grammar)")
    key = symbol.removeprefix(SYMBOL_TYPE)
    bad = sorted({c for c in key if c in FORBIDDEN_KEY_CHARACTERS})
    if bad:
        raise KeyRefusedError(f"key {key!r} contains {bad}: not allowed in a partition key")
    try:
        inst = parse_symbol(symbol)
        if inst.kind != "perpetual":
            raise KeyRefusedError(f"{symbol} is not a perpetual")
        mapped = to_native(exchange, inst)
        back = format_symbol(from_native(exchange, mapped))
    except SymbolError as error:
        raise KeyRefusedError(f"{symbol}: not an Atlas perpetual of {exchange}: {error}") from None
    if back != symbol:
        raise KeyRefusedError(f"{symbol} maps to {mapped}, which maps back to {back}")
    if native is not None and mapped.upper() != native.upper():
        raise KeyRefusedError(f"{symbol} maps to {mapped}, not to the catalog's {native}")
    return key


def month_of(at: datetime | date) -> date:
    """The month (its first day) of a time or day."""
    return date(at.year, at.month, 1)


def last_month(delisted: datetime | None) -> date | None:
    """The last month with trading before ``delisted`` (None: still listed)."""
    return None if delisted is None else month_of(delisted - timedelta(microseconds=1))


@dataclass
class Resolution:
    """What the instruments file resolves to: tracked instruments per exchange (by partition
    key), refusals (messages), and the exchanges whose rules had no stored catalog."""

    tracked: dict[str, dict[str, TrackedInstrument]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    incomplete: set[str] = field(default_factory=set)


def _rows_by_symbol(catalog: pl.DataFrame | None) -> dict[str, dict[str, Any]]:
    if catalog is None:
        return {}
    rows = catalog.filter(pl.col("symbol").is_not_null()).iter_rows(named=True)
    return {row["symbol"]: row for row in rows}


def resolve_instruments(
    config: InstrumentsConfig,
    catalogs: Mapping[str, pl.DataFrame | None],
    months_start: date = MONTHS_START,
) -> Resolution:
    """Resolve ``config`` against each exchange's catalog listing (None: none stored)."""
    result = Resolution()
    for exchange in NAMES:
        catalog = catalogs.get(exchange)
        chosen: dict[str, TrackedInstrument] = {}
        for rule in (r for r in config.rules if r.exchange == exchange):
            if catalog is None:
                result.refused.append(
                    f"select rule {rule}: no {exchange} catalog is stored yet (materialize "
                    f"{exchange.replace('-', '_')}/instrument_catalog first)"
                )
                result.incomplete.add(exchange)
                continue
            for row in catalog.iter_rows(named=True):
                if not rule.matches(row):
                    continue
                try:
                    key = check_instrument(exchange, row["symbol"], row["native"])
                except KeyRefusedError as error:
                    result.refused.append(f"{exchange} {row['native']}: {error}")
                    continue
                listed = month_of(row["listed"]) if row["listed"] else months_start
                first = max(listed, rule.start or months_start, months_start)
                end = last_month(row["delisted"])
                if end is not None and end < first:
                    continue  # delisted before the rule's first month: nothing to track
                chosen[key] = InstrumentEntry(exchange, row["symbol"], first, None, end)
        by_symbol = _rows_by_symbol(catalog)
        for entry in (e for e in config.entries if e.exchange == exchange):
            row = by_symbol.get(entry.symbol)
            try:
                key = check_instrument(exchange, entry.symbol, row["native"] if row else None)
            except KeyRefusedError as error:
                result.refused.append(f"{entry.key}: {error}")
                continue
            start = entry.start or (month_of(row["listed"]) if row and row["listed"] else None)
            if start is None:
                result.refused.append(
                    f"{entry.key}: no start in the instruments file and not listed in the "
                    f"stored {exchange} catalog: set a start or refresh the catalog"
                )
                continue
            start = max(start, months_start)
            end = last_month(row["delisted"]) if row else None
            if end is not None and end < start:
                result.refused.append(
                    f"{entry.key}: delisted in {end:%Y-%m}, before its start {start:%Y-%m}"
                )
                continue
            chosen[key] = InstrumentEntry(exchange, entry.symbol, start, entry.tardis, end)
        result.tracked[exchange] = dict(sorted(chosen.items()))
    return result


def _to_json(entry: TrackedInstrument) -> dict[str, Any]:
    assert entry.start is not None
    return {
        "key": instrument_key(entry.symbol),
        "symbol": entry.symbol,
        "first_month": f"{entry.start:%Y-%m}",
        "last_month": f"{entry.end:%Y-%m}" if entry.end else None,
        "tardis": entry.tardis,
    }


def _month(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(f"{text}-01")


def tracked_document(exchange: str, entries: Iterable[TrackedInstrument]) -> dict[str, Any]:
    """The JSON document of an exchange's tracked instruments."""
    return {"exchange": exchange, "instruments": [_to_json(e) for e in entries]}


def save_tracked(store: ObjectStore, exchange: str, entries: Iterable[TrackedInstrument]) -> bool:
    """Store ``entries`` as the exchange's tracked instruments; False if nothing changed."""
    document = tracked_document(exchange, entries)
    try:
        if store.get_json(tracked_key(exchange)) == document:
            return False
    except MissingObjectError:
        pass
    store.put_json(tracked_key(exchange), document)
    return True


def tracked_entries(store: ObjectStore, exchange: str) -> list[TrackedInstrument]:
    """The tracked instruments of ``exchange`` (``start`` = first month, ``end`` = last month or
    None while listed), as the ``instruments_sensor`` last stored them; [] if none are."""
    try:
        document = store.get_json(tracked_key(exchange))
    except MissingObjectError:
        return []
    return [
        InstrumentEntry(
            exchange,
            item["symbol"],
            _month(item["first_month"]),
            item.get("tardis"),
            _month(item.get("last_month")),
        )
        for item in document["instruments"]
    ]


def tracked_months(entry: TrackedInstrument, running: date) -> list[date]:
    """The months an instrument is tracked for, from its first month to its last (delisting) or
    the running month."""
    assert entry.start is not None
    last = min(entry.end, running) if entry.end else running
    months, month = [], entry.start
    while month <= last:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


COVERAGE_SCHEMA = {
    "instrument": pl.String,
    "first_month": pl.String,
    "last_month": pl.String,
    "tracked": pl.Int64,
    "done": pl.Int64,
    "missing": pl.Int64,
    "first_missing": pl.String,
}


def coverage(
    entries: Iterable[TrackedInstrument], done: set[tuple[str, date]], running: date
) -> pl.DataFrame:
    """One row per tracked instrument: its tracked months, how many are ``done`` (a set of
    (partition key, month)), how many are not yet, and the first of those. Months outside the
    tracked range are in no count: they are not missing, they were never to be computed."""
    rows = []
    for entry in entries:
        key = instrument_key(entry.symbol)
        months = tracked_months(entry, running)
        missing = [m for m in months if (key, m) not in done]
        rows.append(
            {
                "instrument": key,
                "first_month": f"{months[0]:%Y-%m}" if months else None,
                "last_month": f"{entry.end:%Y-%m}" if entry.end else "(listed)",
                "tracked": len(months),
                "done": len(months) - len(missing),
                "missing": len(missing),
                "first_missing": f"{missing[0]:%Y-%m}" if missing else None,
            }
        )
    return pl.DataFrame(rows, schema=COVERAGE_SCHEMA)
