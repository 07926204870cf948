"""The instrument catalog: every listed perpetual of an exchange, one row each.

A row says what an exchange-native instrument is in Atlas terms and how its size column reads:

* ``exchange`` (the venue, :mod:`flow_assets.venues`), ``native`` (the exchange's id, as it
  publishes it), ``symbol`` (the Atlas id; null when the exchange's assets fall outside the
  Atlas grammar, e.g. a non-ASCII base, so no partition key can name it);
* ``base``, ``quote``, ``settle`` (the margin/settlement asset), ``kind`` (``linear``: sizes are
  base units, ``inverse``: sizes are worth a fixed amount of the quote currency);
* ``ct_val`` in ``ct_val_ccy``: what one unit of the size column is worth now (1 of the base
  for a venue trading in base units; a contract's value where sizes are contracts); its history
  is :mod:`flow_assets.catalog.contracts`;
* ``listed`` (UTC), ``delisted`` (UTC; null while listed, else the delisting time the exchange
  announces, or the time of the first snapshot the instrument was missing from), ``status``
  (the exchange's own word, e.g. ``TRADING``, ``live``, ``Settling``, or ``delisted`` once
  absent).

Each venue's reader parses its own documents into these rows (:mod:`flow_assets.venues`), with
the helpers here (:func:`field`, :func:`items_of`, :func:`number`, :func:`from_ms`,
:func:`atlas_id`, :func:`instruments_frame`); parsing is pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from flow_assets.symbology import Instrument, SymbolError, format_symbol, to_native

UTC_US = pl.Datetime("us", "UTC")
DELISTED = "delisted"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

INSTRUMENT_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "native": pl.String(),
    "symbol": pl.String(),
    "base": pl.String(),
    "quote": pl.String(),
    "settle": pl.String(),
    "kind": pl.String(),
    "ct_val": pl.Float64(),
    "ct_val_ccy": pl.String(),
    "listed": UTC_US,
    "delisted": UTC_US,
    "status": pl.String(),
}
INSTRUMENT_DESCRIPTIONS: dict[str, str] = {
    "exchange": "binance-futures or okx-perps.",
    "native": "The exchange's own id, as it publishes it (BTCUSDT, BTC-USDT-SWAP).",
    "symbol": "Atlas id (perpetual-BTC-USDT:USDT); null when the assets fall outside the "
    "Atlas grammar, so no partition key can name it.",
    "base": "Base asset.",
    "quote": "Quote asset (prices are in it).",
    "settle": "Margin and settlement asset.",
    "kind": "linear: sizes are base units; inverse: sizes are worth a fixed quote amount.",
    "ct_val": "What one unit of the size column is worth now, in ct_val_ccy (history: "
    "contract_values.parquet).",
    "ct_val_ccy": "Currency of ct_val.",
    "listed": "Listing time (UTC).",
    "delisted": "Delisting time (UTC) the exchange announces, or the first snapshot the "
    "instrument was missing from; null while listed.",
    "status": "The exchange's own word (TRADING, live, ...), or delisted once absent.",
}


class CatalogError(Exception):
    """Any failure to obtain or read an instrument catalog."""


class CatalogShapeError(CatalogError):
    """A catalog document that does not have the exchange's documented shape."""


def from_ms(value: object, where: str) -> datetime | None:
    """A UTC datetime from epoch milliseconds (int or numeric string); ``""``/None is None."""
    if value is None or value == "":
        return None
    try:
        millis = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise CatalogShapeError(f"{where}: expected epoch milliseconds, got {value!r}") from None
    return EPOCH + timedelta(milliseconds=millis)


def instruments_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows (dicts with the schema's keys) as a catalog frame, sorted by exchange and id."""
    frame = pl.DataFrame(rows, schema=INSTRUMENT_SCHEMA, orient="row")
    return frame.sort("exchange", "native")


def empty_instruments() -> pl.DataFrame:
    """A catalog with no rows."""
    return pl.DataFrame(schema=INSTRUMENT_SCHEMA)


def field(item: dict[str, Any], key: str, where: str) -> Any:
    """``item[key]``; :class:`CatalogShapeError` naming ``where`` when the field is missing."""
    if key not in item:
        raise CatalogShapeError(f"{where}: missing field {key!r}")
    return item[key]


def items_of(document: object, key: str, source: str) -> list[dict[str, Any]]:
    """The list of objects ``document[key]``; :class:`CatalogShapeError` for another shape."""
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise CatalogShapeError(f"{source}: expected an object with a {key!r} list")
    items = document[key]
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise CatalogShapeError(f"{source}: {key}[{number}] is not an object: {item!r}")
    return items


def number(value: object, where: str, default: float | None = None) -> float:
    """A number written as a number or a string (``default`` for ``""``/None, if given)."""
    if value in (None, "") and default is not None:
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CatalogShapeError(f"{where}: expected a number, got {value!r}") from None


def atlas_id(exchange: str, native: str, inst: Instrument) -> str | None:
    """The Atlas id of ``inst``, if it maps back to ``native`` on ``exchange`` (else None: no
    partition key can name it)."""
    try:
        back = to_native(exchange, inst)
    except SymbolError:
        return None
    from flow_assets.venues import venue  # noqa: PLC0415 (the venues import this module)

    return format_symbol(inst) if venue(exchange).same_native(back, native) else None


def merge_listings(
    previous: pl.DataFrame, snapshot: pl.DataFrame, seen_at: datetime
) -> pl.DataFrame:
    """The catalog after a snapshot taken at ``seen_at`` (zone-aware UTC).

    Instruments in the snapshot take its row. Those of the snapshot's exchange(s) that it no
    longer lists are kept as delisted: at the delisting time already known if that is not
    later than ``seen_at``, else at ``seen_at``; status ``delisted``.
    """
    if seen_at.tzinfo is None:
        raise ValueError("merge_listings needs a zone-aware seen_at")
    exchanges = snapshot["exchange"].unique().to_list()
    gone = previous.filter(pl.col("exchange").is_in(exchanges)).join(
        snapshot.select("exchange", "native"), on=["exchange", "native"], how="anti"
    )
    at = pl.lit(seen_at, dtype=UTC_US)
    gone = gone.with_columns(
        delisted=pl.when(pl.col("delisted") <= at).then("delisted").otherwise(at),
        status=pl.lit(DELISTED),
    )
    others = previous.filter(~pl.col("exchange").is_in(exchanges))
    columns = list(INSTRUMENT_SCHEMA)
    merged = pl.concat([others.select(columns), snapshot.select(columns), gone.select(columns)])
    return merged.sort("exchange", "native")
