"""Tardis-style CSVs: exchange and arrival times, gzip or plain, local or over HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from flow_assets.sources import CorruptArchiveError, MalformedCsvError
from flow_assets.sources.mirror import sample_trades, utc, write_tardis
from flow_assets.sources.tardis import read_tardis_csv
from flow_assets_tests.archive_fixtures import (
    Mirror,
    assert_same_trades,
)

HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"


@pytest.fixture
def trades() -> pl.DataFrame:
    base = sample_trades(utc(2024, 3, 1), utc(2024, 3, 2), 300, seed=7)
    latency = (pl.col("trade_id") * 997 % 250_000).cast(pl.Duration("us"))
    return base.with_columns(arrival_ts=pl.col("exchange_ts") + latency)


@pytest.mark.parametrize("name", ["trades.csv", "trades.csv.gz"])
def test_round_trip(tmp_path: Path, trades: pl.DataFrame, name: str) -> None:
    path = write_tardis(trades, tmp_path / name, "binance-futures", "BTCUSDT")
    result = read_tardis_csv(path)
    assert_same_trades(result.trades, trades)
    assert result.trades["arrival_ts"].null_count() == 0
    report = result.report
    assert (report.exchange, report.symbol, report.month) == ("binance-futures", "BTCUSDT", None)
    assert report.rows_read == 300
    assert report.files[0].size == path.stat().st_size
    assert report.end == trades["exchange_ts"].max() + timedelta(microseconds=1)


def test_over_http(mirror: Mirror, trades: pl.DataFrame) -> None:
    write_tardis(trades, mirror.root / "tardis/day.csv.gz", "binance-futures", "BTCUSDT")
    result = read_tardis_csv(f"{mirror.url}/tardis/day.csv.gz", session=mirror.session)
    assert_same_trades(result.trades, trades)
    assert result.report.files[0].url.endswith("/tardis/day.csv.gz")


def test_unordered_duplicate_and_zero_rows(tmp_path: Path) -> None:
    rows = [
        "binance-futures,BTCUSDT,1582329602200000,1582329602300000,3,sell,9682,0.1",
        "binance-futures,BTCUSDT,1582329602100000,1582329602300000,1,buy,9681,0.2",
        "binance-futures,BTCUSDT,1582329602100000,1582329602300000,1,buy,9681,0.2",
        "binance-futures,BTCUSDT,1582329602150000,1582329602300000,2,buy,9681,0",
    ]
    path = tmp_path / "t.csv"
    path.write_text("\n".join([HEADER, *rows, ""]))
    result = read_tardis_csv(path)
    assert result.trades["trade_id"].to_list() == [1, 3]
    assert result.trades["is_taker_buy"].to_list() == [True, False]
    assert result.report.rows_dropped == {"duplicate_id": 1, "zero_quantity": 1}
    assert result.report.rows_reordered == 1


def test_errors(tmp_path: Path) -> None:
    bad_gzip = tmp_path / "t.csv.gz"
    bad_gzip.write_bytes(b"\x1f\x8b\x08\x00 broken")
    with pytest.raises(CorruptArchiveError):
        read_tardis_csv(bad_gzip)
    wrong_header = tmp_path / "h.csv"
    wrong_header.write_text("a,b,c,d,e,f,g,h\n")
    with pytest.raises(MalformedCsvError, match="line 1"):
        read_tardis_csv(wrong_header)
    bad_side = tmp_path / "s.csv"
    bad_side.write_text(f"{HEADER}\nx,Y,1582329602100000,1582329602300000,1,hold,9681,0.2\n")
    with pytest.raises(MalformedCsvError, match=r"s\.csv, line 2"):
        read_tardis_csv(bad_side)
