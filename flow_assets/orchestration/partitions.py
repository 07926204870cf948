"""Partitions: per exchange, instrument x month, and what a partition key means.

Each exchange has its own assets (``binance_futures/raw_trades``, ...), so an instrument's
partition key needs no exchange: it is the readable part of its Atlas symbol, e.g.
``BTC-USDT:USDT`` or ``1000PEPE-USDT:USDT`` (the UI shortens long keys in the middle; these keep
the base asset visible).

The instrument dimension is dynamic (``{slug}_instruments``): the ``instruments_sensor`` keeps
it in sync with the instruments file and the stored catalog, and stores each instrument's
months (:mod:`flow_assets.tracked`), which runs read to resolve their partition. The months
dimension starts at the fixed :data:`~flow_assets.tracked.MONTHS_START`: loading definitions
reads neither the store nor the exchanges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from flow_assets.instruments import InstrumentEntry, TrackedInstrument
from flow_assets.store import ObjectStore
from flow_assets.tracked import MONTHS_START, SYMBOL_TYPE, instrument_key, tracked_entries
from flow_assets.venues import NAMES, venue

INSTRUMENT = "instrument"
MONTH = "month"
__all__ = [
    "INSTRUMENT",
    "MONTH",
    "SYMBOL_TYPE",
    "ExchangePartitions",
    "FlowPartitions",
    "exchange_slug",
    "instrument_key",
    "partition_key",
]


def exchange_slug(exchange: str) -> str:
    """The exchange as an asset-key prefix and group name, e.g. ``binance_futures``."""
    return venue(exchange).slug


def monthly(start: date = MONTHS_START) -> dg.MonthlyPartitionsDefinition:
    """Calendar months (UTC, keys ``YYYY-MM-01``) from ``start`` to the running one."""
    return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


@dataclass(frozen=True)
class ExchangePartitions:
    """The instrument x month partitions of one exchange's assets."""

    exchange: str
    months: dg.MonthlyPartitionsDefinition

    @property
    def slug(self) -> str:
        return exchange_slug(self.exchange)

    @property
    def instruments_name(self) -> str:
        """The name of the dynamic instrument dimension, e.g. ``binance_futures_instruments``."""
        return f"{self.slug}_instruments"

    @property
    def instruments(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=self.instruments_name)

    @property
    def instrument_month(self) -> dg.MultiPartitionsDefinition:
        """``{instrument}|YYYY-MM-01`` keys (dimensions in alphabetical order)."""
        return dg.MultiPartitionsDefinition({INSTRUMENT: self.instruments, MONTH: self.months})

    def entry(self, store: ObjectStore, key: str) -> TrackedInstrument:
        """The tracked instrument of an ``instrument`` dimension key (read from the store)."""
        for entry in tracked_entries(store, self.exchange):
            if instrument_key(entry.symbol) == key:
                return entry
        raise dg.Failure(
            f"{self.exchange} instrument {key!r} is not tracked (not in the tracked instruments "
            "the instruments_sensor stored): add it to the instruments file and let the sensor run"
        )

    def resolve(
        self, partition_key: dg.MultiPartitionKey | str, store: ObjectStore
    ) -> tuple[TrackedInstrument, date]:
        """Instrument and month of a partition; a month outside the instrument's tracked range
        (before its first month, after its delisting) is refused."""
        if isinstance(partition_key, dg.MultiPartitionKey):
            by_dimension = partition_key.keys_by_dimension
        else:
            by_dimension = self.instrument_month.get_partition_key_from_str(
                partition_key
            ).keys_by_dimension
        entry = self.entry(store, by_dimension[INSTRUMENT])
        month = date.fromisoformat(by_dimension[MONTH])
        if not entry.covers(month):
            assert entry.start is not None
            if month < entry.start:
                why = f"starts in {entry.start:%Y-%m}"
                hint = "set an earlier start in the instruments file"
            else:
                why = f"was delisted: its last month is {entry.end:%Y-%m}"
                hint = "no trades after its delisting"
            raise dg.Failure(
                f"{entry.key} {why}: month {month:%Y-%m} is not materializable for it "
                f"(tracked months {entry.months_text}; {hint})"
            )
        return entry, month


@dataclass(frozen=True)
class FlowPartitions:
    """The partitions of every supported exchange's assets (instruments are dynamic)."""

    months_start: date = MONTHS_START

    @property
    def months(self) -> dg.MonthlyPartitionsDefinition:
        """Calendar months (UTC, keys ``YYYY-MM-01``) from the fixed first month to the running
        one."""
        return monthly(self.months_start)

    @property
    def exchanges(self) -> list[ExchangePartitions]:
        """One per venue of the registry, in its order."""
        months = self.months
        return [ExchangePartitions(exchange, months) for exchange in NAMES]

    def of(self, entry: InstrumentEntry | str) -> ExchangePartitions:
        """The partitions of an exchange (or of an entry's exchange)."""
        exchange = entry if isinstance(entry, str) else entry.exchange
        return next(p for p in self.exchanges if p.exchange == exchange)


def partition_key(entry: InstrumentEntry, month: date) -> dg.MultiPartitionKey:
    """The partition key of ``entry`` in ``month`` (within its exchange's assets)."""
    instrument = instrument_key(entry.symbol)
    return dg.MultiPartitionKey({INSTRUMENT: instrument, MONTH: month.isoformat()})
