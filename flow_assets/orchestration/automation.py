"""Jobs, the sensor that notices newly published (or revised) months, and the daily schedule."""

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from flow_assets.orchestration.partitions import FlowPartitions
from flow_assets.orchestration.resources import ArchiveSources
from flow_assets.sources import SourceError

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


def build_automation(
    partitions: FlowPartitions,
) -> tuple[Any, dg.SensorDefinition, dg.ScheduleDefinition]:
    """``flow_job`` (group ``flow``), ``archive_sensor`` and ``running_month_schedule``."""
    flow_job = dg.define_asset_job(
        "flow_job",
        selection=dg.AssetSelection.groups("flow"),
        partitions_def=partitions.instrument_month,
        description="Raw trades and flow bars of one instrument-month.",
    )

    @dg.sensor(
        job=flow_job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Probes the archives (CHECKSUM files / HEAD requests only) for finished "
        "months newly published or revised, and requests their runs.",
    )
    def archive_sensor(
        context: dg.SensorEvaluationContext, archives: ArchiveSources
    ) -> dg.SensorResult | dg.SkipReason:
        seen: dict[str, str] = json.loads(context.cursor or "{}")
        today = datetime.now(UTC).date()
        requests = []
        for entry in partitions.entries:
            for month in _months_back(today.replace(day=1), SENSOR_LOOKBACK_MONTHS, entry.start):
                try:
                    version = archives.probe(entry, month, today)
                except SourceError as error:
                    context.log.warning(f"{entry.key} {month:%Y-%m}: probe failed: {error}")
                    continue
                key = str(partitions.key(entry, month))
                if version is None or seen.get(key) == version:
                    continue
                digest = hashlib.sha256(version.encode()).hexdigest()[:16]
                requests.append(
                    dg.RunRequest(
                        partition_key=key,
                        run_key=f"{key}@{digest}",
                        tags={"flow_assets/trigger": "revised" if key in seen else "published"},
                    )
                )
                seen[key] = version
        if not requests:
            return dg.SkipReason("no newly published or revised month")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    @dg.schedule(
        job=flow_job,
        cron_schedule="30 1 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Keeps the running month fresh from the daily files (yesterday included).",
    )
    def running_month_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        today = context.scheduled_execution_time.astimezone(UTC).date()
        if today.day == 1:
            return dg.SkipReason("no complete day of the new month yet")
        month = today.replace(day=1)
        return [
            dg.RunRequest(
                partition_key=str(partitions.key(entry, month)),
                run_key=f"{partitions.key(entry, month)}@{today.isoformat()}",
            )
            for entry in partitions.entries
            if entry.start <= month
        ]

    return flow_job, archive_sensor, running_month_schedule
