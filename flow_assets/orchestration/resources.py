"""Dagster resources: thin, configurable handles on the sources and the store.

They are configured in one place, :func:`flow_assets.orchestration.definitions.build_definitions`,
from environment variables through ``dg.EnvVar``.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from flow_assets.instruments import InstrumentEntry
from flow_assets.sources import FetchResult, fetch_month, probe_month
from flow_assets.sources.tardis import read_tardis_month
from flow_assets.store import ObjectStore, open_store


class ArchiveSources(dg.ConfigurableResource):
    """Where raw trades come from: the exchange archives (or an entry's Tardis-style CSVs).

    An empty URL means the source's own default (``FLOW_ASSETS_BINANCE_URL`` /
    ``FLOW_ASSETS_OKX_URL``, else the exchange's public archive).
    """

    binance_url: str | None = None
    okx_url: str | None = None
    binance_dataset: str = "aggTrades"

    def _base_url(self, exchange: str) -> str | None:
        url = self.binance_url if exchange == "binance-futures" else self.okx_url
        return url or None

    def fetch(self, entry: InstrumentEntry, month: date, today: date | None = None) -> FetchResult:
        """One UTC month of normalized trades of ``entry`` and the fetch report."""
        if entry.tardis:
            return read_tardis_month(
                entry.tardis_location(month), month, exchange=entry.exchange, symbol=entry.symbol
            )
        return fetch_month(
            entry.exchange,
            entry.symbol,
            month,
            base_url=self._base_url(entry.exchange),
            dataset=self.binance_dataset,
            today=today,
        )

    def probe(self, entry: InstrumentEntry, month: date, today: date | None = None) -> str | None:
        """A version of the month's archive files (None: not published); no Tardis probing."""
        if entry.tardis:
            return None
        return probe_month(
            entry.exchange,
            entry.symbol,
            month,
            base_url=self._base_url(entry.exchange),
            today=today,
        )


class FlowStore(dg.ConfigurableResource):
    """The object store of trades and bars: a folder or ``s3://bucket/prefix``.

    Empty means ``FLOW_ASSETS_STORAGE_URL``, else ``<repo>/data/store``.
    """

    url: str | None = None

    def open(self) -> ObjectStore:
        """The store itself (local or S3)."""
        return open_store(self.url or None)
