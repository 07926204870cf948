"""Reading bars back: month concatenation, day-bound trimming, errors, and compatibility
with the public ``aperiodic`` client's own read path."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aperiodic._backends import _polars as aperiodic_polars
from aperiodic.endpoints import utils as aperiodic_utils
from polars.testing import assert_frame_equal

from flow_assets.client import get_metrics
from flow_assets.metrics import flow_bars
from flow_assets.metrics.schema import BAR_SCHEMA
from flow_assets.publish import Staging, flow_file, read_manifest
from flow_assets.sources.mirror import sample_trades
from flow_assets.store import MissingObjectError, ObjectStore, StoreError, open_store
from flow_assets_tests.s3_fixtures import month_bars

EXCHANGE = "binance-futures"
SYMBOL = "perpetual-BTC-USDT:USDT"
JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


def publish_month(
    store: ObjectStore,
    month: date,
    files: dict[str, pl.DataFrame],
    *,
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
) -> None:
    """Publish one flow month holding ``files`` (name ``{timestamp}/{interval}`` -> bars)."""
    staging = Staging(store, "flow", exchange, symbol, month)
    with tempfile.TemporaryDirectory() as workdir:
        for name, frame in files.items():
            staging.write_parquet(name, frame, Path(workdir))
    staging.commit({"complete": True, "covered_until": f"{month:%Y-%m}-28T00:00:00+00:00"})


def _published_key(store: ObjectStore, month: date, name: str) -> str:
    manifest = read_manifest(store, "flow", EXCHANGE, SYMBOL, month)
    assert manifest is not None
    return manifest.key_of(name)


def _publish(store: ObjectStore, months: list[date], interval: str = "1h") -> None:
    """Publish one dense month of bars per month; Feb values differ so the order is visible."""
    for n, month in enumerate(months):
        bars = month_bars(month, interval, seed=1000.0 * n)
        publish_month(store, month, {flow_file("exchange", interval): bars})


def _get(url: str, start: date, end: date, **kwargs: Any) -> pl.DataFrame:
    params: dict[str, Any] = {
        "exchange": EXCHANGE,
        "symbol": SYMBOL,
        "interval": "1h",
        "start_date": start,
        "end_date": end,
        "storage_url": url,
    }
    params.update(kwargs)
    return get_metrics("flow", **params)


@pytest.fixture
def local_url(tmp_path: Path) -> str:
    """A local store holding January and February 2026 of 1h bars."""
    url = str(tmp_path / "store")
    _publish(open_store(url), [JAN, FEB])
    return url


def test_concatenates_months_and_trims_at_day_bounds(local_url: str) -> None:
    result = _get(local_url, date(2026, 1, 31), date(2026, 2, 1))
    assert result.schema == pl.Schema(BAR_SCHEMA)
    assert result.height == 48
    assert result["time"][0] == datetime(2026, 1, 31, 0)
    assert result["time"][-1] == datetime(2026, 2, 1, 23)
    assert result["time"].is_sorted()
    assert result["time"].diff().drop_nulls().unique().to_list() == [timedelta(hours=1)]
    # January's rows come from January's file, February's from February's
    expected = pl.concat(
        [month_bars(JAN, "1h").tail(24), month_bars(FEB, "1h", seed=1000.0).head(24)]
    )
    assert_frame_equal(result, expected)


def test_single_day_and_whole_range(local_url: str) -> None:
    day = _get(local_url, date(2026, 2, 28), date(2026, 2, 28))
    assert day.height == 24
    assert day["time"].min() == datetime(2026, 2, 28)
    assert day["time"].max() == datetime(2026, 2, 28, 23)
    whole = _get(local_url, JAN, date(2026, 2, 28))
    assert whole.height == (31 + 28) * 24


def test_sorts_rows_of_an_unordered_file(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    bars = month_bars(JAN, "1d")
    publish_month(store, JAN, {flow_file("exchange", "1d"): bars.reverse()})
    result = _get(str(tmp_path), date(2026, 1, 2), date(2026, 1, 4), interval="1d")
    assert_frame_equal(result, bars.slice(1, 3))


def test_missing_month_names_the_months(local_url: str) -> None:
    with pytest.raises(
        MissingObjectError,
        match=r"binance-futures perpetual-BTC-USDT:USDT exchange/1h: month\(s\) not materialized "
        r"yet in .*store: 2026-03 \(nothing published\)$",
    ):
        _get(local_url, date(2026, 2, 27), date(2026, 3, 2))
    with pytest.raises(LookupError, match=r"2025-12 \(nothing published\), 2026-03 "):
        _get(local_url, date(2025, 12, 31), date(2026, 3, 1))


def test_a_month_without_that_file_is_not_materialized(local_url: str) -> None:
    """January is published with 1h bars only: its 1d and ``true`` bars do not exist."""
    with pytest.raises(MissingObjectError, match=r"2026-01 \(published without exchange/1d bars\)"):
        _get(local_url, JAN, JAN, interval="1d")
    with pytest.raises(MissingObjectError, match=r"2026-01 \(published without true/1h bars\)"):
        _get(local_url, JAN, JAN, timestamp="true")


def test_staged_files_are_invisible_until_committed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    staging = Staging(store, "flow", EXCHANGE, SYMBOL, JAN)
    staging.write_parquet(flow_file("exchange", "1d"), month_bars(JAN, "1d"), tmp_path)
    assert store.list_keys("flow/")  # the file is in the store ...
    with pytest.raises(MissingObjectError, match="2026-01 \\(nothing published\\)"):
        _get(str(tmp_path), JAN, JAN, interval="1d")  # ... but not published
    staging.commit({"complete": False, "covered_until": "2026-01-05T00:00:00+00:00"})
    assert _get(str(tmp_path), JAN, JAN, interval="1d").height == 1


def test_reads_bars_computed_from_trades(tmp_path: Path) -> None:
    """Bars of the engine (not only hand-made frames) round-trip through a published month."""
    start, stop = datetime(2026, 1, 1), datetime(2026, 2, 1)
    trades = sample_trades(start, stop, 2_000, seed=3)
    bars = flow_bars(trades, "4h", start, stop)
    store = open_store(str(tmp_path))
    publish_month(store, JAN, {flow_file("exchange", "4h"): bars})
    assert_frame_equal(_get(str(tmp_path), JAN, date(2026, 1, 31), interval="4h"), bars)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": "2h"}, "unknown interval '2h'; supported: 1s, 15s"),
        ({"timestamp": "arrival"}, "unknown timestamp 'arrival'; supported: exchange, true"),
        ({"exchange": "bybit"}, "unknown exchange 'bybit'; supported: binance-futures"),
        ({"symbol": "BTCUSDT"}, "invalid symbol 'BTCUSDT': expected an Atlas id"),
        ({"symbol": "perpetual-BTC-USDT:USDT/../x"}, "invalid symbol"),
        ({"start_date": "2026-01-01"}, "start_date must be a datetime.date"),
        ({"end_date": datetime(2026, 1, 2)}, "end_date must be a datetime.date"),
        ({"start_date": date(2026, 1, 3)}, "end_date 2026-01-02 is before start_date 2026-01-03"),
    ],
)
def test_request_errors(local_url: str, kwargs: dict[str, Any], message: str) -> None:
    params: dict[str, Any] = {"start_date": JAN, "end_date": date(2026, 1, 2)}
    params.update(kwargs)
    start, end = params.pop("start_date"), params.pop("end_date")
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        _get(local_url, start, end, **params)


def test_unknown_metric(local_url: str) -> None:
    with pytest.raises(ValueError, match="unknown metric 'vtwap'; supported: flow"):
        get_metrics(
            "vtwap",
            exchange=EXCHANGE,
            symbol=SYMBOL,
            interval="1h",
            start_date=JAN,
            end_date=JAN,
            storage_url=local_url,
        )


def test_accepts_dated_future_symbol(tmp_path: Path) -> None:
    with pytest.raises(MissingObjectError, match="future-BTC-USD:BTC-20260327 exchange/1h"):
        _get(str(tmp_path), JAN, JAN, symbol="future-BTC-USD:BTC-20260327")


def test_reads_from_s3_via_env(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(open_store(s3_env), [JAN, FEB])
    monkeypatch.setenv("FLOW_ASSETS_STORAGE_URL", s3_env)
    result = _get(None, date(2026, 1, 31), date(2026, 2, 1))  # type: ignore[arg-type]
    assert result.height == 48
    assert result["time"][0] == datetime(2026, 1, 31)


# --------------------------------------------------------------------------- compatibility


def test_public_client_read_path_matches(local_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve our monthly files to the real ``aperiodic`` read path and compare with ours."""
    store = open_store(local_url)
    start, end = date(2026, 1, 31), date(2026, 2, 1)

    keys = {m: _published_key(store, m, flow_file("exchange", "1h")) for m in (JAN, FEB)}

    async def fake_presigned(**kwargs: Any) -> dict[str, Any]:
        assert kwargs["bucket"] == "flow"
        # deliberately out of order: the client sorts by (year, month, day)
        return {"files": [{"url": keys[m], "year": m.year, "month": m.month} for m in (FEB, JAN)]}

    async def fake_download(
        url: str, headers: dict[str, str], *, year: int, month: int, semaphore: object
    ) -> tuple[int, int, bytes]:
        return year, month, store.get_bytes(url)

    monkeypatch.setattr(aperiodic_utils, "_fetch_presigned_urls", fake_presigned)
    monkeypatch.setattr(aperiodic_utils, "download_parquet_bytes", fake_download)
    theirs = asyncio.run(
        aperiodic_utils._get_files_from_bucket_async(
            api_key="test",
            bucket="flow",
            timestamp="exchange",
            interval="1h",
            exchange=EXCHANGE,
            symbol=SYMBOL,
            start_date=start,
            end_date=end,
            show_progress=False,
        )
    )
    ours = _get(local_url, start, end)
    assert_frame_equal(theirs, ours)


def test_filter_datetime_range_with_naive_bounds(local_url: str) -> None:
    """The public client filters ``time`` with naive datetimes: our column must be naive."""
    ours = _get(local_url, JAN, date(2026, 1, 1))
    kept = aperiodic_polars.filter_datetime_range(
        ours,
        datetime.combine(JAN, datetime.min.time()),
        datetime.combine(JAN, datetime.max.time()),
        column="time",
    )
    assert kept.height == 24
    # the check has teeth: a zone-aware column is rejected by the same call
    aware = ours.with_columns(pl.col("time").dt.replace_time_zone("UTC"))
    with pytest.raises(pl.exceptions.PolarsError):
        aperiodic_polars.filter_datetime_range(
            aware, datetime(2026, 1, 1), datetime(2026, 1, 1, 23, 59), column="time"
        )


def test_schema_drift_names_the_object(tmp_path: Path) -> None:
    """A file whose ``time`` carries a zone (what the public client cannot filter) is refused."""
    store = open_store(str(tmp_path))
    name = flow_file("exchange", "1d")
    aware = month_bars(JAN, "1d").with_columns(pl.col("time").dt.replace_time_zone("UTC"))
    publish_month(store, JAN, {name: aware})
    with pytest.raises(StoreError, match=r"2026-01/v.*/exchange/1d\.parquet.*wrong dtype.*'time'"):
        _get(str(tmp_path), JAN, JAN, interval="1d")
    publish_month(store, JAN, {name: month_bars(JAN, "1d").drop("flow_entropy")})
    with pytest.raises(StoreError, match=r"lacks the bar column\(s\) \['flow_entropy'\]"):
        _get(str(tmp_path), JAN, JAN, interval="1d")


def test_polars_reads_our_s3_objects_directly(s3_env: str) -> None:
    """Other readers (polars/object_store) find the same object with only the AWS_* variables."""
    store = open_store(s3_env)
    _publish(store, [JAN], interval="1d")
    uri = store.uri(_published_key(store, JAN, flow_file("exchange", "1d")))
    assert_frame_equal(pl.read_parquet(uri), month_bars(JAN, "1d"))
