"""Property-based fuzz of the served OpenAPI document (schemathesis) against a real server.

Every operation gets valid and invalid inputs (positive and negative generation): no response may
be a 5xx, use an undocumented status, content type or header, or break its documented schema,
and invalid input must be refused with a 4xx. Bounded to a few dozen examples per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flow_assets.api.app import create_app
from flow_assets.api.server import ServerThread
from flow_assets.store import open_store
from flow_assets_tests.test_api import fill, make_keys, settings_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server over a filled store without effective rate limits: (origin, prime key)."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    store = open_store(str(root / "store"))
    fill(store)
    keys = make_keys(str(root / "keys"))
    config = settings_for(store.url, str(root / "keys"), rate_per_second=1e6, burst=10**6)
    with ServerThread(create_app(config)) as server:
        yield server.url, keys["pat"]


def _document() -> dict:
    """The OpenAPI document the server serves (test_openapi_document_is_served compares)."""
    config = settings_for("/nonexistent", "/nonexistent/keys.json")
    return create_app(config).openapi()


# Built when the module is imported (parametrize needs the operations at collection time;
# schemathesis.pytest.from_fixture does not work with pytest 9's nodes).
schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    # Unknown query parameters are ignored, not refused (documented): a newer client sending
    # one more optional parameter must keep working. So "extra parameter" is not invalid input.
    allow_extra_parameters=False,
)


def test_the_fuzzed_document_is_the_served_one(fuzzed: tuple[str, str]) -> None:
    origin, _ = fuzzed
    served = requests.get(f"{origin}/api/v1/openapi.json", timeout=10).json()
    assert served == _document()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_fuzz(case: schemathesis.Case, fuzzed: tuple[str, str]) -> None:
    origin, key = fuzzed
    case.call_and_validate(base_url=origin, headers={"X-API-KEY": key}, checks=CHECKS)
