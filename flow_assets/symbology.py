"""Atlas universal symbology and the contract specs of the supported exchanges.

An Atlas id names an instrument independently of any exchange:
``<type>-<BASE>-<QUOTE>[:<SETTLE>][-<YYYYMMDD>]``, e.g. ``perpetual-BTC-USDT:USDT`` (linear:
settled in the quote currency), ``perpetual-BTC-USD:BTC`` (inverse: settled in the base
asset) or ``spot-BTC-USDT``. Exchanges name the same instruments natively (Binance USD-M
``BTCUSDT``, OKX ``BTC-USDT-SWAP``); :func:`to_native` and :func:`from_native` translate any
id of the exchange's grammar, which each venue's module describes (:mod:`flow_assets.venues`).
Which instruments are listed, since when, and their
contract values over time are data from the exchanges: :mod:`flow_assets.catalog`.

Contract specs (what one unit of an exchange's size column is worth, with their history) are
data, kept in the package table ``contracts.csv``: ``ct_val`` in ``ct_val_ccy`` (``base`` or the
base asset: base units per contract, linear; ``USD``: dollars per contract, inverse), valid on
``[valid_from, valid_to)`` (UTC, empty = unbounded).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flow_assets.venues.base import Venue

KINDS: tuple[str, ...] = ("spot", "perpetual", "future")

_ATLAS = re.compile(
    r"^(?P<kind>[a-z]+)-(?P<base>[A-Z0-9]+)-(?P<quote>[A-Z0-9]+)"
    r"(?::(?P<settle>[A-Z0-9]+))?(?:-(?P<expiry>\d{8}))?$"
)
_ASSET = re.compile(r"^[A-Z0-9]+$")


class SymbolError(ValueError):
    """A symbol that is malformed or not supported; the message lists what is."""


@dataclass(frozen=True)
class Instrument:
    """One instrument in Atlas terms; ``str(instrument)`` is its Atlas id."""

    kind: str
    base: str
    quote: str
    settle: str | None = None
    expiry: date | None = None

    @property
    def is_inverse(self) -> bool:
        """Settled in the base asset: sizes are worth a fixed amount of the quote currency."""
        return self.settle is not None and self.settle == self.base

    @property
    def is_linear(self) -> bool:
        """Settled in the quote currency: sizes are base-asset amounts."""
        return self.settle is not None and self.settle == self.quote

    def __str__(self) -> str:
        return format_symbol(self)


_FORMAT_HELP = (
    "expected '<type>-<BASE>-<QUOTE>[:<SETTLE>][-<YYYYMMDD>]' with type in "
    f"{', '.join(KINDS)}, e.g. 'perpetual-BTC-USDT:USDT', 'perpetual-BTC-USD:BTC', 'spot-BTC-USDT'"
)


def parse_symbol(symbol: str) -> Instrument:
    """Parse an Atlas id into an :class:`Instrument`."""
    match = _ATLAS.match(symbol.strip()) if isinstance(symbol, str) else None
    if match is None:
        raise SymbolError(f"malformed Atlas symbol {symbol!r}: {_FORMAT_HELP}")
    kind, base, quote = match["kind"], match["base"], match["quote"]
    settle, expiry_text = match["settle"], match["expiry"]
    if kind not in KINDS:
        raise SymbolError(f"unknown instrument type {kind!r} in {symbol!r}: {_FORMAT_HELP}")
    if kind == "spot" and (settle or expiry_text):
        raise SymbolError(f"a spot symbol has no settle currency or expiry: {symbol!r}")
    if kind != "spot" and settle is None:
        raise SymbolError(f"a {kind} symbol needs ':<SETTLE>': {symbol!r}; {_FORMAT_HELP}")
    if settle is not None and settle not in (base, quote):
        raise SymbolError(f"settle currency must be the base or the quote: {symbol!r}")
    if (kind == "future") != (expiry_text is not None):
        raise SymbolError(f"only a future has (and needs) an expiry date: {symbol!r}")
    expiry = None
    if expiry_text is not None:
        try:
            expiry = datetime.strptime(expiry_text, "%Y%m%d").date()
        except ValueError as exc:
            raise SymbolError(f"bad expiry date in {symbol!r}") from exc
    return Instrument(kind, base, quote, settle, expiry)


def format_symbol(instrument: Instrument) -> str:
    """The Atlas id of an instrument."""
    text = f"{instrument.kind}-{instrument.base}-{instrument.quote}"
    if instrument.settle:
        text += f":{instrument.settle}"
    if instrument.expiry:
        text += f"-{instrument.expiry:%Y%m%d}"
    return text


def _instrument(symbol: str | Instrument) -> Instrument:
    return symbol if isinstance(symbol, Instrument) else parse_symbol(symbol)


def _venue(exchange: str) -> Venue:
    """The venue ``exchange`` of the registry; :class:`SymbolError` when unknown."""
    from flow_assets.venues import venue  # noqa: PLC0415 (the venues import this module)

    return venue(exchange)


def perpetual(base: str, quote: str, settle: str) -> Instrument:
    """The Atlas perpetual of an exchange's base, quote and settle (margin) assets.

    Assets are upper-cased; one outside the Atlas grammar (``[A-Z0-9]+``) or a settle asset
    that is neither the base nor the quote is a :class:`SymbolError`.
    """
    base, quote, settle = base.upper(), quote.upper(), settle.upper()
    for asset in (base, quote, settle):
        if not _ASSET.match(asset):
            raise SymbolError(f"asset {asset!r} is outside the Atlas grammar [A-Z0-9]+")
    if settle not in (base, quote):
        raise SymbolError(f"settle asset {settle} is neither the base {base} nor the quote {quote}")
    return Instrument("perpetual", base, quote, settle)


def to_native(exchange: str, symbol: str | Instrument) -> str:
    """The exchange's own id of an Atlas perpetual (``BTCUSDT``, ``BTC-USDT-SWAP``).

    Any instrument of the exchange's id grammar is accepted, listed or not (the catalog says
    which are listed); the grammar is the venue's (:mod:`flow_assets.venues`).
    """
    venue = _venue(exchange)
    inst = _instrument(symbol)
    native = venue.to_native(inst)
    if native is None:
        raise SymbolError(f"{inst} is not available on {exchange}: {venue.grammar_help}")
    return native


def from_native(exchange: str, native: str) -> Instrument:
    """The Atlas instrument of an exchange-native id (in the venue's grammar; Binance ids in
    any letter case). When the exchange's base/quote/margin assets are at hand,
    :func:`perpetual` is exact."""
    venue = _venue(exchange)
    inst = venue.from_native(native) if isinstance(native, str) else None
    if inst is None:
        raise SymbolError(f"unknown {exchange} symbol {native!r}: {venue.grammar_help}")
    return inst


@dataclass(frozen=True)
class ContractSpec:
    """What one unit of an exchange's size column is worth, over ``[valid_from, valid_to)``."""

    exchange: str
    native: str
    kind: str  # "linear" (ct_val in base units) or "inverse" (ct_val in USD)
    ct_val: float
    ct_val_ccy: str
    valid_from: datetime | None
    valid_to: datetime | None

    def covers(self, at: datetime) -> bool:
        """Whether the spec is in force at ``at``."""
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_to is None or at < self.valid_to
        )


def _parse_time(text: str) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@cache
def _specs() -> tuple[ContractSpec, ...]:
    table = resources.files("flow_assets").joinpath("contracts.csv").read_text("utf-8")
    return tuple(
        ContractSpec(
            row["exchange"],
            row["native"],
            row["kind"],
            float(row["ct_val"]),
            row["ct_val_ccy"],
            _parse_time(row["valid_from"]),
            _parse_time(row["valid_to"]),
        )
        for row in csv.DictReader(table.splitlines())
    )


def contract_specs(exchange: str, symbol: str | Instrument) -> list[ContractSpec]:
    """Every spec of the instrument on the exchange, oldest first (its spec history)."""
    native = to_native(exchange, symbol)
    of_exchange = [r for r in _specs() if r.exchange == exchange]
    rows = [r for r in of_exchange if r.native == native]  # its own rows, else the "*" ones
    rows = rows or [r for r in of_exchange if r.native == "*"]
    if not rows:
        raise SymbolError(
            f"no contract spec for {native} on {exchange}: {_venue(exchange).grammar_help}"
        )
    return sorted(rows, key=lambda r: r.valid_from or datetime.min.replace(tzinfo=UTC))


def contract_spec(exchange: str, symbol: str | Instrument, at: datetime) -> ContractSpec:
    """The spec in force at ``at`` (a zone-aware UTC datetime)."""
    if at.tzinfo is None:
        raise ValueError("contract_spec needs a zone-aware datetime")
    for row in contract_specs(exchange, symbol):
        if row.covers(at):
            return row
    raise SymbolError(f"no contract spec for {symbol} on {exchange} at {at.isoformat()}")


def contract_value(exchange: str, symbol: str | Instrument, at: datetime) -> float:
    """Contract value in force at ``at``: base units (linear) or USD (inverse) per contract."""
    return contract_spec(exchange, symbol, at).ct_val
