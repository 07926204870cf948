"""What an operator needs beyond the flow jobs: the running month's freshness check (and the
job and schedule that evaluate it) and the run-failure alert."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from flow_assets.instruments import InstrumentEntry
from flow_assets.month import previous_month
from flow_assets.orchestration.assets import flow_asset_key
from flow_assets.orchestration.automation import FRESHNESS_CHECK
from flow_assets.orchestration.partitions import (
    ExchangePartitions,
    FlowPartitions,
    instrument_key,
)
from flow_assets.orchestration.resources import AlertWebhook, FlowStore, FreshnessSettings
from flow_assets.publish import read_manifest
from flow_assets.store import ObjectStore
from flow_assets.tracked import tracked_entries

FRESHNESS_JOB = "freshness_job"
FAILURE_TAG = "flow_assets/failure"  # on a failed run: what failed, as the alert said
ERROR_CHARS = 2000  # of an error in an alert / a run tag


def freshness_check_key(exchange: str) -> dg.AssetCheckKey:
    """The freshness check of an exchange's 1d bars."""
    return dg.AssetCheckKey(flow_asset_key(exchange, "1d"), FRESHNESS_CHECK)


def last_complete_day(store: ObjectStore, entry: InstrumentEntry, today: date) -> date | None:
    """The last day the published bars of the running month (else of the month before) cover
    completely: the day before the manifest's ``covered_until``; None when neither is published."""
    running = today.replace(day=1)
    for month in (running, previous_month(running)):
        if month < entry.start:
            continue
        manifest = read_manifest(store, "flow", entry.exchange, entry.symbol, month)
        if manifest is not None:
            covered_until = datetime.fromisoformat(manifest.metadata["covered_until"])
            return covered_until.date() - timedelta(days=1)
    return None


def freshness_check(partitions: ExchangePartitions) -> dg.AssetChecksDefinition:
    """``running_month_fresh`` on ``{exchange}/flow_bars_1d``: every tracked instrument's bars
    cover the days up to at most ``lag_days`` before today."""
    exchange = partitions.exchange

    @dg.asset_check(
        asset=flow_asset_key(exchange, "1d"),
        name=FRESHNESS_CHECK,
        description="The running month's bars of every instrument cover the days up to at most "
        "FLOW_ASSETS_FRESHNESS_LAG_DAYS (default 2) before today; fails naming the instruments "
        "behind and the last day their bars cover. Tardis-sourced instruments are not tracked.",
    )
    def running_month_fresh(store: FlowStore, freshness: FreshnessSettings) -> dg.AssetCheckResult:
        today = datetime.now(UTC).date()
        objects = store.open()
        behind: dict[str, str | None] = {}
        covered: dict[str, str | None] = {}
        for entry in tracked_entries(objects, exchange):
            if entry.tardis or not entry.covers(today.replace(day=1)):
                continue
            last = last_complete_day(objects, entry, today)
            name = instrument_key(entry.symbol)
            covered[name] = last.isoformat() if last else None
            if last is None or (today - last).days > freshness.lag_days:
                behind[name] = covered[name]
        oldest = min((d for d in behind.values() if d), default=None)
        return dg.AssetCheckResult(
            passed=not behind,
            metadata={
                "today": today.isoformat(),
                "lag_days": freshness.lag_days,
                "instruments_checked": len(covered),
                "instruments_behind": dg.MetadataValue.json(behind),
                "last_complete_day": dg.MetadataValue.json(covered),
                "summary": (
                    f"{len(behind)} instrument(s) behind (oldest last complete day: {oldest}): "
                    + ", ".join(sorted(behind))
                    if behind
                    else f"all {len(covered)} instrument(s) within {freshness.lag_days} day(s)"
                ),
            },
        )

    return running_month_fresh


def build_freshness(
    partitions: FlowPartitions,
) -> tuple[list[dg.AssetChecksDefinition], Any, dg.ScheduleDefinition]:
    """The freshness checks, ``freshness_job`` evaluating them, and its hourly schedule."""
    checks = [freshness_check(exchange) for exchange in partitions.exchanges]
    job = dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(
            *(freshness_check_key(e.exchange) for e in partitions.exchanges)
        ),
        description="Evaluates the running month's freshness check of every exchange.",
    )
    schedule = dg.ScheduleDefinition(
        name="freshness_checks",
        job=job,
        cron_schedule="15 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Hourly: is every instrument's running month within the freshness lag?",
    )
    return checks, job, schedule


def _error_text(context: dg.RunFailureSensorContext) -> str:
    """The first failed step's error with its causes, else the run failure's message."""
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        messages = []
        while error is not None:
            messages.append(f"{error.cls_name}: {error.message.strip()}")
            error = error.cause
        if messages:
            return f"step {event.step_key}: " + " <- caused by: ".join(messages)
    return context.failure_event.message or "run failed"


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of this code location: logged on the sensor's tick, tagged "
    f"on the run ({FAILURE_TAG}), and POSTed as JSON to FLOW_ASSETS_ALERT_WEBHOOK_URL when set.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertWebhook) -> None:
    """Record a failed run where an operator sees it, and alert the webhook if configured."""
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    error = _error_text(context)[:ERROR_CHARS]
    message = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": partition,
        "error": error,
        "run_path": f"/runs/{run.run_id}",
        "trigger": run.tags.get("flow_assets/trigger"),
        "attempt": run.tags.get("flow_assets/attempt"),
    }
    context.log.error(f"{run.job_name} {partition or ''} failed (run {run.run_id}): {error}")
    context.instance.add_run_tags(run.run_id, {FAILURE_TAG: error})
    if alerts.post(message):
        context.log.info(f"alert for run {run.run_id} posted to the webhook")
