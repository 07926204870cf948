"""Build the Dagster ``Definitions``; the one place where the environment configures resources.

Environment variables (all optional): ``FLOW_ASSETS_STORAGE_URL`` (folder or s3://bucket/prefix),
``AWS_ENDPOINT_URL``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and ``AWS_PROFILE`` for
``dagster-aws``'s S3 resource (credentials follow boto3's chain: keys, profiles, SSO, roles),
each venue's archive, listing and catalog roots (the variables its description names, e.g.
``FLOW_ASSETS_BINANCE_URL``, ``FLOW_ASSETS_BINANCE_LISTING_URL`` and
``FLOW_ASSETS_BINANCE_API_URL``; :mod:`flow_assets.venues`), ``FLOW_ASSETS_INSTRUMENTS``,
``FLOW_ASSETS_FRESHNESS_LAG_DAYS`` (days the running month's bars may lag, default 2) and
``FLOW_ASSETS_ALERT_WEBHOOK_URL`` (where failed runs are POSTed as JSON; unset: no alert).
Loading makes no network call and reads neither the store nor the instruments file: the
instrument partitions are dynamic, synced by ``instruments_sensor``, which reads the file (and
the stored catalogs) on every tick.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    multi_or_in_process_executor,
)
from dagster_aws.s3 import S3Resource

from flow_assets.instruments import InstrumentEntry, InstrumentsConfig
from flow_assets.month import FlowSettings
from flow_assets.orchestration.assets import build_assets
from flow_assets.orchestration.automation import (
    RETRY_BACKOFF,
    SENSOR_LIMITS,
    build_automation,
    build_flow_jobs,
)
from flow_assets.orchestration.backfill import backfill_tracked_job
from flow_assets.orchestration.catalog import (
    CatalogApi,
    InstrumentsFile,
    build_catalog_automation,
    build_instruments_sensor,
)
from flow_assets.orchestration.coverage import build_coverage
from flow_assets.orchestration.operations import build_freshness, run_failure_alert
from flow_assets.orchestration.partitions import FlowPartitions
from flow_assets.orchestration.reconciliation import build_reconciliation
from flow_assets.orchestration.resources import (
    AlertWebhook,
    ArchiveSources,
    FlowStore,
    FreshnessSettings,
)
from flow_assets.sources.probing import ProbeLimits
from flow_assets.venues import VENUES, Venue

SUMMARY_AUTOMATION = (
    "Keeps daily_flow_summary of the latest month up to date (AutomationCondition.eager): "
    "requests that month once the 1d bars it reads were updated and none is missing or still "
    "running. Earlier months are never requested by it: backfill summary_job for them. On by "
    "default, as the README says; the daemon evaluates it about every 30 s."
)

# Dagster's default executor (``execution: config: in_process | multiprocess``, the launchpad's
# choice), defaulting to ``in_process``: a run's steps execute in its run worker's process, one
# after another, instead of one fresh process per step. Every run of ours is a chain (raw trades,
# then the bars that read them; a backfill's runs hold one step each), so a step process only
# added a Python start-up and the definitions' import (~2 s CPU, ~200 MB) per step: most of an
# instrument-month's fixed cost (``benchmarks/bench_backfill_throughput.py``). ``multiprocess``
# stays available in a run's config.
IN_PROCESS_FIRST = dg.ExecutorDefinition(
    name=multi_or_in_process_executor.name,
    config_schema=dg.Field(
        dg.Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG}),
        default_value={"in_process": {}},
    ),
    requirements=multi_or_in_process_executor.get_requirements,
    executor_creation_fn=multi_or_in_process_executor.executor_creation_fn,
    description="Steps in the run worker's process unless the run's config says multiprocess.",
)


def _from_env(name: str) -> dg.EnvVar | None:
    """``dg.EnvVar(name)`` when the variable is set, else None (the component's default)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _operations_resources() -> dict[str, dg.ConfigurableResource]:
    """The freshness lag and the alert webhook, from the environment through ``dg.EnvVar``."""
    lag = dg.EnvVar.int("FLOW_ASSETS_FRESHNESS_LAG_DAYS")
    return {
        "freshness": FreshnessSettings(lag_days=lag)
        if os.environ.get("FLOW_ASSETS_FRESHNESS_LAG_DAYS")
        else FreshnessSettings(),
        "alerts": AlertWebhook(url=_from_env("FLOW_ASSETS_ALERT_WEBHOOK_URL")),
    }


def _venue_urls(env_name: Callable[[Venue], str | None]) -> dict[str, dg.EnvVar]:
    """Venue -> ``dg.EnvVar`` of its variable ``env_name(venue)``, for the variables set (a
    venue naming none has no entry)."""
    names = {name: env_name(venue) for name, venue in VENUES.items()}
    return {name: dg.EnvVar(env) for name, env in names.items() if env and os.environ.get(env)}


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment through ``dg.EnvVar``."""
    return {
        **_operations_resources(),
        "archives": ArchiveSources(
            urls=_venue_urls(lambda v: v.archive.url_env),
            listing_urls=_venue_urls(lambda v: v.archive.listing_env),
        ),
        "instruments": InstrumentsFile(path=_from_env("FLOW_ASSETS_INSTRUMENTS")),
        "catalog_api": CatalogApi(urls=_venue_urls(lambda v: v.catalog.url_env)),
        "store": FlowStore(
            url=_from_env("FLOW_ASSETS_STORAGE_URL"),
            s3=S3Resource(
                endpoint_url=_from_env("AWS_ENDPOINT_URL"),
                region_name=_from_env("AWS_REGION") or _from_env("AWS_DEFAULT_REGION"),
                profile_name=_from_env("AWS_PROFILE"),
            ),
        ),
    }


def build_definitions(
    instruments: InstrumentsConfig | Sequence[InstrumentEntry] | None = None,
    resources: dict[str, dg.ConfigurableResource] | None = None,
    settings: FlowSettings | None = None,
    retry_backoff: timedelta = RETRY_BACKOFF,
    probe_limits: ProbeLimits = SENSOR_LIMITS,
) -> dg.Definitions:
    """All assets, checks, jobs, sensors and schedules. ``instruments_sensor`` tracks the
    instruments file of the ``instruments`` resource, re-read on every tick, or ``instruments``
    when given (tests, the demo). Resources not given are the environment's
    (:func:`default_resources`). ``probe_limits``: what a tick of ``archive_sensor`` may spend
    on probes."""
    if instruments is not None and not isinstance(instruments, InstrumentsConfig):
        instruments = InstrumentsConfig(entries=tuple(instruments))
    partitions = FlowPartitions()
    flow_jobs = build_flow_jobs(partitions)
    archive_sensor, schedules = build_automation(partitions, flow_jobs, retry_backoff, probe_limits)
    catalog_assets, catalog_job, catalog_schedule = build_catalog_automation(partitions)
    freshness_checks, freshness_job, freshness_schedule = build_freshness(partitions)
    reconciliation = build_reconciliation(partitions.exchanges)
    coverage_assets, coverage_job, coverage_schedule = build_coverage(
        partitions.exchanges, tuple(a.key for a in reconciliation)
    )
    return dg.Definitions(
        assets=[
            *catalog_assets,
            *build_assets(partitions, settings or FlowSettings()),
            *coverage_assets,
            *reconciliation,
        ],
        asset_checks=freshness_checks,
        jobs=[
            *flow_jobs,
            catalog_job,
            freshness_job,
            coverage_job,
            backfill_tracked_job,
            dg.define_asset_job(
                "summary_job",
                selection=dg.AssetSelection.groups("analytics"),
                partitions_def=partitions.months,
                description="The daily cross-exchange summary of one month.",
            ),
        ],
        sensors=[
            build_instruments_sensor(instruments, partitions),
            archive_sensor,
            run_failure_alert,
            dg.AutomationConditionSensorDefinition(
                "summary_automation",
                target=dg.AssetSelection.groups("analytics"),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description=SUMMARY_AUTOMATION,
            ),
        ],
        schedules=[*schedules, catalog_schedule, freshness_schedule, coverage_schedule],
        resources={**default_resources(), **(resources or {})},
        executor=IN_PROCESS_FIRST,
    )
