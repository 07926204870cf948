"""Partitions: per exchange, instrument x month, and what a partition key means.

Each exchange has its own assets (``binance_futures/raw_trades``, ...), so an instrument's
partition key needs no exchange: it is the readable part of its Atlas symbol, e.g.
``BTC-USDT:USDT`` or ``1000PEPE-USDT:USDT`` (the UI shortens long keys in the middle; these keep
the base asset visible).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from flow_assets.instruments import InstrumentEntry
from flow_assets.symbology import SUPPORTED_EXCHANGES

INSTRUMENT = "instrument"
MONTH = "month"
SYMBOL_TYPE = "perpetual-"  # every tracked instrument is a perpetual


def exchange_slug(exchange: str) -> str:
    """The exchange as an asset-key prefix and group name, e.g. ``binance_futures``."""
    return exchange.replace("-", "_")


def instrument_key(symbol: str) -> str:
    """The partition key of an Atlas perpetual: ``perpetual-BTC-USDT:USDT`` -> ``BTC-USDT:USDT``."""
    if not symbol.startswith(SYMBOL_TYPE):
        raise ValueError(f"{symbol!r} is not a perpetual's Atlas symbol")
    return symbol.removeprefix(SYMBOL_TYPE)


@dataclass(frozen=True)
class ExchangePartitions:
    """The instrument x month partitions of one exchange's assets."""

    exchange: str
    entries: tuple[InstrumentEntry, ...]
    months: dg.MonthlyPartitionsDefinition

    @property
    def slug(self) -> str:
        return exchange_slug(self.exchange)

    @property
    def instrument_month(self) -> dg.MultiPartitionsDefinition:
        """``{instrument}|YYYY-MM-01`` keys (dimensions in alphabetical order)."""
        instruments = [instrument_key(e.symbol) for e in self.entries]
        return dg.MultiPartitionsDefinition(
            {INSTRUMENT: dg.StaticPartitionsDefinition(instruments), MONTH: self.months}
        )

    def entry(self, key: str) -> InstrumentEntry:
        """The instrument of an ``instrument`` dimension key."""
        for entry in self.entries:
            if instrument_key(entry.symbol) == key:
                return entry
        raise ValueError(f"unknown {self.exchange} instrument {key!r}")

    def resolve(self, partition_key: dg.MultiPartitionKey | str) -> tuple[InstrumentEntry, date]:
        """Instrument and month of a partition; a month before the instrument's start is refused."""
        if not isinstance(partition_key, dg.MultiPartitionKey):
            partition_key = self.instrument_month.get_partition_key_from_str(partition_key)
        by_dimension = partition_key.keys_by_dimension
        entry = self.entry(by_dimension[INSTRUMENT])
        month = date.fromisoformat(by_dimension[MONTH])
        if month < entry.start:
            raise dg.Failure(
                f"{entry.key} starts in {entry.start:%Y-%m}: month {month:%Y-%m} is not "
                "materializable for it (set an earlier start in the instruments file)"
            )
        return entry, month


@dataclass(frozen=True)
class FlowPartitions:
    """The partitions of every exchange's assets for a list of instruments."""

    entries: tuple[InstrumentEntry, ...]

    @property
    def months(self) -> dg.MonthlyPartitionsDefinition:
        """Calendar months (UTC, keys ``YYYY-MM-01``) from the earliest start to the running one."""
        first = min(entry.start for entry in self.entries)
        return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), end_offset=1)

    @property
    def exchanges(self) -> list[ExchangePartitions]:
        """One per exchange that has instruments, in a fixed order."""
        months = self.months
        return [
            ExchangePartitions(exchange, entries, months)
            for exchange in SUPPORTED_EXCHANGES
            if (entries := tuple(e for e in self.entries if e.exchange == exchange))
        ]

    def of(self, entry: InstrumentEntry) -> ExchangePartitions:
        """The partitions of ``entry``'s exchange."""
        return next(p for p in self.exchanges if p.exchange == entry.exchange)


def partition_key(entry: InstrumentEntry, month: date) -> dg.MultiPartitionKey:
    """The partition key of ``entry`` in ``month`` (within its exchange's assets)."""
    instrument = instrument_key(entry.symbol)
    return dg.MultiPartitionKey({INSTRUMENT: instrument, MONTH: month.isoformat()})
