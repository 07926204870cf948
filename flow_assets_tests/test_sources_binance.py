"""Binance USD-M archive: layouts, formats, month planning and row policies, over a real socket."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.sources import (
    ArchiveDefectError,
    MissingFileError,
    NotPublishedError,
    fetch_month,
    probe_month,
)
from flow_assets.sources.mirror import sample_trades, utc, write_checksum, write_zip
from flow_assets.venues.binance_common import read_binance_csv
from flow_assets.venues.binance_futures import write_binance
from flow_assets_tests.archive_fixtures import (
    Mirror,
    assert_same_trades,
    trades_between,
)

BTC = "perpetual-BTC-USDT:USDT"
JAN = date(2024, 1, 1)
LATER = date(2024, 6, 1)
DAILY = "data/futures/um/daily/aggTrades/BTCUSDT"
MONTHLY = "data/futures/um/monthly/aggTrades/BTCUSDT"


@pytest.fixture
def trades() -> pl.DataFrame:
    """Trades from mid-December 2023 to mid-February 2024 (so months have neighbours)."""
    return sample_trades(utc(2023, 12, 20), utc(2024, 2, 10), 600, seed=1)


@pytest.mark.parametrize(("header", "micros"), [(True, False), (False, False), (False, True)])
def test_monthly_round_trip(
    trades: pl.DataFrame,
    mirror: Mirror,
    header: bool,
    micros: bool,
) -> None:
    write_binance(trades, mirror.root, BTC, header=header, micros=micros)
    result = fetch_month(
        "binance-futures", BTC, JAN, base_url=mirror.url, session=mirror.session, today=LATER
    )
    expected = trades_between(trades, utc(2024, 1, 1), utc(2024, 2, 1))
    assert_same_trades(result.trades, expected)
    assert result.trades.schema == pl.Schema(TRADE_SCHEMA)
    report = result.report
    assert [f.name for f in report.files] == ["BTCUSDT-aggTrades-2024-01.zip"]
    assert report.files[0].checksum_verified
    assert report.rows_read == expected.height
    assert report.rows_dropped == {}
    assert report.complete
    assert report.end == utc(2024, 2, 1)
    assert len(report.days_covered) == 31
    assert report.first_trade == expected["exchange_ts"].min()
    assert report.last_trade == expected["exchange_ts"].max()
    meta = report.to_metadata()
    assert meta["files"][0]["sha256"] == report.files[0].sha256
    assert meta["end"] == "2024-02-01T00:00:00+00:00"


def test_daily_files_when_monthly_is_missing(
    trades: pl.DataFrame,
    mirror: Mirror,
) -> None:
    write_binance(trades, mirror.root, BTC, monthly=False, daily=True, header=False, micros=True)
    jan = trades_between(trades, utc(2024, 1, 1), utc(2024, 2, 1))
    # every January day must exist as a file: add empty ones for days without trades
    for day in range(1, 32):
        name = f"BTCUSDT-aggTrades-2024-01-{day:02d}"
        path = mirror.root / DAILY / f"{name}.zip"
        if not path.exists():
            write_checksum(write_zip(path, f"{name}.csv", b""))
    result = fetch_month(
        "binance-futures", BTC, JAN, base_url=mirror.url, session=mirror.session, today=LATER
    )
    assert_same_trades(result.trades, jan)
    assert len(result.report.files) == 31
    assert result.report.complete
    assert result.report.days_covered[0] == date(2024, 1, 1)


def test_running_month_uses_daily_files_up_to_yesterday(
    trades: pl.DataFrame,
    mirror: Mirror,
) -> None:
    feb = trades_between(trades, utc(2024, 2, 1), utc(2024, 2, 6))
    write_binance(feb, mirror.root, BTC, monthly=False, daily=True)
    result = fetch_month(
        "binance-futures",
        BTC,
        date(2024, 2, 1),
        base_url=mirror.url,
        session=mirror.session,
        today=date(2024, 2, 6),
    )
    assert_same_trades(result.trades, feb)
    assert not result.report.complete
    assert result.report.end == utc(2024, 2, 6)
    assert result.report.days_covered == [date(2024, 2, d) for d in range(1, 6)]
    assert not any("monthly" in path for _, path, _ in mirror.server.log)


def test_missing_day_inside_published_range(
    trades: pl.DataFrame,
    mirror: Mirror,
) -> None:
    feb = trades_between(trades, utc(2024, 2, 1), utc(2024, 2, 6))
    write_binance(feb, mirror.root, BTC, monthly=False, daily=True)
    gone = mirror.root / DAILY / "BTCUSDT-aggTrades-2024-02-03.zip"
    gone.unlink()
    Path(f"{gone}.CHECKSUM").unlink()
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": date(2024, 2, 6)}
    with pytest.raises(MissingFileError, match="2024-02-03"):
        fetch_month("binance-futures", BTC, date(2024, 2, 1), **kwargs)
    result = fetch_month(
        "binance-futures", BTC, date(2024, 2, 1), allow_missing_days=True, **kwargs
    )
    assert result.report.days_missing == [date(2024, 2, 3)]
    assert not result.report.complete
    assert_same_trades(result.trades, feb.filter(pl.col("exchange_ts").dt.day() != 3))


def test_not_published_yet(
    mirror: Mirror,
) -> None:
    kwargs = {"base_url": mirror.url, "session": mirror.session}
    with pytest.raises(NotPublishedError):
        fetch_month("binance-futures", BTC, date(2024, 3, 1), today=date(2024, 3, 1), **kwargs)
    with pytest.raises(NotPublishedError):  # the month just ended, nothing out yet
        fetch_month("binance-futures", BTC, JAN, today=date(2024, 2, 1), **kwargs)
    assert probe_month("binance-futures", BTC, JAN, today=date(2024, 2, 1), **kwargs) is None


def test_probe_changes_when_a_file_is_reissued(
    trades: pl.DataFrame,
    mirror: Mirror,
) -> None:
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    write_binance(trades, mirror.root, BTC)
    first = probe_month("binance-futures", BTC, JAN, **kwargs)
    assert first is not None
    assert first.startswith("monthly:")
    assert probe_month("binance-futures", BTC, JAN, **kwargs) == first
    write_binance(trades.head(300), mirror.root, BTC)
    assert probe_month("binance-futures", BTC, JAN, **kwargs) != first
    assert all(path.endswith(".CHECKSUM") for _, path, _ in mirror.server.log)


def test_env_var_sets_the_base_url(
    trades: pl.DataFrame,
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_binance(trades, mirror.root, BTC)
    monkeypatch.setenv("FLOW_ASSETS_BINANCE_URL", mirror.url + "/")
    result = fetch_month("binance-futures", BTC, JAN, session=mirror.session, today=LATER)
    assert result.report.files[0].url.startswith(mirror.url + "/data/futures/um/monthly")


def test_trades_dataset_round_trip_and_one_sided_defect(
    trades: pl.DataFrame,
    mirror: Mirror,
) -> None:
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    write_binance(trades, mirror.root, BTC, dataset="trades", header=False)
    result = fetch_month("binance-futures", BTC, JAN, dataset="trades", **kwargs)
    assert_same_trades(result.trades, trades_between(trades, utc(2024, 1, 1), utc(2024, 2, 1)))
    defective = trades.with_columns(is_taker_buy=pl.lit(False))  # is_buyer_maker true everywhere
    write_binance(defective, mirror.root, BTC, dataset="trades")
    with pytest.raises(ArchiveDefectError, match="is_buyer_maker true on every row"):
        fetch_month("binance-futures", BTC, JAN, dataset="trades", **kwargs)


def test_row_policies(
    mirror: Mirror,
) -> None:
    """Zero quantities dropped, duplicate ids kept once, out-of-order rows sorted; all counted."""
    ms = int(utc(2024, 1, 5).timestamp() * 1000)
    rows = [
        f"3,100.5,0.2,3,3,{ms + 30},false",
        f"1,100.0,0.1,1,1,{ms + 10},true",
        f"2,100.1,0.0,2,2,{ms + 20},false",  # zero quantity
        f"4,100.2,0.3,4,4,{ms + 40},true",
        f"4,100.2,0.3,4,4,{ms + 40},true",  # duplicate id
        f"5,100.3,0.4,5,5,{ms + 40},false",
        f"6,99.0,1.0,6,6,{ms + 35 * 86_400_000},false",  # next month
    ]
    header = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
    name = "BTCUSDT-aggTrades-2024-01"
    path = mirror.root / MONTHLY / f"{name}.zip"
    write_checksum(write_zip(path, f"{name}.csv", "\n".join([header, *rows, ""]).encode()))
    result = fetch_month(
        "binance-futures", BTC, JAN, base_url=mirror.url, session=mirror.session, today=LATER
    )
    report = result.report
    assert result.trades["trade_id"].to_list() == [1, 3, 4, 5]
    assert result.trades["is_taker_buy"].to_list() == [False, True, False, True]
    assert result.trades["notional"].to_list() == pytest.approx([10.0, 20.1, 30.06, 40.12])
    assert report.rows_read == 7
    assert report.rows_dropped == {"zero_quantity": 1, "duplicate_id": 1, "outside_period": 1}
    assert report.rows_reordered == 1
    assert len(report.defects) == 3
    assert json.loads(json.dumps(report.to_metadata()))["rows_dropped"] == report.rows_dropped


def test_spot_style_rows_and_capitalised_booleans(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "7,10.5,2,7,7,1767225600039409,True,True\n8,10.0,1,8,8,1767225600272386,False,True\n"
    )
    trades = read_binance_csv(path)
    assert trades["is_taker_buy"].to_list() == [False, True]
    assert trades["exchange_ts"][0] == datetime.fromisoformat("2026-01-01T00:00:00.039409+00:00")
    assert trades["notional"].to_list() == [21.0, 10.0]


def test_contract_values_do_not_apply_to_usdm_quantities(
    trades: pl.DataFrame, mirror: Mirror
) -> None:
    write_binance(trades, mirror.root, BTC)
    values = pl.DataFrame({"valid_from": [None], "valid_to": [None], "ct_val": [0.01]})
    with pytest.raises(ValueError, match="not contracts"):
        fetch_month(
            "binance-futures",
            BTC,
            JAN,
            base_url=mirror.url,
            session=mirror.session,
            today=LATER,
            contract_values=values,
        )
