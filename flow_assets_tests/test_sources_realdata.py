"""The parsers on real archive files from ``../shared/realdata`` (see its PROVENANCE.md)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.sources import http
from flow_assets.sources.mirror import ArchiveServer
from flow_assets.sources.tardis import read_tardis_csv
from flow_assets.venues.binance_common import read_binance_csv

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"

pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real data folder {REAL} is absent (only on the shared machine)"
)

CM_ZIP = REAL / "binance_cm_aggtrades" / "BTCUSD_PERP-aggTrades-2026-05-08.zip"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_tardis_sample() -> None:
    result = read_tardis_csv(REAL / "tardis" / "tardis_trades.csv")
    trades = result.trades
    assert trades.schema == pl.Schema(TRADE_SCHEMA)
    assert trades.height == 9_999
    assert trades["trade_id"].to_list() == list(range(42_377_944, 42_387_943))
    assert trades["exchange_ts"][0] == at("2020-02-22T00:00:02.111")
    assert trades["exchange_ts"][-1] == at("2020-02-22T02:05:47.728")
    latency = (trades["arrival_ts"] - trades["exchange_ts"]).dt.total_milliseconds().median()
    assert 100 < latency < 160  # PROVENANCE: median 128 ms
    assert trades["is_taker_buy"][0]  # first row: side buy
    assert result.report.rows_dropped == {}
    assert result.report.rows_reordered == 0


def test_binance_coinm_daily_zip_over_http(tmp_path: Path) -> None:
    """The real zip and CHECKSUM served as an archive: sha256 verified, 105,280 rows read."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copy(CM_ZIP, folder)
    shutil.copy(f"{CM_ZIP}.CHECKSUM", folder)
    session = http.make_session(retries=1, backoff=0.01)
    with ArchiveServer(folder) as server:
        url = f"{server.url}/{CM_ZIP.name}"
        got = http.download_verified(session, url, tmp_path / CM_ZIP.name, url + ".CHECKSUM")
    assert got.sha256 == hashlib.sha256(CM_ZIP.read_bytes()).hexdigest()
    csv_path = http.unzip_single(got.path, tmp_path)
    trades = read_binance_csv(csv_path, inverse_contract_value=100.0)
    assert trades.height == 105_280
    assert trades["exchange_ts"][0] == at("2026-05-08T00:00:00.020")
    assert trades["exchange_ts"].max() == at("2026-05-08T23:59:59.655")
    first = trades.row(0, named=True)
    assert first["trade_id"] == 480_537_903
    assert first["price"] == 79_972.8
    assert first["notional"] == 54_200.0  # 542 contracts of 100 USD
    assert first["base_qty"] == pytest.approx(54_200.0 / 79_972.8, rel=1e-15)
    assert first["is_taker_buy"]  # is_buyer_maker false
    ids = trades["trade_id"]
    assert (ids.diff().drop_nulls() == 1).all()  # contiguous agg ids


def test_binance_spot_aggtrades_no_header_micros() -> None:
    """8 columns, µs, True/False: the first minute matches the published kline figures."""
    path = REAL / "binance_spot_aggtrades" / "BTCUSDT-aggTrades-2026-01-01.csv"
    trades = read_binance_csv(path)
    assert trades.height == 5_000
    assert trades["exchange_ts"][0] == at("2026-01-01T00:00:00.039409")
    assert not trades["is_taker_buy"][0]  # is_buyer_maker True
    minute = trades.filter(pl.col("exchange_ts") < at("2026-01-01T00:01:00"))
    assert minute.height == 487  # aggregated taker trades
    raw = pl.read_csv(path, has_header=False, n_rows=minute.height)  # first, last trade id: 3, 4
    assert (raw["column_4"] - raw["column_3"] + 1).sum() == 1_193  # the kline's trade count
    assert minute["base_qty"].sum() == pytest.approx(4.08049, abs=1e-9)
    assert minute["notional"].sum() == pytest.approx(357_625.776862, abs=1e-6)
    prices = minute["price"]
    assert (prices[0], prices.max(), prices.min(), prices[-1]) == (
        87_648.21,
        87_648.22,
        87_632.74,
        87_648.00,
    )
