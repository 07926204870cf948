"""The instruments file: which instrument of which exchange to track, from which month.

```yaml
instruments:
  - exchange: binance-futures
    symbol: perpetual-BTC-USDT:USDT
    start: 2024-01
  - exchange: binance-futures            # arrival times from Tardis-style CSVs
    symbol: perpetual-SOL-USDT:USDT
    start: 2024-01
    tardis: data/tardis/{native}/{month}.csv.gz
```

``key`` (``"{exchange}:{atlas symbol}"``) names the instrument in partition keys and the store.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from flow_assets.symbology import SUPPORTED_EXCHANGES, parse_symbol, to_native

INSTRUMENTS_ENV = "FLOW_ASSETS_INSTRUMENTS"
DEFAULT_INSTRUMENTS_FILE = Path(__file__).with_name("instruments.yaml")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")
_PLACEHOLDERS = ("exchange", "symbol", "native", "month")


@dataclass(frozen=True)
class InstrumentEntry:
    """One tracked instrument: exchange, Atlas symbol, first month, optional Tardis source."""

    exchange: str
    symbol: str
    start: date
    tardis: str | None = None

    @property
    def key(self) -> str:
        """The partition key of the instrument, e.g. ``binance-futures:perpetual-BTC-USDT:USDT``."""
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


def _month(value: object, where: str) -> date:
    if isinstance(value, date):
        return value.replace(day=1)
    match = _MONTH_RE.fullmatch(str(value).strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{where}: start must be a month like 2024-01, got {value!r}")
    return date(int(match[1]), int(match[2]), 1)


def parse_instruments(document: object, source: str = "instruments file") -> list[InstrumentEntry]:
    """Entries of a parsed instruments document; a clear error names the bad entry."""
    if not isinstance(document, dict) or not isinstance(document.get("instruments"), list):
        raise ValueError(f"{source}: expected a mapping with an 'instruments' list")
    entries: list[InstrumentEntry] = []
    for number, item in enumerate(document["instruments"], start=1):
        where = f"{source}, instrument #{number}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping, got {item!r}")
        unknown = set(item) - {"exchange", "symbol", "start", "tardis"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        exchange = item.get("exchange")
        if exchange not in SUPPORTED_EXCHANGES:
            raise ValueError(
                f"{where}: exchange {exchange!r} is not one of {', '.join(SUPPORTED_EXCHANGES)}"
            )
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
        entry = InstrumentEntry(exchange, symbol, _month(item.get("start"), where), tardis)
        if any(e.key == entry.key for e in entries):
            raise ValueError(f"{where}: {entry.key} is listed twice")
        entries.append(entry)
    if not entries:
        raise ValueError(f"{source}: no instruments listed")
    return entries


def load_instruments(path: str | os.PathLike[str] | None = None) -> list[InstrumentEntry]:
    """Entries of the instruments file (default: ``FLOW_ASSETS_INSTRUMENTS`` or the shipped one)."""
    path = Path(path or os.environ.get(INSTRUMENTS_ENV) or DEFAULT_INSTRUMENTS_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the instruments file {path}: {exc}") from exc
    return parse_instruments(yaml.safe_load(text), str(path))
