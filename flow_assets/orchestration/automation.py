"""The flow jobs (one per exchange), the sensor that notices newly published (or revised)
months, and the daily schedule."""

import hashlib
import json
import time
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
from flow_assets.sources.probing import DayFiles, Net, ProbeLimits, visit_round
from flow_assets.tracked import tracked_entries

FRESHNESS_CHECK = "running_month_fresh"  # see operations.py
SENSOR_LOOKBACK_MONTHS = 3  # finished months re-probed for revisions on every visit
SENSOR_LIMITS = ProbeLimits(seconds=20.0, requests=4000, workers=16)  # what one tick may spend
RUNS_PER_QUERY = 500  # sensor requests looked up in one run-storage query
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

    ``done``: per ``{instrument}|{month}``, the archive version whose run succeeded (months
    of the lookback window only). ``work``: per instrument, the months still to (re)compute in
    order. ``files``: per instrument of an exchange without a listing, what is known of its day
    files. ``next``: the instrument the next probe round starts from (None: the first).
    """

    done: dict[str, str] = field(default_factory=dict)
    work: dict[str, Work] = field(default_factory=dict)
    files: dict[str, DayFiles] = field(default_factory=dict)
    next: str | None = None

    @classmethod
    def load(cls, text: str | None) -> "SensorCursor":
        document = json.loads(text or "{}")
        if "done" not in document:  # the cursor of the sensor before: versions requested
            return cls(done=dict(document))
        work = {key: Work(**value) for key, value in document["work"].items()}
        files = {key: DayFiles.load(value) for key, value in document.get("files", {}).items()}
        return cls(document["done"], work, files, document.get("next"))

    def dump(self) -> str:
        work = {key: asdict(value) for key, value in self.work.items()}
        files = {key: value.saved() for key, value in self.files.items()}
        document = {"done": self.done, "work": work, "files": files, "next": self.next}
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    def forget_before(self, month: date, tracked: set[str]) -> None:
        """Drop what no later tick reads: months done before ``month`` (out of every lookback
        window) and the day files of instruments no longer tracked."""
        first = month.isoformat()
        self.done = {k: v for k, v in self.done.items() if k.rsplit("|", 1)[1] >= first}
        self.files = {k: v for k, v in self.files.items() if k in tracked}


def _latest_runs(instance: dg.DagsterInstance, requests: list[str]) -> dict[str, dg.DagsterRun]:
    """The newest run launched for each sensor request (tagged with it) that has one."""
    found: dict[str, dg.DagsterRun] = {}
    for i in range(0, len(requests), RUNS_PER_QUERY):
        chunk = requests[i : i + RUNS_PER_QUERY]
        for run in instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: chunk})):
            found.setdefault(run.tags[REQUEST_TAG], run)  # newest first
    return found


def _step(
    context: dg.SensorEvaluationContext,
    entry: InstrumentEntry,
    work: Work,
    done: dict[str, str],
    now: float,
    backoff: timedelta,
    run: dg.DagsterRun | None,
) -> Work | None:
    """Advance an instrument's work by what happened to its current run (``run``, the newest
    of its current request); None when finished."""
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
        if known is not None and _scheme(known) != _scheme(version):
            # a version of the probe before this one (CHECKSUM texts, HEADs of every file):
            # adopted as it is, not taken for a revision
            versions = work.versions if work is not None and in_work else done
            versions[month if in_work else f"{entry.key}|{month}"] = version
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


def _scheme(version: str) -> str:
    """How a version was made (its first field: ``list``, ``index``, ``day``; older sensors wrote
    ``monthly``, ``daily``, ``okx``, ``head``)."""
    return version.split(":", 1)[0]


def _lookback(entry: InstrumentEntry, today: date) -> list[date]:
    """The recent finished months of ``entry`` to probe (none after its delisting)."""
    assert entry.start is not None
    months = _months_back(today.replace(day=1), SENSOR_LOOKBACK_MONTHS, entry.start)
    return [month for month in months if entry.covers(month)]


@dataclass
class ProbeRound:
    """What one tick's probes learnt: versions per instrument visited (of ``total`` to probe),
    the instruments whose probe failed (with the error), the hosts given up, and why the round
    stopped early."""

    total: int
    probed: dict[str, dict[str, str]]
    failed: dict[str, str]
    unreachable: dict[str, str]
    cut: str | None
    requests: int
    seconds: float
    next_key: str | None


def _probe_round(
    archives: ArchiveSources,
    entries: dict[str, InstrumentEntry],
    cursor: SensorCursor,
    today: date,
    limits: ProbeLimits,
) -> ProbeRound:
    """Probe the instruments round-robin from ``cursor.next`` within ``limits``; the cursor
    keeps the day files learnt and where the next round starts."""
    net = Net(limits)
    months = {key: _lookback(entry, today) for key, entry in entries.items()}
    keys = sorted(k for k, e in entries.items() if months[k] and not e.tardis)

    def visit(key: str) -> dict[str, str]:
        return archives.probe_recent(net, entries[key], months[key], cursor.files, today)

    started = time.monotonic()
    try:
        results, cursor.next = visit_round(net, keys, cursor.next, visit)
    finally:
        net.close()
    probed = {k: r for k, r in results.items() if not isinstance(r, Exception)}
    failed = {k: str(r) for k, r in results.items() if isinstance(r, Exception)}
    seconds = time.monotonic() - started
    unreachable = net.unreachable()
    return ProbeRound(
        len(keys), probed, failed, unreachable, net.cut, net.sent, seconds, cursor.next
    )


def _due(work: Work, stamp: float, runs: dict[str, dg.DagsterRun]) -> bool:
    """Whether the first month of ``work`` is to be requested now: past its retry wait, not
    requested within the last hour, and with no run for its current attempt yet."""
    if stamp < work.not_before:
        return False
    if work.requested_at is not None and stamp - work.requested_at < RESUBMIT_AFTER.total_seconds():
        return False
    return work.request not in runs


def _advance_all(
    context: dg.SensorEvaluationContext,
    entries: dict[str, InstrumentEntry],
    cursor: SensorCursor,
    stamp: float,
    backoff: timedelta,
) -> dict[str, dg.DagsterRun]:
    """Advance the work of every tracked instrument by its runs (one query per
    ``RUNS_PER_QUERY`` requests); the newest run of each request looked up."""
    runs = _latest_runs(context.instance, [w.request for w in cursor.work.values() if w.request])
    for key, entry in entries.items():
        work = cursor.work.pop(key, None)
        if work is not None:
            work = _step(context, entry, work, cursor.done, stamp, backoff, runs.get(work.request))
        if work is not None:
            cursor.work[key] = work
    return runs


def _run_requests(
    context: dg.SensorEvaluationContext,
    entries: dict[str, InstrumentEntry],
    cursor: SensorCursor,
    stamp: float,
    runs: dict[str, dg.DagsterRun],
) -> list[dg.RunRequest]:
    """A run of the first month of every tracked instrument's work that is due now."""
    requests = []
    for key, work in cursor.work.items():
        entry = entries.get(key)
        if entry is None or not _due(work, stamp, runs):
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
    return requests


def _report(context: dg.SensorEvaluationContext, found: ProbeRound) -> list[str]:
    """Log the round; what the skip reason must say of it (unreachable hosts, a cut)."""
    total = found.total
    context.log.info(
        f"probed {len(found.probed)} of {total} instruments with {found.requests} requests "
        f"in {found.seconds:.1f} s" + (f" ({found.cut} budget spent)" if found.cut else "")
    )
    if found.failed:
        first = next(iter(found.failed.items()))
        context.log.warning(f"{len(found.failed)} probes failed, e.g. {first[0]}: {first[1]}")
    notes = []
    if found.unreachable:
        hosts = "; ".join(f"{host} ({error[:300]})" for host, error in found.unreachable.items())
        notes.append(f"archive unreachable: {hosts}")
        context.log.warning(notes[-1])
    if found.cut:
        notes.append(
            f"probed {len(found.probed)} of {total} instruments before the tick's {found.cut} "
            f"budget was spent; the next tick goes on from {found.next_key}"
        )
    return notes


def _skip_reason(cursor: SensorCursor, notes: list[str]) -> str:
    """Why no run is requested: what the probes could not do, and what is awaited."""
    pending = [f"{key} {w.months[0][:7]}" for key, w in sorted(cursor.work.items())]
    more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
    if pending:
        notes = [*notes, f"waiting for {', '.join(pending[:10])}{more}"]
    return "; ".join(notes) or "no newly published or revised month"


def build_automation(
    partitions: FlowPartitions,
    flow_jobs: list[Any],
    retry_backoff: timedelta = RETRY_BACKOFF,
    limits: ProbeLimits = SENSOR_LIMITS,
) -> tuple[dg.SensorDefinition, list[dg.ScheduleDefinition]]:
    """``archive_sensor`` over every exchange's flow job, and one running-month schedule each."""

    @dg.sensor(
        jobs=flow_jobs,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Probes the archives, each by the mechanism its venue's description names "
        "(an S3 listing of the instrument's folders, one GET of its folder's HTML index, or "
        "HEADs of only the day files not seen yet and a few older ones in rotation), for "
        "finished months newly published or "
        "revised and requests their runs, an instrument's months in order: a revised month, then "
        "each later month once the one before succeeded. A month is done only when its run "
        "succeeded; a failed or canceled run is requested again (after 1 h, 2 h, 4 h ... at most "
        f"a day apart). A tick spends at most {limits.seconds:g} s and {limits.requests} requests "
        "on probes, round-robin over the instruments: a tick cut short goes on from there.",
    )
    def archive_sensor(
        context: dg.SensorEvaluationContext, archives: ArchiveSources, store: FlowStore
    ) -> dg.SensorResult:
        cursor = SensorCursor.load(context.cursor)
        now = datetime.now(UTC)
        today, stamp = now.date(), now.timestamp()
        objects = store.open()
        entries = {
            e.key: e for x in partitions.exchanges for e in tracked_entries(objects, x.exchange)
        }
        runs = _advance_all(context, entries, cursor, stamp, retry_backoff)
        found = _probe_round(archives, entries, cursor, today, limits)
        for key, probed in found.probed.items():
            work = _revise(entries[key], cursor.work.pop(key, None), probed, cursor.done, stamp)
            if work is not None:
                cursor.work[key] = work
        requests = _run_requests(context, entries, cursor, stamp, runs)
        notes = _report(context, found)
        oldest = _months_back(today.replace(day=1), SENSOR_LOOKBACK_MONTHS, date.min)[0]
        cursor.forget_before(oldest, set(entries))
        skip = None if requests else _skip_reason(cursor, notes)
        # the cursor always moves on: what this tick learnt is kept even when it was cut short
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
