"""Test helpers: a real S3-compatible server (moto, over a socket) and a bar-frame builder.

The fixtures ``s3_server`` and ``s3_env`` are registered for every test module by
``conftest.py``: request them by name; import only the helpers (``month_bars``, ``moto_client``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import boto3
import polars as pl
import pytest
from moto.server import ThreadedMotoServer

from flow_assets.metrics.schema import BAR_SCHEMA, FLOW_FIELDS

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def moto_client(endpoint: str) -> Any:
    """A boto3 S3 client for the moto server at ``endpoint``, configured without the environment."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL (``http://127.0.0.1:<port>``) of a moto S3 server running for the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_server: str) -> Iterator[str]:
    """A fresh bucket on the moto server, with AWS_* variables pointing at it.

    Yields the store URL ``s3://<bucket>/<prefix>``.
    """
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ALLOW_HTTP": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FLOW_ASSETS_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    client = moto_client(s3_server)
    client.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/flow-assets"
    listing = client.list_objects_v2(Bucket=bucket)
    for obj in listing.get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def month_start(month: date) -> datetime:
    """Midnight UTC (naive wall clock) of the first day of ``month``."""
    return datetime(month.year, month.month, 1)


def next_month(month: date) -> date:
    """First day of the calendar month after ``month``."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bars(month: date, interval: str = "1h", seed: float = 0.0) -> pl.DataFrame:
    """A dense month of BAR_SCHEMA-typed bars: every bar of the calendar month (UTC).

    Values are simple: counts are the bar index, volumes ``seed + index / 2``; ratio-like fields
    are null on every 10th bar, like bars without trades on that side.
    """
    time = pl.datetime_range(
        month_start(month),
        month_start(next_month(month)),
        interval=interval,
        closed="left",
        time_unit="us",
        eager=True,
    ).alias("time")
    frame = pl.DataFrame({"time": time}).with_row_index("i")
    index = pl.col("i").cast(pl.Int64)
    columns = []
    for name in FLOW_FIELDS:
        dtype = BAR_SCHEMA[name]
        if dtype == pl.Int64:
            expr = index
        elif "ratio" in name or "percentage" in name or name in {"flow_entropy"}:
            expr = pl.when(index % 10 == 0).then(None).otherwise(0.5).cast(pl.Float64)
        else:
            expr = (pl.lit(seed) + index.cast(pl.Float64) / 2).cast(pl.Float64)
        columns.append(expr.alias(name))
    return frame.with_columns(columns).select(
        [pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items()]
    )
