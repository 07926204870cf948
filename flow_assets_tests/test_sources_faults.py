"""Fault injection: each fault ends in the documented error or a correct retry."""

from __future__ import annotations

import time
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from flow_assets.sources import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DownloadError,
    MalformedCsvError,
    MissingFileError,
    SourceError,
    fetch_month,
)
from flow_assets.sources.http import make_session
from flow_assets.sources.mirror import (
    ArchiveServer,
    Fault,
    sample_trades,
    utc,
    write_checksum,
    write_zip,
)
from flow_assets.venues.binance_futures import write_binance
from flow_assets.venues.okx_perps import write_okx
from flow_assets_tests.archive_fixtures import (
    Mirror,
    assert_same_trades,
)

BTC = "perpetual-BTC-USDT:USDT"
JAN = date(2024, 1, 1)
LATER = date(2024, 6, 1)
ZIP = "data/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01.zip"
CHECKSUM = ZIP + ".CHECKSUM"
HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"


@pytest.fixture
def january() -> pl.DataFrame:
    return sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 400, seed=5)


@pytest.fixture
def served(mirror: Mirror, january: pl.DataFrame) -> Mirror:
    write_binance(january, mirror.root, BTC)
    return mirror


def fetch(mirror: Mirror) -> pl.DataFrame:
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    return fetch_month("binance-futures", BTC, JAN, **kwargs).trades


def statuses(mirror: Mirror, path: str) -> list[int]:
    return [status for method, _, status in mirror.server.requests_for(path) if method == "GET"]


def test_500_then_200_retries(served: Mirror, january: pl.DataFrame) -> None:
    served.server.inject(ZIP, Fault(status=500), Fault(status=503))
    assert_same_trades(fetch(served), january)
    assert statuses(served, ZIP) == [500, 503, 200]


def test_429_honours_a_capped_retry_after(served: Mirror, january: pl.DataFrame) -> None:
    served.server.inject(CHECKSUM, Fault(status=429, retry_after=30))
    started = time.monotonic()
    assert_same_trades(fetch(served), january)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5  # waited the capped Retry-After (0.2 s), not 30 s
    assert statuses(served, CHECKSUM) == [429, 200]


def test_persistent_5xx_is_a_download_error(served: Mirror) -> None:
    served.server.inject(ZIP, *[Fault(status=502)] * 10)
    with pytest.raises(DownloadError, match="502"):
        fetch(served)


def test_truncated_body_is_retried(served: Mirror, january: pl.DataFrame) -> None:
    served.server.inject(ZIP, Fault(truncate=100))
    assert_same_trades(fetch(served), january)


def test_always_truncated_is_an_error(served: Mirror) -> None:
    served.server.inject(ZIP, *[Fault(truncate=100)] * 10)
    with pytest.raises(DownloadError, match=r"truncated|giving up"):
        fetch(served)


def test_wrong_bytes_once_then_a_fresh_retry(served: Mirror, january: pl.DataFrame) -> None:
    served.server.inject(ZIP, Fault(body=b"PK\x03\x04 not the file"))
    assert_same_trades(fetch(served), january)
    assert statuses(served, ZIP) == [200, 200]
    assert statuses(served, CHECKSUM) == [200, 200]


def test_wrong_checksum_is_a_mismatch_after_one_retry(served: Mirror) -> None:
    (served.root / CHECKSUM).write_text(f"{'0' * 64}  BTCUSDT-aggTrades-2024-01.zip\n")
    with pytest.raises(ChecksumMismatchError, match="also after a fresh retry"):
        fetch(served)
    assert len(statuses(served, ZIP)) == 2


def test_corrupt_zip_with_a_matching_checksum(served: Mirror) -> None:
    path = served.root / ZIP
    data = bytearray(path.read_bytes())
    data[60:80] = b"\x00" * 20  # inside the deflated member
    path.write_bytes(bytes(data))
    write_checksum(path)
    with pytest.raises(CorruptArchiveError, match=r"BTCUSDT-aggTrades-2024-01\.zip"):
        fetch(served)
    path.write_bytes(b"this is not a zip at all")
    write_checksum(path)
    with pytest.raises(CorruptArchiveError):
        fetch(served)


def write_csv(mirror: Mirror, lines: list[str]) -> None:
    name = "BTCUSDT-aggTrades-2024-01"
    path = write_zip(mirror.root / ZIP, f"{name}.csv", "\n".join([*lines, ""]).encode())
    write_checksum(path)


ROW = "1,100.0,0.5,1,1,1704067200000,false"


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        ([HEADER, ROW, "garbage", ROW.replace("1,", "2,", 1)], 3),
        ([ROW, ROW.replace("false", "maybe")], 2),
        ([HEADER, ROW, "2,abc,0.5,2,2,1704067200001,false"], 3),
        ([ROW, "2,100.0,0.5,2,2,1704067200001,false,true,extra,fields"], 2),
        ([ROW, "2,-5,0.5,2,2,1704067200001,false"], 2),
        (["1,2,3"], 1),
    ],
)
def test_malformed_csv_names_file_and_line(mirror: Mirror, lines: list[str], line: int) -> None:
    write_csv(mirror, lines)
    with pytest.raises(MalformedCsvError) as caught:
        fetch(mirror)
    assert caught.value.line == line
    assert caught.value.file == "BTCUSDT-aggTrades-2024-01.zip"
    assert f"BTCUSDT-aggTrades-2024-01.zip, line {line}" in str(caught.value)


def test_zip_gone_although_checksum_published(served: Mirror) -> None:
    (served.root / ZIP).unlink()
    with pytest.raises(MissingFileError, match="gone"):
        fetch(served)


def test_connection_refused_is_a_download_error(tmp_path: Path) -> None:
    with ArchiveServer(tmp_path) as server:
        url = server.url
    session = make_session(retries=2, backoff=0.01, timeout=(0.5, 0.5))
    with pytest.raises(DownloadError):
        fetch_month("binance-futures", BTC, JAN, base_url=url, session=session, today=LATER)


def test_okx_faults(mirror: Mirror) -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 1, 2), 50, seed=6)
    trades = trades.with_columns(base_qty=pl.lit(0.02)).with_columns(
        notional=pl.col("price") * 0.02
    )
    days = (*[date(2024, 1, d) for d in range(1, 32)], date(2024, 2, 1))
    write_okx(trades, mirror.root, BTC, empty_days=days)
    base = "cdn/okex/traderecords/trades/daily"
    mirror.server.inject(f"{base}/20240101/BTC-USDT-SWAP-trades-2024-01-01.zip", Fault(status=500))
    mirror.server.inject(f"{base}/20240102/BTC-USDT-SWAP-trades-2024-01-02.zip", Fault(truncate=10))
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    result = fetch_month("okx-perps", BTC, JAN, **kwargs)
    assert_same_trades(result.trades, trades)
    garbage = mirror.root / f"{base}/20240103/BTC-USDT-SWAP-trades-2024-01-03.zip"
    with zipfile.ZipFile(garbage, "w") as archive:
        archive.writestr("x.csv", "instrument_name,trade_id,side,price,size,created_time\nnope\n")
    with pytest.raises(MalformedCsvError, match="line 2"):
        fetch_month("okx-perps", BTC, JAN, **kwargs)


def test_every_error_is_a_source_error() -> None:
    for error in (ChecksumMismatchError, CorruptArchiveError, DownloadError, MissingFileError):
        assert issubclass(error, SourceError)


def test_read_timeout_is_retried(served: Mirror, january: pl.DataFrame) -> None:
    served.session.timeout = (1.0, 0.2)  # type: ignore[attr-defined]
    served.server.inject(CHECKSUM, Fault(delay=0.5))
    started = time.monotonic()
    assert_same_trades(fetch(served), january)
    assert time.monotonic() - started >= 0.2  # the first attempt timed out, the retry answered
