"""Partitions: instrument x month, and what a partition key means."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from flow_assets.instruments import InstrumentEntry

INSTRUMENT = "instrument"
MONTH = "month"


@dataclass(frozen=True)
class FlowPartitions:
    """The partitions of the flow assets for a list of instruments."""

    entries: tuple[InstrumentEntry, ...]

    @property
    def months(self) -> dg.MonthlyPartitionsDefinition:
        """Calendar months (UTC, keys ``YYYY-MM-01``) from the earliest start to the running one."""
        first = min(entry.start for entry in self.entries)
        return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), end_offset=1)

    @property
    def instrument_month(self) -> dg.MultiPartitionsDefinition:
        """``{exchange}:{symbol}|YYYY-MM-01`` keys (dimensions in alphabetical order)."""
        return dg.MultiPartitionsDefinition(
            {
                INSTRUMENT: dg.StaticPartitionsDefinition([e.key for e in self.entries]),
                MONTH: self.months,
            }
        )

    def entry(self, key: str) -> InstrumentEntry:
        """The instrument of an ``instrument`` dimension key."""
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise ValueError(f"unknown instrument {key!r}")

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

    def key(self, entry: InstrumentEntry, month: date) -> dg.MultiPartitionKey:
        """The partition key of ``entry`` in ``month``."""
        return dg.MultiPartitionKey({INSTRUMENT: entry.key, MONTH: month.isoformat()})
