"""Dagster resources: thin, configurable handles on the sources and the store.

They are configured in one place, :func:`flow_assets.orchestration.definitions.build_definitions`,
from environment variables through ``dg.EnvVar``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import requests
from dagster_aws.s3 import S3Resource

from flow_assets.catalog import contract_values
from flow_assets.instruments import InstrumentEntry
from flow_assets.sources import FetchReport, exchange_for, ingest_month
from flow_assets.sources.probing import DayFiles, Net, Target, probe_target
from flow_assets.sources.tardis import ingest_tardis_month
from flow_assets.store import DEFAULT_LOCAL_ROOT, ObjectStore, open_store
from flow_assets.symbology import to_native


class ArchiveSources(dg.ConfigurableResource):
    """Where raw trades come from: the exchange archives (or an entry's Tardis-style CSVs).

    An empty URL means the source's own default (``FLOW_ASSETS_BINANCE_URL`` /
    ``FLOW_ASSETS_OKX_URL``, else the exchange's public archive). ``binance_listing_url`` is
    where Binance's archive answers S3 listings: empty means the configured ``binance_url``
    (a mirror lists what it serves), else the public bucket's endpoint.
    """

    binance_url: str | None = None
    okx_url: str | None = None
    binance_dataset: str = "aggTrades"
    binance_listing_url: str | None = None

    def _base_url(self, exchange: str) -> str | None:
        url = self.binance_url if exchange == "binance-futures" else self.okx_url
        return url or None

    def ingest(
        self,
        entry: InstrumentEntry,
        month: date,
        dest: Path,
        *,
        contracts: pl.DataFrame | None = None,
        today: date | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> FetchReport:
        """Write one UTC month of normalized trades of ``entry`` to ``dest``; the fetch report.

        ``contracts`` is the exchange's contract-value history (the stored catalog's): where
        sizes are contracts, each trade is converted with the value in force at its time.
        Days missing inside a finished month are reported, not raised, so the
        ``upstream_defects`` check can block the month with the list.
        """
        if entry.tardis:
            return ingest_tardis_month(
                entry.tardis_location(month),
                month,
                dest,
                exchange=entry.exchange,
                symbol=entry.symbol,
                progress=progress,
            )
        return ingest_month(
            entry.exchange,
            entry.symbol,
            month,
            dest,
            base_url=self._base_url(entry.exchange),
            dataset=self.binance_dataset,
            today=today,
            allow_missing_days=True,
            contract_values=_contract_values(entry, contracts),
            progress=progress,
        )

    def listing_url(self, exchange: str) -> str | None:
        """Where ``exchange``'s archive answers listings; None when it has no listing."""
        default = exchange_for(exchange).listing_url
        if default is None:
            return None
        explicit = self.binance_listing_url if exchange == "binance-futures" else None
        return explicit or self._base_url(exchange) or default

    def probe_recent(
        self,
        net: Net,
        entry: InstrumentEntry,
        months: list[date],
        states: dict[str, DayFiles],
        today: date,
    ) -> dict[str, str]:
        """The archive version of each of ``months`` (finished) of ``entry`` that is out,
        within the tick's budget ``net``; what is learnt of day files is kept in
        ``states[entry.key]`` as it comes. No Tardis probing."""
        if entry.tardis or not months:
            return {}
        exchange = exchange_for(entry.exchange)
        dataset = self.binance_dataset
        dataset = dataset if dataset in exchange.datasets else exchange.datasets[0]
        target = Target(exchange, to_native(entry.exchange, entry.symbol), dataset, months)
        base = exchange.base_url(self._base_url(entry.exchange))
        listing = self.listing_url(entry.exchange)
        return probe_target(net, base, listing, target, states, entry.key, today)


def _contract_values(entry: InstrumentEntry, history: pl.DataFrame | None) -> pl.DataFrame | None:
    """The instrument's contract values from ``history`` where its sizes are contracts."""
    if history is None or not exchange_for(entry.exchange).sizes_in_contracts:
        return None
    return contract_values(history, entry.exchange, to_native(entry.exchange, entry.symbol))


class FlowStore(dg.ConfigurableResource):
    """The object store of trades and bars: a folder or ``s3://bucket/prefix``.

    Empty means ``<repo>/data/store``. An S3 store reads and writes through the boto3 client of
    ``s3`` (``dagster-aws``), one credential chain for everything.
    """

    url: str | None = None
    s3: S3Resource | None = None

    def open(self) -> ObjectStore:
        """The store itself (local or S3)."""
        url = self.url or str(DEFAULT_LOCAL_ROOT)
        client = self.s3.get_client() if self.s3 and url.startswith("s3://") else None
        return open_store(url, s3_client=client)


class FreshnessSettings(dg.ConfigurableResource):
    """How far the running month's bars may lag: the last complete day they cover may be at
    most ``lag_days`` days before today (UTC)."""

    lag_days: int = 2


class AlertWebhook(dg.ConfigurableResource):
    """Where operator alerts are POSTed as JSON; no URL means no alert is sent."""

    url: str | None = None
    timeout_seconds: float = 10.0

    def post(self, message: dict[str, object]) -> bool:
        """POST ``message``; whether it was sent (an unreachable hook raises)."""
        if not self.url:
            return False
        response = requests.post(self.url, json=message, timeout=self.timeout_seconds)
        response.raise_for_status()
        return True
