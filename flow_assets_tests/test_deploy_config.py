"""Every instance and workspace yaml of the repository, validated offline by Dagster's own schema.

An instance yaml is checked three ways, as ``dagster`` itself loads it: the instance schema
(``dagster_instance_config``: unknown or misspelt top-level and nested keys, pool settings), then
each configurable class the instance would build (storage, run/event/schedule storage, compute
logs, run coordinator, run launcher, ...) against that class's own ``config_type()`` with the env
placeholders resolved (``process_config``, as ``ConfigurableClassData.rehydrate`` does, without
constructing anything, so no database or AWS call), then run monitoring's rule that a run
launcher which cannot resume runs needs ``max_resume_run_attempts: 0``.
"""

from __future__ import annotations

import copy
import importlib
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes import ConfigurableClassData

REPO = Path(__file__).resolve().parent.parent
INSTANCE_PATHS = [
    REPO / "dagster.yaml",
    *sorted((REPO / "deploy").glob("dagster*.yaml")),
]
WORKSPACE_PATHS = [REPO / "workspace.yaml", REPO / "deploy" / "workspace.yaml"]

# Every variable the yamls read through `env:`, with a placeholder value of the right kind.
PLACEHOLDERS = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "flow-assets-logs",
    "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
    "DAGSTER_COMPUTE_LOGS_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
    "DAGSTER_RUN_TASK_DEFINITION": "flow-assets-run",
    "DAGSTER_ECS_CLUSTER": "flow-assets",
    "DAGSTER_CODE_SERVER_HOST": "flow-assets-code",
    "DAGSTER_CODE_SERVER_PORT": "4000",
}


@pytest.fixture(autouse=True)
def placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PLACEHOLDERS.items():
        monkeypatch.setenv(name, value)


def _class_data(ref: InstanceRef) -> dict[str, ConfigurableClassData]:
    """Every configurable class the instance would construct, by InstanceRef field."""
    found = {
        name: value
        for name, value in ref._asdict().items()
        if isinstance(value, ConfigurableClassData)
    }
    storage = found.get("storage_data")
    if storage is not None and storage.class_name == "CompositeStorage":
        found.pop("storage_data")  # its three parts are run/event/schedule_storage_data
    return found


def _klass(data: ConfigurableClassData) -> type:
    return getattr(importlib.import_module(data.module_name), data.class_name)


def validate_instance_yaml(document: dict[str, Any], workdir: Path) -> InstanceRef:
    """Raise DagsterInvalidConfigError / AssertionError unless ``document`` is a valid instance."""
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(document))
    settings, _ = dagster_instance_config(str(home))  # the instance schema
    ref = InstanceRef.from_dir(str(home))
    for field, data in _class_data(ref).items():
        klass = _klass(data)
        result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
        if not result.success:
            raise DagsterInvalidConfigError(
                f"{field}: {data.module_name}.{data.class_name}", result.errors, data.config_dict
            )
    launcher = _klass(ref.run_launcher_data)
    # DagsterInstance refuses max_resume_run_attempts > 0 when the launcher cannot resume
    # (dagster/_core/instance/methods/settings_methods.py, _initialize_run_monitoring).
    can_resume = launcher.supports_resume_run.fget(object.__new__(launcher))
    monitoring = settings.get("run_monitoring") or {}
    if (
        monitoring.get("enabled")
        and monitoring.get("max_resume_run_attempts", 0)
        and not can_resume
    ):
        raise AssertionError(f"{launcher.__name__} cannot resume runs: max_resume_run_attempts")
    return ref


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", INSTANCE_PATHS, ids=lambda p: str(p.relative_to(REPO)))
def test_instance_yaml_is_valid(path: Path, tmp_path: Path) -> None:
    document = _load(path)
    ref = validate_instance_yaml(document, tmp_path)
    settings = ref.settings
    # What every instance must keep: the run queue, the per-exchange pools, retries, monitoring.
    runs = settings["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] >= 1
    assert {
        "key": "dagster/partition/instrument",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in runs["tag_concurrency_limits"]
    assert settings["concurrency"]["pools"]["default_limit"] == 1
    assert settings["run_retries"]["enabled"]
    assert settings["run_retries"]["max_retries"] >= 1
    assert settings["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert settings["run_monitoring"]["enabled"]
    if path.parent.name == "deploy":
        assert ref.storage_data.module_name == "dagster_postgres"
        assert ref.storage_data.config_dict["postgres_db"]["scheme"] == "postgresql+psycopg2"
        assert ref.compute_logs_data.class_name == "S3ComputeLogManager"
    if path.name == "dagster.ecs.yaml":
        assert ref.run_launcher_data.class_name == "EcsRunLauncher"
    else:
        assert ref.run_launcher_data.class_name == "DefaultRunLauncher"


def test_every_instance_yaml_is_covered() -> None:
    found = {p.name for p in (REPO / "deploy").glob("*.yaml")} - {"workspace.yaml"}
    assert found == {p.name for p in INSTANCE_PATHS if p.parent.name == "deploy"}
    assert {"dagster.postgres.yaml", "dagster.ecs.yaml"} <= found


def _set(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def _rename(document: dict[str, Any], path: tuple[str, ...], new: str) -> None:
    for key in path[:-1]:
        document = document[key]
    document[new] = document.pop(path[-1])


BROKEN = [
    ("dagster.yaml", "rename", ("concurrency", "runs", "max_concurrent_runs"),
     "max_concurent_runs"),
    ("dagster.yaml", "rename", ("run_retries",), "run_retires"),
    ("dagster.yaml", "rename", ("run_monitoring", "poll_interval_seconds"), "poll_interval"),
    ("dagster.yaml", "set", ("concurrency", "pools", "granularity"), "instrument"),
    ("dagster.yaml", "set", ("run_monitoring", "max_resume_run_attempts"), 1),
    ("deploy/dagster.postgres.yaml", "rename", ("storage", "postgres", "postgres_db", "hostname"),
     "host_name"),
    ("deploy/dagster.postgres.yaml", "rename", ("compute_logs", "config", "bucket"), "buckett"),
    ("deploy/dagster.postgres.yaml", "set", ("compute_logs", "config", "use_ssl"), "yes"),
    ("deploy/dagster.postgres.yaml", "set", ("run_monitoring", "max_resume_run_attempts"), 2),
    ("deploy/dagster.ecs.yaml", "rename", ("run_launcher", "config", "container_name"),
     "container_nmae"),
    ("deploy/dagster.ecs.yaml", "rename", ("run_launcher", "config", "run_task_kwargs"),
     "run_task_kwarg"),
    ("deploy/dagster.ecs.yaml", "set", ("run_launcher", "class"), "EcsRunLauncherr"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "how", "path", "value"), BROKEN)
def test_misspelt_instance_yaml_is_refused(name, how, path, value, tmp_path: Path) -> None:
    document = copy.deepcopy(_load(REPO / name))
    validate_instance_yaml(copy.deepcopy(document), tmp_path)  # the original passes
    (_rename if how == "rename" else _set)(document, path, value)
    # AttributeError: the class named does not exist (Dagster's rehydrate fails the same way).
    with pytest.raises((DagsterInvalidConfigError, AssertionError, AttributeError)):
        validate_instance_yaml(document, tmp_path)


def test_missing_env_variable_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_COMPUTE_LOGS_BUCKET")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_COMPUTE_LOGS_BUCKET"):
        validate_instance_yaml(_load(REPO / "deploy" / "dagster.postgres.yaml"), tmp_path)


@pytest.mark.parametrize("path", WORKSPACE_PATHS, ids=lambda p: str(p.relative_to(REPO)))
def test_workspace_yaml_is_valid(path: Path) -> None:
    result = process_workspace_config(_load(path))
    assert result.success, result.errors


def test_every_way_to_start_the_ui_names_the_location_alike() -> None:
    """The UI lists a job's runs under the location that launched them: the demo's workspace,
    plain ``dagster dev`` (pyproject) and production all call it ``flow_assets``."""
    (local,) = _load(REPO / "workspace.yaml")["load_from"]
    (production,) = _load(REPO / "deploy" / "workspace.yaml")["load_from"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    names = {
        local["python_module"]["location_name"],
        production["grpc_server"]["location_name"],
        pyproject["code_location_name"],
    }
    assert names == {"flow_assets"}


def test_production_workspace_loads_the_code_server_over_grpc() -> None:
    result = process_workspace_config(_load(REPO / "deploy" / "workspace.yaml"))
    assert result.success, result.errors
    (target,) = result.value["load_from"]
    assert target["grpc_server"] == {
        "host": "flow-assets-code",
        "port": 4000,
        "location_name": "flow_assets",
    }


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("grpc_server", "port"), "prot"),
        (("grpc_server", "host"), "hots"),
        (("grpc_server",), "grpc_sever"),
    ],
)
def test_misspelt_workspace_yaml_is_refused(path, value) -> None:
    document = _load(REPO / "deploy" / "workspace.yaml")
    _rename(document["load_from"][0], path, value)
    assert not process_workspace_config(document).success


def test_dockerfile_runs_the_code_server_of_this_package() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install" in text
    assert "pyproject.toml" in text
    assert '"-m", "flow_assets.definitions"' in text
    assert '"-p", "4000"' in text
