"""The instruments file: which instruments of which exchange to track.

```yaml
instruments:                             # explicit entries
  - exchange: binance-futures
    symbol: perpetual-BTC-USDT:USDT      # start: the catalog's listing month
  - exchange: binance-futures            # arrival times from Tardis-style CSVs
    symbol: perpetual-SOL-USDT:USDT
    start: 2024-01                       # optional: the first month (else the listing month)
    tardis: data/tardis/{native}/{month}.csv.gz
select:                                  # selection rules over the stored catalog
  - exchange: binance-futures            # every USDT-margined perpetual of Binance USD-M
    settle: USDT
```

A rule matches the catalog rows of its ``exchange`` whose every given field (``base``,
``quote``, ``settle``: one value or a list; ``kind``: ``linear`` or ``inverse``) matches; its
optional ``start`` is the earliest month tracked for what it selects (an instrument delisted
before it is left out). An explicit entry wins over a rule for the same instrument.

``key`` (``"{exchange}:{atlas symbol}"``) names the instrument in logs and run keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from flow_assets.symbology import parse_symbol, to_native
from flow_assets.venues import NAMES

DEFAULT_INSTRUMENTS_FILE = Path(__file__).with_name("instruments.yaml")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")
_PLACEHOLDERS = ("exchange", "symbol", "native", "month")


@dataclass(frozen=True)
class InstrumentEntry:
    """One instrument: exchange, Atlas symbol, first month, optional Tardis source, last month.

    In the instruments file ``start`` may be None (the catalog's listing month) and ``end`` is
    always None; once resolved against the catalog (a :data:`TrackedInstrument`) ``start`` is
    set and ``end`` is the delisting month (None while listed).
    """

    exchange: str
    symbol: str
    start: date | None = None
    tardis: str | None = None
    end: date | None = None

    def covers(self, month: date) -> bool:
        """Whether ``month`` lies in the instrument's tracked range."""
        if self.start is not None and month < self.start:
            return False
        return self.end is None or month <= self.end

    @property
    def months_text(self) -> str:
        """The tracked range, e.g. ``2024-03 .. 2025-06`` or ``2024-03 .. (listed)``."""
        first = f"{self.start:%Y-%m}" if self.start else "(listing)"
        return f"{first} .. {self.end:%Y-%m}" if self.end else f"{first} .. (listed)"

    @property
    def key(self) -> str:
        """The instrument's name across exchanges (logs, sensor cursors), e.g.
        ``binance-futures:perpetual-BTC-USDT:USDT``; its partition key is
        :func:`flow_assets.tracked.instrument_key` of the symbol."""
        return f"{self.exchange}:{self.symbol}"

    @property
    def timestamps(self) -> tuple[str, ...]:
        """Timestamp sources its bars are built for (``true`` needs arrival times)."""
        return ("exchange", "true") if self.tardis else ("exchange",)

    @property
    def base(self) -> str:
        """The base asset, e.g. ``BTC``."""
        return parse_symbol(self.symbol).base

    def tardis_location(self, month: date) -> str:
        """Where the Tardis-style CSV of ``month`` lives (path or URL)."""
        if not self.tardis:
            raise ValueError(f"{self.key} has no Tardis source")
        return self.tardis.format(
            exchange=self.exchange,
            symbol=self.symbol,
            native=to_native(self.exchange, self.symbol),
            month=f"{month:%Y-%m}",
        )


# A resolved instrument (start set, end the delisting month or None): what runs and sensors use.
TrackedInstrument = InstrumentEntry
RULE_FIELDS = ("base", "quote", "settle")  # catalog columns a rule may match (value or list)
KINDS = ("linear", "inverse")


@dataclass(frozen=True)
class SelectionRule:
    """Every catalog perpetual of ``exchange`` whose listed fields match (empty: any)."""

    exchange: str
    base: tuple[str, ...] = ()
    quote: tuple[str, ...] = ()
    settle: tuple[str, ...] = ()
    kind: str | None = None
    start: date | None = None

    def matches(self, row: dict[str, object]) -> bool:
        """Whether a catalog row (:data:`flow_assets.catalog.INSTRUMENT_SCHEMA`) is selected."""
        if row.get("exchange") != self.exchange:
            return False
        for name in RULE_FIELDS:
            wanted = getattr(self, name)
            if wanted and str(row.get(name) or "").upper() not in wanted:
                return False
        return self.kind is None or row.get("kind") == self.kind

    def __str__(self) -> str:
        parts = [f"exchange: {self.exchange}"]
        parts += [f"{n}: {'/'.join(getattr(self, n))}" for n in RULE_FIELDS if getattr(self, n)]
        if self.kind:
            parts.append(f"kind: {self.kind}")
        if self.start:
            parts.append(f"start: {self.start:%Y-%m}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class InstrumentsConfig:
    """The instruments file: explicit entries and selection rules over the catalog."""

    entries: tuple[InstrumentEntry, ...] = ()
    rules: tuple[SelectionRule, ...] = ()


def _month(value: object, where: str) -> date:
    if isinstance(value, date):
        return value.replace(day=1)
    match = _MONTH_RE.fullmatch(str(value).strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{where}: start must be a month like 2024-01, got {value!r}")
    return date(int(match[1]), int(match[2]), 1)


def _exchange(item: dict[str, object], where: str) -> str:
    exchange = item.get("exchange")
    if exchange not in NAMES:
        raise ValueError(f"{where}: exchange {exchange!r} is not one of {', '.join(NAMES)}")
    return str(exchange)


def _values(value: object, name: str, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError(f"{where}: {name} must be an asset like USDT or a list of them")
    return tuple(str(v).strip().upper() for v in items)


def parse_rule(item: object, where: str) -> SelectionRule:
    """One selection rule; a clear error names the rule and what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a mapping like {{exchange: ..., settle: USDT}}")
    allowed = {"exchange", "kind", "start", *RULE_FIELDS}
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {sorted(unknown)}; a rule may use {sorted(allowed)}"
        )
    kind = item.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
    fields = {n: _values(item[n], n, where) for n in RULE_FIELDS if item.get(n) is not None}
    start = _month(item["start"], where) if item.get("start") is not None else None
    return SelectionRule(_exchange(item, where), kind=kind, start=start, **fields)


def parse_config(document: object, source: str = "instruments file") -> InstrumentsConfig:
    """Entries and rules of a parsed instruments document; a clear error names the bad item."""
    if not isinstance(document, dict) or not (
        isinstance(document.get("instruments", []), list)
        and isinstance(document.get("select", []), list)
    ):
        raise ValueError(f"{source}: expected a mapping with an 'instruments' and/or 'select' list")
    unknown = set(document) - {"instruments", "select"}
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {sorted(unknown)}; use instruments, select")
    entries = _parse_entries(document.get("instruments") or [], source)
    rules = tuple(
        parse_rule(item, f"{source}, select rule #{number}")
        for number, item in enumerate(document.get("select") or [], start=1)
    )
    if not entries and not rules:
        raise ValueError(f"{source}: no instruments listed and no selection rule")
    return InstrumentsConfig(tuple(entries), rules)


def parse_instruments(document: object, source: str = "instruments file") -> list[InstrumentEntry]:
    """The explicit entries of a parsed instruments document."""
    return list(parse_config(document, source).entries)


def _parse_entries(items: list[object], source: str) -> list[InstrumentEntry]:
    entries: list[InstrumentEntry] = []
    for number, item in enumerate(items, start=1):
        where = f"{source}, instrument #{number}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping, got {item!r}")
        unknown = set(item) - {"exchange", "symbol", "start", "tardis"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        exchange = _exchange(item, where)
        symbol = str(item.get("symbol", ""))
        to_native(exchange, symbol)  # raises SymbolError listing what is supported
        tardis = item.get("tardis")
        if tardis is not None:
            tardis = str(tardis)
            names = set(re.findall(r"{(\w+)}", tardis))
            if names - set(_PLACEHOLDERS) or "month" not in names:
                raise ValueError(
                    f"{where}: tardis pattern needs {{month}} and may use {_PLACEHOLDERS}"
                )
        start = _month(item["start"], where) if item.get("start") is not None else None
        entry = InstrumentEntry(exchange, symbol, start, tardis)
        if any(e.key == entry.key for e in entries):
            raise ValueError(f"{where}: {entry.key} is listed twice")
        entries.append(entry)
    return entries


def load_config(path: str | os.PathLike[str] | None = None) -> InstrumentsConfig:
    """The instruments file at ``path`` (default: the shipped one)."""
    path = Path(path or DEFAULT_INSTRUMENTS_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the instruments file {path}: {exc}") from exc
    return parse_config(yaml.safe_load(text), str(path))


def load_instruments(path: str | os.PathLike[str] | None = None) -> list[InstrumentEntry]:
    """The explicit entries of the instruments file."""
    return list(load_config(path).entries)
