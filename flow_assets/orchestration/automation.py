"""The flow jobs (one per exchange), the sensor that notices newly published (or revised)
months, and the daily schedule."""

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from flow_assets.instruments import InstrumentEntry
from flow_assets.orchestration.partitions import (
    ExchangePartitions,
    FlowPartitions,
    exchange_slug,
    partition_key,
)
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.sources import SourceError
from flow_assets.tracked import tracked_entries

SENSOR_LOOKBACK_MONTHS = 3  # finished months re-probed for revisions on every tick


def _months_back(current: date, count: int, first: date) -> list[date]:
    """The ``count`` months before ``current`` that are not before ``first``, oldest first."""
    months = []
    year, month = current.year, current.month
    for _ in range(count):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        if date(year, month, 1) >= first:
            months.append(date(year, month, 1))
    return months[::-1]


def flow_job_name(exchange: str) -> str:
    """The job that materializes one instrument-month of an exchange, e.g.
    ``binance_futures_flow_job``."""
    return f"{exchange_slug(exchange)}_flow_job"


def build_flow_jobs(partitions: FlowPartitions) -> list[Any]:
    """One job per exchange: its raw trades and flow bars of one instrument-month."""
    return [
        dg.define_asset_job(
            flow_job_name(exchange.exchange),
            selection=dg.AssetSelection.groups(exchange.slug),
            partitions_def=exchange.instrument_month,
            description=f"Raw trades and flow bars of one {exchange.exchange} instrument-month.",
        )
        for exchange in partitions.exchanges
    ]


def _request(entry: InstrumentEntry, month: date, run_key: str, **tags: str) -> dg.RunRequest:
    """A run of ``entry``'s month on its exchange's flow job."""
    key = partition_key(entry, month)
    return dg.RunRequest(
        job_name=flow_job_name(entry.exchange),
        partition_key=str(key),
        run_key=f"{entry.key}|{month.isoformat()}@{run_key}",
        tags=tags,
    )


def build_automation(
    partitions: FlowPartitions, flow_jobs: list[Any]
) -> tuple[dg.SensorDefinition, list[dg.ScheduleDefinition]]:
    """``archive_sensor`` over every exchange's flow job, and one running-month schedule each."""

    @dg.sensor(
        jobs=flow_jobs,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Probes the archives (CHECKSUM files / HEAD requests only) for finished "
        "months newly published or revised, and requests their runs.",
    )
    def archive_sensor(
        context: dg.SensorEvaluationContext, archives: ArchiveSources, store: FlowStore
    ) -> dg.SensorResult | dg.SkipReason:
        seen: dict[str, str] = json.loads(context.cursor or "{}")
        today = datetime.now(UTC).date()
        requests = []
        objects = store.open()
        entries = [e for x in partitions.exchanges for e in tracked_entries(objects, x.exchange)]
        for entry in entries:
            assert entry.start is not None
            for month in _months_back(today.replace(day=1), SENSOR_LOOKBACK_MONTHS, entry.start):
                if not entry.covers(month):  # delisted: nothing to probe after its last month
                    continue
                try:
                    version = archives.probe(entry, month, today)
                except SourceError as error:
                    context.log.warning(f"{entry.key} {month:%Y-%m}: probe failed: {error}")
                    continue
                key = f"{entry.key}|{month.isoformat()}"
                if version is None or seen.get(key) == version:
                    continue
                digest = hashlib.sha256(version.encode()).hexdigest()[:16]
                trigger = "revised" if key in seen else "published"
                requests.append(_request(entry, month, digest, **{"flow_assets/trigger": trigger}))
                seen[key] = version
        if not requests:
            return dg.SkipReason("no newly published or revised month")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return archive_sensor, [
        running_month_schedule(partitions, exchange, job)
        for exchange, job in zip(partitions.exchanges, flow_jobs, strict=True)
    ]


def running_month_schedule(
    partitions: FlowPartitions, exchange: ExchangePartitions, job: Any
) -> dg.ScheduleDefinition:
    """``{exchange}_running_month``: each day, the running month of every instrument."""

    @dg.schedule(
        name=f"{exchange.slug}_running_month",
        cron_schedule="30 1 * * *",
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Keeps the running month fresh from the daily files (yesterday included).",
    )
    def schedule(
        context: dg.ScheduleEvaluationContext, store: FlowStore
    ) -> list[dg.RunRequest] | dg.SkipReason:
        today = context.scheduled_execution_time.astimezone(UTC).date()
        if today.day == 1:
            return dg.SkipReason("no complete day of the new month yet")
        month = today.replace(day=1)
        return [
            _request(entry, month, today.isoformat())
            for entry in tracked_entries(store.open(), exchange.exchange)
            if entry.covers(month)
        ]

    return schedule
