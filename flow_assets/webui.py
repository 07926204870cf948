"""Dagster's webserver and daemon (``dagster dev``) on an instance, and runs launched through the
webserver's GraphQL API the way the UI launches them (the demo and the browser test).

Runs launched here carry the code location's origin, so the UI lists them under their job, on
the Overview timeline and, for a backfill, on the Backfills tab; the daemon's queue executes them
with the instance's limits. Only HTTP: this module imports nothing of Dagster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

# Runs in the run worker's own process (no step subprocesses): seconds per demo run on 2 cores.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
DEV = [sys.executable, "-m", "dagster", "dev"]
NEEDED_DAEMONS = {"BACKFILL", "QUEUED_RUN_COORDINATOR", "SENSOR"}

WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on RepositoryLocation { repositories { name } }
  ... on PythonError { message } } } } ... on PythonError { message } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
LAUNCH_RUN = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""
LAUNCH_BACKFILL = """mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""
RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status tags { key value } } }
  ... on Error { message } } }"""


class LaunchError(RuntimeError):
    """The webserver refused a launch, or what was launched did not finish in time."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Location:
    """The code location and repository a launch names (what the UI's launchpad sends)."""

    location: str
    repository: str

    def selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}


class DagsterDev:
    """``dagster dev -w workspace`` (webserver, daemon and code server) in its own process
    group on 127.0.0.1, its output in ``log``; stopped as a whole (SIGINT, then SIGKILL)."""

    def __init__(self, workspace: Path, env: Mapping[str, str], log: Path, port: int = 0):
        self.workspace, self.env, self.log = workspace, dict(env), log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> DagsterDev:
        """Start it and wait until the code location is loaded and the daemons are healthy."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out, _sigint_not_ignored():
            self.process = subprocess.Popen(
                [*DEV, "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=self.workspace.parent,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait("the code location", self.location_ready, timeout)
        self._wait("the daemons", self.daemons_ready, timeout)
        return self

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(f"dagster dev exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError, requests.RequestException):
                if ready():
                    return
            time.sleep(0.5)
        raise LaunchError(f"{what} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of dagster dev's output."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST ``query`` to the webserver; its ``data``, or an error naming what went wrong."""
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise LaunchError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def location(self) -> Location:
        """The (single) loaded code location and its repository."""
        entries = self.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise LaunchError(f"code location {entry['name']} failed: {loaded['message']}")
            if loaded.get("__typename") == "RepositoryLocation":
                return Location(entry["name"], loaded["repositories"][0]["name"])
        raise LaunchError("no code location loaded yet")

    def location_ready(self) -> bool:
        try:
            self.location()
        except LaunchError as error:
            if "failed" in str(error):
                raise
            return False
        return True

    def daemons_ready(self) -> bool:
        statuses = self.graphql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {s["daemonType"] for s in statuses if s["healthy"]} >= NEEDED_DAEMONS

    def stop(self) -> None:
        """SIGINT the group (dagster dev stops its children), SIGKILL what is left after 20 s."""
        if self.process is None:
            return
        _signal_group(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> DagsterDev:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A shell's background job runs with SIGINT ignored, and a child inherits that; dagster
    dev stops its webserver, daemon and code server on SIGINT only. So a child started inside
    gets SIGINT's default (the parent's own disposition is put back after)."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _tags(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (tags or {}).items()]


def launch_run(
    dev: DagsterDev,
    job: str,
    run_config: Mapping[str, Any] = IN_PROCESS,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Launch ``job`` (unpartitioned) as the launchpad does; returns the run id."""
    params = {
        "selector": {**dev.location().selector(), "jobName": job},
        "runConfigData": dict(run_config),
        "executionMetadata": {"tags": _tags(tags)},
    }
    result = dev.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise LaunchError(f"{job}: {result.get('message', result['__typename'])}")
    return result["run"]["runId"]


def launch_job_backfill(
    dev: DagsterDev,
    job: str,
    partitions: Iterable[str],
    run_config: Mapping[str, Any] = IN_PROCESS,
    tags: Mapping[str, str] | None = None,
) -> str:
    """A backfill of ``job`` over ``partitions`` (one run each, submitted in this order), as the
    job's "Launch backfill" dialog sends it; returns the backfill id."""
    selector = {"partitionSetName": f"{job}_partition_set"}
    params = {
        "selector": {**selector, "repositorySelector": dev.location().selector()},
        "partitionNames": list(partitions),
        "fromFailure": False,
        "runConfigData": dict(run_config),
        "tags": _tags(tags),
    }
    result = dev.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise LaunchError(f"backfill of {job}: {result.get('message', result['__typename'])}")
    return result["backfillId"]


def runs(dev: DagsterDev, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The runs carrying ``tags``: id, job, status and tags (a dict)."""
    flt = {"tags": _tags(tags)}
    found = dev.graphql(RUNS, {"filter": flt})["runsOrError"]
    if found["__typename"] != "Runs":
        raise LaunchError(f"runs of {tags}: {found.get('message')}")
    for run in found["results"]:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return found["results"]


def wait_runs(
    dev: DagsterDev,
    tags: Mapping[str, str],
    expected: int,
    timeout: float,
    progress: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Wait until ``expected`` runs carrying ``tags`` have ended; returns them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(dev, tags)
        if progress is not None:
            progress(found)
        if len(found) >= expected and all(r["status"] in TERMINAL for r in found):
            return found
        time.sleep(1.0)
    raise LaunchError(f"runs tagged {dict(tags)} not done after {timeout:.0f} s:\n{dev.tail()}")
