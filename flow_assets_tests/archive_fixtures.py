"""Pytest fixtures for the archive sources: a local mirror served over a real socket.

The fixtures are registered for every test module by ``conftest.py``: request them by name
(``mirror`` bundles the other three); import only the helpers (``Mirror``, ``trades_between``...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.metrics.schema import FILL_ID_COLUMNS
from flow_assets.sources.http import make_session
from flow_assets.sources.mirror import ArchiveServer

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture
def mirror_root(tmp_path: Path) -> Path:
    """An empty directory to write archive files into (the server's root)."""
    root = tmp_path / "mirror"
    root.mkdir()
    return root


@pytest.fixture
def archive_server(mirror_root: Path) -> Iterator[ArchiveServer]:
    """An :class:`ArchiveServer` serving ``mirror_root`` on 127.0.0.1."""
    with ArchiveServer(mirror_root) as server:
        yield server


@pytest.fixture
def fast_session() -> Iterator[requests.Session]:
    """A retrying session with millisecond backoff and Retry-After capped at 0.2 s."""
    session = make_session(
        retries=3, backoff=0.01, backoff_max=0.05, max_retry_after=0.2, timeout=(2.0, 5.0)
    )
    yield session
    session.close()


def trades_between(trades: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The trades whose exchange time is in ``[start, end)``."""
    return trades.filter(pl.col("exchange_ts").is_between(start, end, closed="left"))


def assert_same_trades(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Trades equal row for row, floats to 1e-12 relative (CSV text round trips). A null fill
    id and the trade's own id say the same (one fill): an archive that writes fill ids (Binance
    aggTrades) gives the trade id for a sample trade without them."""
    expected = expected.sort("exchange_ts", "trade_id")
    assert got.schema == expected.schema
    one_fill = [pl.col(c).fill_null(pl.col("trade_id")) for c in FILL_ID_COLUMNS]
    got, expected = got.with_columns(one_fill), expected.with_columns(one_fill)
    assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-12, abs_tol=0.0)


@dataclass
class Mirror:
    """A served mirror: write files under ``root``, fetch from ``url`` with ``session``."""

    root: Path
    server: ArchiveServer
    session: requests.Session

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def mirror(
    mirror_root: Path, archive_server: ArchiveServer, fast_session: requests.Session
) -> Mirror:
    """The mirror directory, its server and a fast-retrying session together."""
    return Mirror(mirror_root, archive_server, fast_session)
