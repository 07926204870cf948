"""The flow jobs (one per exchange), the sensor that notices newly published (or revised)
months, and the daily schedule."""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
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

FRESHNESS_CHECK = "running_month_fresh"  # see operations.py
SENSOR_LOOKBACK_MONTHS = 3  # finished months re-probed for revisions on every tick
REQUEST_TAG = "flow_assets/request"  # on every sensor run: the request it fulfils
TRIGGER_TAG = "flow_assets/trigger"  # published, revised or stale (recomputed after a revision)
ATTEMPT_TAG = "flow_assets/attempt"
RETRY_BACKOFF = timedelta(hours=1)  # a failed month is retried after 1 h, 2 h, 4 h ... 24 h
RETRY_BACKOFF_MAX = timedelta(hours=24)  # ... and then once a day, never given up
RESUBMIT_AFTER = timedelta(hours=1)  # a request without any run by then is submitted again
FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _months_back(current: date, count: int, first: date) -> list[date]:
    """The ``count`` months before ``current`` that are not before ``first``, oldest first."""
    months = []
    year, month = current.year, current.month
    for _ in range(count):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        if date(year, month, 1) >= first:
            months.append(date(year, month, 1))
    return months[::-1]


def retry_delay(attempt: int, base: timedelta = RETRY_BACKOFF) -> timedelta:
    """How long the sensor waits before attempt ``attempt`` (2, 3, ...) of a failed month."""
    return min(base * 2 ** min(max(attempt - 2, 0), 16), max(base, RETRY_BACKOFF_MAX))


def flow_job_name(exchange: str) -> str:
    """The job that materializes one instrument-month of an exchange, e.g.
    ``binance_futures_flow_job``."""
    return f"{exchange_slug(exchange)}_flow_job"


def build_flow_jobs(partitions: FlowPartitions) -> list[Any]:
    """One job per exchange: its raw trades and flow bars of one instrument-month."""
    return [
        dg.define_asset_job(
            flow_job_name(exchange.exchange),
            # the freshness check is evaluated by its own job, not by every month's run
            selection=dg.AssetSelection.groups(exchange.slug)
            - dg.AssetSelection.checks(
                dg.AssetCheckKey(dg.AssetKey([exchange.slug, "flow_bars_1d"]), FRESHNESS_CHECK)
            ),
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


@dataclass
class Work:
    """An instrument's months to (re)compute, in order; only the first is requested at a time.

    ``versions`` holds the probed archive version of each month, recorded as done once that
    month's run succeeded; ``request`` is the run key of the first month's current attempt.
    """

    months: list[str]
    versions: dict[str, str]
    trigger: str
    cause: str
    attempt: int = 1
    request: str = ""
    not_before: float = 0.0
    requested_at: float | None = None

    def start(self, now: float, attempt: int = 1, not_before: float = 0.0) -> None:
        """A new attempt at the first month, under a run key of its own."""
        self.attempt, self.not_before, self.requested_at = attempt, not_before, None
        seed = json.dumps(
            [self.months[0], self.versions.get(self.months[0]), self.cause, attempt, now]
        )
        self.request = f"{self.months[0]}@{hashlib.sha256(seed.encode()).hexdigest()[:16]}"


@dataclass
class SensorCursor:
    """What ``archive_sensor`` remembers between ticks (JSON in the sensor's cursor).

    ``done``: per ``{instrument}|{month}``, the archive version whose run succeeded.
    ``work``: per instrument, the months still to (re)compute in order.
    """

    done: dict[str, str] = field(default_factory=dict)
    work: dict[str, Work] = field(default_factory=dict)

    @classmethod
    def load(cls, text: str | None) -> "SensorCursor":
        document = json.loads(text or "{}")
        if "done" not in document:  # the cursor of the sensor before: versions requested
            return cls(done=dict(document))
        work = {key: Work(**value) for key, value in document["work"].items()}
        return cls(done=document["done"], work=work)

    def dump(self) -> str:
        work = {key: asdict(value) for key, value in self.work.items()}
        return json.dumps({"done": self.done, "work": work}, sort_keys=True)


def _latest_run(instance: dg.DagsterInstance, request: str) -> dg.DagsterRun | None:
    """The newest run launched for a sensor request (tagged with it), if any."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: request}), limit=1)
    return runs[0] if runs else None


def _step(
    context: dg.SensorEvaluationContext,
    entry: InstrumentEntry,
    work: Work,
    done: dict[str, str],
    now: float,
    backoff: timedelta,
) -> Work | None:
    """Advance an instrument's work by what happened to its current run; None when finished."""
    run = _latest_run(context.instance, work.request) if work.request else None
    if run is None:
        return work
    month = work.months[0]
    if run.status == dg.DagsterRunStatus.SUCCESS:
        if month in work.versions:
            done[f"{entry.key}|{month}"] = work.versions[month]
        work.months.pop(0)
        if not work.months:
            return None
        # a month computed before is stale now: its rolling fields carry the month before's
        later = f"{entry.key}|{work.months[0]}"
        work.trigger = "stale" if later in done else "published"
        work.start(now)
        return work
    if run.status in FAILED:
        wait = retry_delay(work.attempt + 1, backoff)
        context.log.warning(
            f"{entry.key} {month[:7]}: run {run.run_id} {run.status.value.lower()} "
            f"(attempt {work.attempt}); attempt {work.attempt + 1} in {wait}"
        )
        work.start(now, work.attempt + 1, now + wait.total_seconds())
    return work  # queued or in progress: wait for it


def _revise(
    entry: InstrumentEntry,
    work: Work | None,
    probed: dict[str, str],
    done: dict[str, str],
    now: float,
) -> Work | None:
    """The instrument's work after this tick's probe: a month published or revised starts
    (or restarts) a sequence from it through every later probed month, in order."""
    changed = []
    for month, version in sorted(probed.items()):
        in_work = work is not None and month in work.months
        known = work.versions.get(month) if in_work else done.get(f"{entry.key}|{month}")
        if known == version:
            continue
        if work is not None and month in work.months[1:]:
            work.versions[month] = version  # recomputed in order anyway
            continue
        changed.append(month)
    if not changed:
        return work
    first = min(changed)
    if work is not None and first > work.months[0]:  # later months: append to the sequence
        work.months += [m for m in sorted(probed) if m > work.months[-1]]
        work.versions.update({m: probed[m] for m in work.months if m in probed})
        return work
    months = [m for m in sorted(probed) if m >= first]
    known = f"{entry.key}|{first}" in done or (work is not None and first in work.versions)
    fresh = Work(
        months=months,
        versions={m: probed[m] for m in months},
        trigger="revised" if known else "published",
        cause=f"{first}:{probed[first]}",
    )
    fresh.start(now)
    return fresh


def _probe(
    context: dg.SensorEvaluationContext,
    archives: ArchiveSources,
    entry: InstrumentEntry,
    today: date,
) -> dict[str, str]:
    """The archive version of each recent finished month of ``entry`` that is published."""
    assert entry.start is not None
    probed = {}
    for month in _months_back(today.replace(day=1), SENSOR_LOOKBACK_MONTHS, entry.start):
        if not entry.covers(month):  # delisted: nothing to probe after its last month
            continue
        try:
            version = archives.probe(entry, month, today)
        except SourceError as error:
            context.log.warning(f"{entry.key} {month:%Y-%m}: probe failed: {error}")
            continue
        if version is not None:
            probed[month.isoformat()] = version
    return probed


def _due(instance: dg.DagsterInstance, work: Work, stamp: float) -> bool:
    """Whether the first month of ``work`` is to be requested now: past its retry wait, not
    requested within the last hour, and with no run for its current attempt yet."""
    if stamp < work.not_before:
        return False
    if work.requested_at is not None and stamp - work.requested_at < RESUBMIT_AFTER.total_seconds():
        return False
    return _latest_run(instance, work.request) is None


def build_automation(
    partitions: FlowPartitions,
    flow_jobs: list[Any],
    retry_backoff: timedelta = RETRY_BACKOFF,
) -> tuple[dg.SensorDefinition, list[dg.ScheduleDefinition]]:
    """``archive_sensor`` over every exchange's flow job, and one running-month schedule each."""

    @dg.sensor(
        jobs=flow_jobs,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Probes the archives (CHECKSUM files / HEAD requests only) for finished "
        "months newly published or revised and requests their runs, an instrument's months in "
        "order: a revised month, then each later month once the one before succeeded. A month "
        "is done only when its run succeeded; a failed or canceled run is requested again "
        "(after 1 h, 2 h, 4 h ... at most a day apart).",
    )
    def archive_sensor(
        context: dg.SensorEvaluationContext, archives: ArchiveSources, store: FlowStore
    ) -> dg.SensorResult:
        cursor = SensorCursor.load(context.cursor)
        now = datetime.now(UTC)
        today, stamp = now.date(), now.timestamp()
        requests = []
        objects = store.open()
        entries = [e for x in partitions.exchanges for e in tracked_entries(objects, x.exchange)]
        for entry in entries:
            work = cursor.work.pop(entry.key, None)
            if work is not None:
                work = _step(context, entry, work, cursor.done, stamp, retry_backoff)
            probed = _probe(context, archives, entry, today)
            work = _revise(entry, work, probed, cursor.done, stamp)
            if work is None:
                continue
            cursor.work[entry.key] = work
            if not _due(context.instance, work, stamp):
                continue
            month = date.fromisoformat(work.months[0])
            tags = {
                REQUEST_TAG: work.request,
                TRIGGER_TAG: work.trigger,
                ATTEMPT_TAG: str(work.attempt),
            }
            requests.append(_request(entry, month, work.request.split("@")[1], **tags))
            work.requested_at = stamp
            if len(work.months) > 1:
                later = ", ".join(m[:7] for m in work.months[1:])
                context.log.info(f"{entry.key}: {later} follow {month:%Y-%m} ({work.trigger})")
        skip = None
        if not requests:
            pending = {key: w.months[0][:7] for key, w in cursor.work.items()}
            skip = f"waiting for {pending}" if pending else "no newly published or revised month"
        # the cursor always moves on: a success seen on this tick is remembered even if skipped
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump(), skip_reason=skip)

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
