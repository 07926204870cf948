"""Contract-value history: what one unit of an exchange's size column was worth, and when.

OKX swap sizes are contracts: a linear trade's base quantity is ``size * ct_val`` (``ct_val`` in
the base asset), an inverse trade's notional ``size * ct_val`` (in USD), with the value in
force at the trade's time. Binance USD-M sizes are base units (``ct_val`` 1).

A history is a frame of :data:`CONTRACT_SCHEMA` rows ``(exchange, native, ct_val, ct_val_ccy,
valid_from, valid_to, dated_by)`` valid on ``[valid_from, valid_to)``; a null ``valid_from``
means since listing, a null ``valid_to`` still valid. Per instrument the rows are ordered, never
overlap and leave no gap. A ``native`` of ``*`` applies to every instrument of its exchange that
has no row of its own (Binance's 1 base unit).

It starts from the package's seed table ``contracts.csv`` (changes known from before the catalog
was kept, e.g. OKX's 2020 BTC/ETH changes) and grows with :func:`merge_snapshot`, one catalog
snapshot at a time, in time order, with what the exchange's own candles show where the venue has
them (:mod:`~flow_assets.catalog.contract_dating`). Each row's ``dated_by`` says how its
``valid_from`` was dated: ``seed``, ``listing``, ``candles`` or ``snapshot`` (the fallback).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import polars as pl

from flow_assets.catalog.contract_dating import Timeline, same
from flow_assets.catalog.model import UTC_US, CatalogError
from flow_assets.metrics.schema import CONTRACT_VALUES_SCHEMA

CONTRACT_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "native": pl.String(),
    "ct_val": pl.Float64(),
    "ct_val_ccy": pl.String(),
    "valid_from": UTC_US,
    "valid_to": UTC_US,
    "dated_by": pl.String(),  # how valid_from was dated: seed, listing, candles or snapshot
}
# The interface the trade parsers take: one instrument's values, oldest first.
VALUES_SCHEMA = CONTRACT_VALUES_SCHEMA  # what contract_values returns, the parsers' input
WILDCARD = "*"


class UnknownContractError(CatalogError, LookupError):
    """No contract value is known for an instrument (or at a time): never guessed."""


class ContractHistoryError(CatalogError):
    """A history whose rows overlap, leave a gap, or arrive out of order."""


def _time(text: str) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _sorted(history: pl.DataFrame) -> pl.DataFrame:
    return history.select(list(CONTRACT_SCHEMA)).sort(
        "exchange", "native", "valid_from", nulls_last=False
    )


@cache
def _seed_text() -> str:
    return resources.files("flow_assets").joinpath("contracts.csv").read_text("utf-8")


def seed_history() -> pl.DataFrame:
    """The history as the package's ``contracts.csv`` knows it (the starting point)."""
    rows = [
        {
            "exchange": row["exchange"],
            "native": row["native"],
            "ct_val": float(row["ct_val"]),
            "ct_val_ccy": row["ct_val_ccy"],
            "valid_from": _time(row["valid_from"]),
            "valid_to": _time(row["valid_to"]),
            "dated_by": "seed",
        }
        for row in csv.DictReader(_seed_text().splitlines())
    ]
    return _sorted(pl.DataFrame(rows, schema=CONTRACT_SCHEMA, orient="row"))


def empty_history() -> pl.DataFrame:
    """A history with no rows."""
    return pl.DataFrame(schema=CONTRACT_SCHEMA)


def _opened(listing: dict[str, Any], valid_from: datetime | None, dated_by: str) -> dict[str, Any]:
    return {
        "exchange": listing["exchange"],
        "native": listing["native"],
        "ct_val": listing["ct_val"],
        "ct_val_ccy": listing["ct_val_ccy"],
        "valid_from": valid_from,
        "valid_to": None,
        "dated_by": dated_by,
    }


def _merge_one(rows: list[dict[str, Any]], listing: dict[str, Any], seen_at: datetime) -> None:
    """Bring one instrument's rows (oldest first, changed in place) up to ``listing``."""
    if not rows:
        rows.append(_opened(listing, listing["listed"], "listing"))
        return
    last = rows[-1]
    unchanged = (last["ct_val"], last["ct_val_ccy"]) == (listing["ct_val"], listing["ct_val_ccy"])
    if last["valid_to"] is not None:  # closed by hand: reopen where it ended, or now
        rows.append(_opened(listing, max(seen_at, last["valid_to"]), "snapshot"))
    elif unchanged:
        return
    elif last["valid_from"] is not None and seen_at <= last["valid_from"]:
        last.update(ct_val=listing["ct_val"], ct_val_ccy=listing["ct_val_ccy"])
    else:
        last["valid_to"] = seen_at
        rows.append(_opened(listing, seen_at, "snapshot"))


def _overlay(rows: list[dict[str, Any]], listing: dict[str, Any], line: Timeline) -> None:
    """Lay the candles' values over one instrument's rows (changed in place): rows before
    ``line.since`` are kept (cut there), the timeline's values follow; equal neighbours merge."""
    since = line.since
    kept = []
    for row in rows:
        if since is not None and (row["valid_from"] is None or row["valid_from"] < since):
            end = row["valid_to"]
            kept.append(row | {"valid_to": since if end is None or end > since else end})
    starts = [start for start, _ in line.segments]
    closed = kept[-1]["valid_to"] if kept else None  # kept rows exist only with a since
    if closed is not None and since is not None and closed < since:
        starts[0] = closed  # a value closed by hand before: no gap after it
    for i, (start, value) in enumerate(zip(starts, [v for _, v in line.segments], strict=True)):
        row = _opened(listing | {"ct_val": value}, start, "candles" if kept or i else "listing")
        row["valid_to"] = starts[i + 1] if i + 1 < len(starts) else None
        if row["valid_to"] is not None and row["valid_to"] == start:
            continue  # no time at all: the next value starts here
        previous = kept[-1] if kept else None
        if previous and previous["valid_to"] == start and same(previous["ct_val"], value):
            previous["valid_to"] = row["valid_to"]
        else:
            kept.append(row)
    rows[:] = kept


def _merge_dated(
    rows: list[dict[str, Any]], listing: dict[str, Any], seen_at: datetime, line: Timeline | None
) -> None:
    """One instrument: the candles' values where they exist, then the snapshot rule for a
    value they have not shown yet (or for every change, without candles)."""
    if line is not None and line.segments:
        _overlay(rows, listing, line)
    _merge_one(rows, listing, seen_at)


def merge_snapshot(
    history: pl.DataFrame,
    snapshot: pl.DataFrame,
    seen_at: datetime,
    timelines: Mapping[str, Timeline] | None = None,
) -> pl.DataFrame:
    """The history after a catalog snapshot (:mod:`~flow_assets.catalog.model` rows) seen at
    ``seen_at`` (zone-aware), with the exchange's candles where read (``timelines`` by native,
    :mod:`~flow_assets.catalog.contract_dating`).

    Candles first: from a timeline's ``since`` the instrument's values are the candles' (older
    values back to listing on a first reading; changes dated to the minute, ``dated_by``
    ``candles``). Then the snapshot rule: a ``ct_val``/``ct_val_ccy`` that differs from the
    value in force closes it at ``seen_at`` and opens the new one there (``snapshot``);
    unchanged values are left alone; an instrument with no row opens at its ``listed`` time
    (``listing``; null if unknown: since listing). A value not yet in force at ``seen_at`` (an
    instrument listed later) is replaced. Instruments absent from the snapshot keep their rows.
    Merge snapshots in time order.
    """
    if seen_at.tzinfo is None:
        raise ValueError("merge_snapshot needs a zone-aware seen_at")
    timelines = timelines or {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in _sorted(history).iter_rows(named=True):
        groups.setdefault((row["exchange"], row["native"]), []).append(row)
    for listing in snapshot.iter_rows(named=True):
        key = (listing["exchange"], listing["native"])
        line = timelines.get(listing["native"])
        _merge_dated(groups.setdefault(key, []), listing, seen_at, line)
    rows = [row for group in groups.values() for row in group]
    return _sorted(pl.DataFrame(rows, schema=CONTRACT_SCHEMA, orient="row"))


def _check_rows(values: pl.DataFrame, name: str) -> None:
    starts, ends = values["valid_from"].to_list(), values["valid_to"].to_list()
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if start is not None and end is not None and end <= start:
            raise ContractHistoryError(f"{name}: empty validity [{start}, {end})")
        if i and (start is None or ends[i - 1] != start):
            raise ContractHistoryError(
                f"{name}: row from {start} does not start where the one before ends "
                f"({ends[i - 1]}): overlap or gap"
            )


def check_history(history: pl.DataFrame) -> pl.DataFrame:
    """``history`` sorted, after checking every instrument's rows are ordered and gap-free."""
    history = _sorted(history)
    for (exchange, native), rows in history.group_by("exchange", "native", maintain_order=True):
        _check_rows(rows, f"{exchange} {native}")
    return history


def contract_values(history: pl.DataFrame, exchange: str, native: str) -> pl.DataFrame:
    """One instrument's values, oldest first: ``valid_from``, ``valid_to`` (UTC, nullable),
    ``ct_val`` (:data:`VALUES_SCHEMA`), ordered and non-overlapping.

    Ids match in any letter case on a venue whose ids are case-insensitive (Binance). An
    instrument with no row (and no ``*`` row for its exchange) is an
    :class:`UnknownContractError` naming it.
    """
    from flow_assets.venues import venue  # noqa: PLC0415 (the venues import this module)

    same = pl.col("native") == native
    if venue(exchange).ids_case_insensitive:
        same = pl.col("native").str.to_uppercase() == native.upper()
    of_exchange = history.filter(pl.col("exchange") == exchange)
    rows = of_exchange.filter(same)
    if rows.is_empty():
        rows = of_exchange.filter(pl.col("native") == WILDCARD)
    if rows.is_empty():
        raise UnknownContractError(
            f"no contract value known for {native} on {exchange}: not in the catalog's "
            "contract-value history (refresh the catalog, or add it to contracts.csv)"
        )
    values = rows.sort("valid_from", nulls_last=False).select(list(VALUES_SCHEMA))
    _check_rows(values, f"{exchange} {native}")
    return values


def value_at(values: pl.DataFrame, at: datetime, name: str = "instrument") -> float:
    """The ``ct_val`` in force at ``at`` (zone-aware) in a :func:`contract_values` frame."""
    if at.tzinfo is None:
        raise ValueError("value_at needs a zone-aware datetime")
    for start, end, ct_val in values.select(list(VALUES_SCHEMA)).iter_rows():
        if (start is None or start <= at) and (end is None or at < end):
            return ct_val
    raise UnknownContractError(f"no contract value of {name} in force at {at.isoformat()}")
