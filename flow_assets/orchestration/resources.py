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

from flow_assets.catalog import contract_values, fetch_catalog
from flow_assets.catalog.contract_dating import ContractDating
from flow_assets.catalog.fetch import date_contracts
from flow_assets.instruments import InstrumentEntry
from flow_assets.sources import FetchReport, exchange_for, ingest_month
from flow_assets.sources.archive import FetchOptions
from flow_assets.sources.probing import DayFiles, Net, Site, Target, probe_target
from flow_assets.sources.tardis import ingest_tardis_month
from flow_assets.store import DEFAULT_LOCAL_ROOT, ObjectStore, open_store
from flow_assets.symbology import to_native


class ArchiveSources(dg.ConfigurableResource):
    """Where raw trades come from: the exchange archives (or an entry's Tardis-style CSVs).

    ``urls`` maps a venue to its archive root; a venue missing or empty means the source's own
    default (the venue's environment variable, e.g. ``FLOW_ASSETS_BINANCE_URL``, else its
    public archive). ``listing_urls`` maps a venue whose archive answers listings to where it
    does (missing: its configured root when that is not the public one, a mirror listing what
    it serves, else the public listing endpoint; :class:`~flow_assets.sources.probing.S3Listing`).
    ``datasets`` maps a venue to one of its datasets (missing: its default).
    """

    urls: dict[str, str] | None = None
    listing_urls: dict[str, str] | None = None
    datasets: dict[str, str] | None = None

    def _base_url(self, exchange: str) -> str | None:
        return (self.urls or {}).get(exchange) or None

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
            dataset=self._dataset(entry.exchange),
            today=today,
            allow_missing_days=True,
            contract_values=_contract_values(entry, contracts),
            progress=progress,
        )

    def _dataset(self, exchange: str) -> str | None:
        return (self.datasets or {}).get(exchange) or None

    def site(self, exchange: str) -> Site:
        """Where ``exchange``'s archive is, as configured here (None: its own defaults)."""
        return Site(self._base_url(exchange), (self.listing_urls or {}).get(exchange) or None)

    def probe_recent(
        self,
        net: Net,
        entry: InstrumentEntry,
        months: list[date],
        states: dict[str, DayFiles],
        today: date,
    ) -> dict[str, str]:
        """The archive version of each of ``months`` (finished) of ``entry`` that is out,
        within the tick's budget ``net``, by the mechanism its venue's description names; what
        is learnt of day files is kept in ``states[entry.key]`` as it comes. No Tardis probing."""
        if entry.tardis or not months:
            return {}
        exchange = exchange_for(entry.exchange)
        dataset = exchange.resolve(FetchOptions(dataset=self._dataset(entry.exchange))).dataset
        assert dataset is not None
        native = to_native(entry.exchange, entry.symbol)
        target = Target(exchange, native, dataset, months)
        site = self.site(entry.exchange)
        return probe_target(net, site, target, states, entry.key, today)


def _contract_values(entry: InstrumentEntry, history: pl.DataFrame | None) -> pl.DataFrame | None:
    """The instrument's contract values from ``history`` where its sizes are contracts."""
    if history is None or not exchange_for(entry.exchange).sizes_in_contracts:
        return None
    return contract_values(history, entry.exchange, to_native(entry.exchange, entry.symbol))


class CatalogApi(dg.ConfigurableResource):
    """The venues' public metadata REST roots: ``urls`` maps a venue to its root (missing or
    empty: the venue's environment variable, e.g. ``FLOW_ASSETS_BINANCE_API_URL``, else its
    public host). The flow bars read the exchange's own daily figures there too (Bybit, OKX).
    ``candle_pace``: seconds between candle requests of a venue whose candles date its contract
    values (None: the venue's own, OKX 0.1 s; 0 against a local mirror)."""

    urls: dict[str, str] | None = None
    candle_pace: float | None = None  # seconds between candle requests (None: the venue's)

    def fetch(self, exchange: str) -> pl.DataFrame:
        """Every listed perpetual of ``exchange`` now (its reader: requests with retries)."""
        return fetch_catalog(exchange, base_url=self.base_url(exchange))

    def date_contracts(
        self, exchange: str, snapshot: pl.DataFrame, state: pl.DataFrame
    ) -> ContractDating | None:
        """The contract values ``exchange``'s own candles show since ``state`` (None: the
        venue has no such candles)."""
        return date_contracts(exchange, snapshot, state, self.base_url(exchange), self.candle_pace)

    def base_url(self, exchange: str) -> str | None:
        """The configured root of ``exchange`` (None: its own default)."""
        return (self.urls or {}).get(exchange) or None


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
