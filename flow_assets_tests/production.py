"""Test helpers for the production topology: a throwaway Postgres and Dagster's three processes.

The fixtures are registered in ``conftest.py``: request them by name. ``postgres_server`` runs
the machine's PostgreSQL (``initdb`` / ``pg_ctl`` on PATH or under /usr/lib/postgresql/*/bin;
as root they run as the ``postgres`` user) on 127.0.0.1 with trust auth, for the test session;
it is stopped (``pg_ctl stop -m immediate``) and its folder removed even when a test fails. A
missing PostgreSQL is an error, not a skip: CI installs it (.ci/run).

:class:`Topology` starts ``dagster api grpc`` (code server), ``dagster-webserver`` (loading a
workspace that points at the code server over gRPC) and ``dagster-daemon run`` as separate
processes, each in its own process group, waits until each is ready, and stops every one by
process group (SIGTERM, then SIGKILL), then checks that no process it started (run workers
included: they carry the topology's marker in their environment) is left.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
MARKER_ENV = "FLOW_ASSETS_TOPOLOGY_ID"
# The backfill daemon sleeps DEFAULT_DAEMON_INTERVAL_SECONDS (30 s, not configurable) between
# iterations and an asset backfill submits an instrument's next month only on the iteration after
# the previous month's run ended (flow_bars depend on their previous month). The test's daemon
# runs with a 2 s interval so a 4-month chain takes seconds, not minutes; everything else is the
# stock `dagster-daemon run`.
DAEMON_INTERVAL_SECONDS = 2
DAEMON_MAIN = (
    "import sys; import dagster._daemon.controller as c; "
    f"c.DEFAULT_DAEMON_INTERVAL_SECONDS = {DAEMON_INTERVAL_SECONDS}; "
    "from dagster._daemon.cli import main; "
    "sys.argv = ['dagster-daemon', 'run', *sys.argv[1:]]; main()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (CI installs the Debian `postgresql` package "
            "in .ci/run; locally: apt-get install -y postgresql)"
        )
    return found


def _as_postgres(args: list[str]) -> list[str]:
    """``args`` run as the ``postgres`` user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def connect(self, db: str = "postgres"):
        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=db)

    def create_database(self) -> str:
        name = f"dagster_{uuid.uuid4().hex[:12]}"
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on 127.0.0.1 (trust auth) for the session."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="flow-assets-pg-"))
    data, user = root / "data", "postgres"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    port = free_port()
    started = False
    try:
        subprocess.run(
            _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", user, "--no-sync"]),
            check=True,
            capture_output=True,
        )
        options = f"-h 127.0.0.1 -p {port} -k {root} -F"  # -F: no fsync, a test database
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-D", str(data), "-o", options, "-l", f"{root}/log", "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        started = True
        yield PostgresServer("127.0.0.1", port, user)
    finally:
        if started:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_env(postgres_server: PostgresServer) -> dict[str, str]:
    """A fresh database on the session's server, as the DAGSTER_PG_* variables the yamls read."""
    return {
        "DAGSTER_PG_HOST": postgres_server.host,
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_DB": postgres_server.create_database(),
        "DAGSTER_PG_USER": postgres_server.user,
        "DAGSTER_PG_PASSWORD": "",
    }


def render_instance(source: Path, home: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Write ``source`` (a deploy/ instance yaml, env placeholders kept) merged with ``overrides``
    as ``home``/dagster.yaml; return the merged document."""
    document = yaml.safe_load(source.read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return document


def _pids_with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARKER_ENV}={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Topology:
    """Code server, webserver and daemon as separate processes sharing one instance."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.marker = uuid.uuid4().hex
        self.env = {**env, MARKER_ENV: self.marker, "PYTHONPATH": str(REPO)}
        self.grpc_port, self.web_port = free_port(), free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{self.web_port}"

    @staticmethod
    def _at(port: int) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(port)]

    def _start(self, name: str, args: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
        log.close()

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.log(n)}" for n in self.processes)

    def _wait(self, what: str, ready, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode})\n{self.logs()}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready after {timeout} s\n{self.logs()}")

    def start(self) -> Topology:
        workspace = self.workdir / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "host": "127.0.0.1",
                                "port": self.grpc_port,
                                "location_name": "flow_assets",
                            }
                        }
                    ]
                }
            )
        )
        py = sys.executable
        self._start(
            "grpc",
            [
                py,
                "-m",
                "dagster",
                "api",
                "grpc",
                "-m",
                "flow_assets.definitions",
                *self._at(self.grpc_port),
            ],
        )
        self._wait("code server", lambda: socket.create_connection(("127.0.0.1", self.grpc_port)))
        self._start(
            "webserver",
            [py, "-m", "dagster_webserver", *self._at(self.web_port), "-w", str(workspace)],
        )
        self._wait("webserver", self._location_loaded)
        self._start("daemon", [py, "-c", DAEMON_MAIN, "-w", str(workspace)])
        self._wait("daemon", self._daemons_healthy)
        return self

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def _location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
            "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        )
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"code location failed to load: {error['message']}")
        return bool(entries) and all(
            e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries
        )

    def _daemons_healthy(self) -> bool:
        data = self.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
        )
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"}
        healthy = {s["daemonType"] for s in statuses if s["healthy"]}
        return needed <= healthy

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after 10 s; then sweep strays."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process.pid, signal.SIGKILL)  # the group: run workers too
            process.wait()
        for pid in _pids_with_marker(self.marker):  # anything that left the groups
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def leftovers(self) -> list[int]:
        deadline = time.monotonic() + 5
        while (found := _pids_with_marker(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
