"""The instrument catalog: every listed perpetual of an exchange, one row each.

A row says what an exchange-native instrument is in Atlas terms and how its size column reads:

* ``exchange`` (the venue, :mod:`flow_assets.venues`), ``native`` (the exchange's id, as it
  publishes it), ``symbol`` (the Atlas id; null when the exchange's assets fall outside the
  Atlas grammar, e.g. a non-ASCII base, so no partition key can name it);
* ``base``, ``quote``, ``settle`` (the margin/settlement asset), ``kind`` (``linear``: sizes are
  base units, ``inverse``: sizes are worth a fixed amount of the quote currency);
* ``ct_val`` in ``ct_val_ccy``: what one unit of the size column is worth now (Binance USD-M:
  1 of the base; OKX: ``ctVal * ctMult`` in ``ctValCcy``); its history is
  :mod:`flow_assets.catalog.contracts`;
* ``listed`` (UTC), ``delisted`` (UTC; null while listed, else the delisting time the exchange
  announces, or the time of the first snapshot the instrument was missing from), ``status``
  (the exchange's own word: ``TRADING``, ``SETTLING``, ``live``, ``suspend``... or
  ``delisted`` once absent).

Parsing is pure: :func:`parse_binance` and :func:`parse_okx` take the decoded JSON documents
(the other venues' parsers are in their modules, :mod:`flow_assets.venues`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from flow_assets.symbology import (
    Instrument,
    SymbolError,
    format_symbol,
    from_native,
    perpetual,
    to_native,
)

UTC_US = pl.Datetime("us", "UTC")
BINANCE = "binance-futures"
OKX = "okx-perps"
DELISTED = "delisted"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Binance's deliveryDate of a perpetual with no delisting planned (2100-12-25 08:00 UTC).
BINANCE_NO_DELIVERY_MS = 4133404800000
_NO_DELIVERY = EPOCH + timedelta(milliseconds=BINANCE_NO_DELIVERY_MS)

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


def _field(item: dict[str, Any], key: str, where: str) -> Any:
    if key not in item:
        raise CatalogShapeError(f"{where}: missing field {key!r}")
    return item[key]


def _items(document: object, key: str, source: str) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise CatalogShapeError(f"{source}: expected an object with a {key!r} list")
    items = document[key]
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise CatalogShapeError(f"{source}: {key}[{number}] is not an object: {item!r}")
    return items


def _atlas(exchange: str, native: str, inst: Instrument) -> str | None:
    """The Atlas id, if it maps back to ``native`` (else no partition key can name it)."""
    try:
        back = to_native(exchange, inst)
    except SymbolError:
        return None
    from flow_assets.venues import venue  # noqa: PLC0415 (the venues import this module)

    return format_symbol(inst) if venue(exchange).same_native(back, native) else None


def _binance_row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(_field(item, "symbol", "binance exchangeInfo symbol"))
    where = f"binance exchangeInfo symbol {native}"
    base = str(_field(item, "baseAsset", where))
    quote = str(_field(item, "quoteAsset", where))
    settle = str(_field(item, "marginAsset", where))
    delivery = from_ms(_field(item, "deliveryDate", where), where)
    delisted = delivery if delivery and delivery < _NO_DELIVERY else None
    try:
        symbol = _atlas(BINANCE, native, perpetual(base, quote, settle))
    except SymbolError:
        symbol = None
    return {
        "exchange": BINANCE,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "kind": "linear",  # USD-M quantities are base units whatever the margin asset
        "ct_val": 1.0,
        "ct_val_ccy": base,
        "listed": from_ms(_field(item, "onboardDate", where), where),
        "delisted": delisted,
        "status": str(_field(item, "status", where)),
    }


def parse_binance(document: object) -> pl.DataFrame:
    """The perpetuals (``contractType == "PERPETUAL"``) of a ``/fapi/v1/exchangeInfo`` answer."""
    items = _items(document, "symbols", "binance exchangeInfo")
    rows = [_binance_row(i) for i in items if i.get("contractType") == "PERPETUAL"]
    return instruments_frame(rows)


def _number(value: object, where: str, default: float | None = None) -> float:
    if value in (None, "") and default is not None:
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CatalogShapeError(f"{where}: expected a number, got {value!r}") from None


def _okx_row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(_field(item, "instId", "okx instrument"))
    where = f"okx instrument {native}"
    kind = _field(item, "ctType", where)
    if kind not in ("linear", "inverse"):
        raise CatalogShapeError(f"{where}: ctType must be linear or inverse, got {kind!r}")
    ct_val = _number(_field(item, "ctVal", where), where)
    ct_val *= _number(item.get("ctMult"), where, default=1.0)
    try:
        inst = from_native(OKX, native)
        symbol, base, quote = format_symbol(inst), inst.base, inst.quote
    except SymbolError:
        symbol = None
        family = str(item.get("instFamily") or item.get("uly") or "-")
        base, _, quote = family.partition("-")
    return {
        "exchange": OKX,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": str(_field(item, "settleCcy", where)),
        "kind": kind,
        "ct_val": ct_val,
        "ct_val_ccy": str(_field(item, "ctValCcy", where)),
        "listed": from_ms(_field(item, "listTime", where), where),
        "delisted": from_ms(item.get("expTime"), where),
        "status": str(_field(item, "state", where)),
    }


def parse_okx(document: object) -> pl.DataFrame:
    """The swaps of a ``/api/v5/public/instruments?instType=SWAP`` answer (``code`` "0")."""
    items = _items(document, "data", "okx instruments")
    return instruments_frame([_okx_row(i) for i in items if i.get("instType", "SWAP") == "SWAP"])


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
