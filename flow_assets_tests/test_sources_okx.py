"""OKX perpetual swaps archive: UTC+8 day files, contracts, spec history, over a real socket."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flow_assets.metrics.schema import CONTRACT_VALUES_SCHEMA, TRADE_SCHEMA
from flow_assets.sources import (
    MalformedCsvError,
    MissingContractValueError,
    MissingFileError,
    NotPublishedError,
    fetch_month,
    probe_month,
)
from flow_assets.sources.mirror import sample_trades, utc
from flow_assets.venues.okx_perps import OkxCsv, contract_values_from_specs, read_okx_csv, write_okx
from flow_assets_tests.archive_fixtures import (
    Mirror,
    assert_same_trades,
    trades_between,
)

LINEAR = "perpetual-BTC-USDT:USDT"
INVERSE = "perpetual-BTC-USD:BTC"
JAN = date(2024, 1, 1)
LATER = date(2024, 6, 1)
ALL_FILE_DAYS = tuple(date(2023, 12, 30) + timedelta(days=n) for n in range(36))


def linear_trades(start, stop, count: int, ct_val: float = 0.01, seed: int = 2) -> pl.DataFrame:
    """Trades whose sizes are whole contracts (as OKX publishes them)."""
    trades = sample_trades(start, stop, count, seed=seed)
    contracts = (pl.col("trade_id") % 7 + 1).cast(pl.Float64)
    return trades.with_columns(base_qty=contracts * ct_val).with_columns(
        notional=pl.col("price") * pl.col("base_qty")
    )


def csv_rows(mirror: Mirror, native: str, day: date) -> list[str]:
    name = f"{native}-trades-{day}"
    path = mirror.root / f"cdn/okex/traderecords/trades/daily/{day:%Y%m%d}/{name}.zip"
    with zipfile.ZipFile(path) as archive:
        return io.TextIOWrapper(archive.open(f"{name}.csv")).read().splitlines()


@pytest.mark.parametrize(("header", "extra_column"), [(True, False), (True, True), (False, False)])
def test_linear_month_from_utc8_day_files(mirror: Mirror, header: bool, extra_column: bool) -> None:
    trades = linear_trades(utc(2023, 12, 30), utc(2024, 2, 3), 700)
    write_okx(
        trades,
        mirror.root,
        LINEAR,
        header=header,
        extra_column=extra_column,
        empty_days=ALL_FILE_DAYS,
    )
    result = fetch_month(
        "okx-perps", LINEAR, JAN, base_url=mirror.url, session=mirror.session, today=LATER
    )
    expected = trades_between(trades, utc(2024, 1, 1), utc(2024, 2, 1))
    assert_same_trades(result.trades, expected)
    assert result.trades.schema == pl.Schema(TRADE_SCHEMA)
    report = result.report
    names = [f.name for f in report.files]
    assert names[0] == "BTC-USDT-SWAP-trades-2024-01-01.zip"
    assert names[-1] == "BTC-USDT-SWAP-trades-2024-02-01.zip"
    assert len(names) == 32
    edges = (
        trades_between(trades, utc(2023, 12, 31, 16), utc(2024, 1, 1)).height
        + trades_between(trades, utc(2024, 2, 1), utc(2024, 2, 1, 16)).height
    )
    assert report.rows_dropped == {"outside_period": edges}
    assert report.rows_read == expected.height + edges
    assert report.complete
    assert report.end == utc(2024, 2, 1)
    assert len(report.days_covered) == 31
    first = report.files[0]
    assert not first.checksum_verified
    on_disk = mirror.root / first.url.split("/", 3)[3]
    assert first.sha256 == hashlib.sha256(on_disk.read_bytes()).hexdigest()
    assert first.size == on_disk.stat().st_size


def test_file_dated_d_starts_at_16_utc_the_day_before(mirror: Mirror) -> None:
    trades = linear_trades(utc(2024, 1, 9, 15), utc(2024, 1, 9, 17), 50)
    write_okx(trades, mirror.root, LINEAR)
    before = trades.filter(pl.col("exchange_ts") < utc(2024, 1, 9, 16)).height
    assert len(csv_rows(mirror, "BTC-USDT-SWAP", date(2024, 1, 9))) == before + 1
    assert len(csv_rows(mirror, "BTC-USDT-SWAP", date(2024, 1, 10))) == 50 - before + 1


def test_inverse_contracts_are_usd(mirror: Mirror) -> None:
    trades = sample_trades(utc(2023, 12, 31), utc(2024, 2, 2), 300, seed=3)
    notional = (pl.col("trade_id") % 5 + 1).cast(pl.Float64) * 100.0  # whole 100 USD contracts
    trades = trades.with_columns(notional=notional).with_columns(
        base_qty=pl.col("notional") / pl.col("price")
    )
    write_okx(trades, mirror.root, INVERSE, empty_days=ALL_FILE_DAYS)
    result = fetch_month(
        "okx-perps", INVERSE, JAN, base_url=mirror.url, session=mirror.session, today=LATER
    )
    assert_same_trades(result.trades, trades_between(trades, utc(2024, 1, 1), utc(2024, 2, 1)))
    sizes = {row.split(",")[4] for row in csv_rows(mirror, "BTC-USD-SWAP", date(2024, 1, 5))[1:]}
    assert sizes <= {"1.0", "2.0", "3.0", "4.0", "5.0"}


def test_contract_value_change_inside_a_month(mirror: Mirror) -> None:
    """BTC-USDT-SWAP went from 0.0001 to 0.01 BTC per contract at 2020-03-20 08:00 UTC."""
    change = utc(2020, 3, 20, 8)
    trades = sample_trades(utc(2020, 3, 20, 7), utc(2020, 3, 20, 9), 40, seed=4)
    contracts = (pl.col("trade_id") % 3 + 1).cast(pl.Float64)
    ct_val = pl.when(pl.col("exchange_ts") < change).then(0.0001).otherwise(0.01)
    trades = trades.with_columns(base_qty=contracts * ct_val).with_columns(
        notional=pl.col("price") * pl.col("base_qty")
    )
    days = tuple(date(2020, 3, 1) + timedelta(days=n) for n in range(32))
    write_okx(trades, mirror.root, LINEAR, empty_days=days)
    result = fetch_month(
        "okx-perps",
        LINEAR,
        date(2020, 3, 1),
        base_url=mirror.url,
        session=mirror.session,
        today=LATER,
    )
    assert_same_trades(result.trades, trades)
    sizes = {row.split(",")[4] for row in csv_rows(mirror, "BTC-USDT-SWAP", date(2020, 3, 20))[1:]}
    assert sizes <= {"1.0", "2.0", "3.0"}


def test_running_month_ends_at_the_last_complete_utc_day(mirror: Mirror) -> None:
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 1, 9, 16), 300)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS[:11])  # files up to Jan 9
    result = fetch_month(
        "okx-perps",
        LINEAR,
        JAN,
        base_url=mirror.url,
        session=mirror.session,
        today=date(2024, 1, 10),
    )
    assert not result.report.complete
    assert result.report.end == utc(2024, 1, 9)
    assert_same_trades(result.trades, trades_between(trades, utc(2024, 1, 1), utc(2024, 1, 9)))
    assert result.report.days_covered == [date(2024, 1, d) for d in range(1, 9)]


def test_missing_and_not_published(mirror: Mirror) -> None:
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 2, 1, 16), 300)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS)
    hole = mirror.root / "cdn/okex/traderecords/trades/daily/20240115"
    (hole / "BTC-USDT-SWAP-trades-2024-01-15.zip").unlink()
    kwargs = {"base_url": mirror.url, "session": mirror.session}
    with pytest.raises(MissingFileError, match="2024-01-15"):
        fetch_month("okx-perps", LINEAR, JAN, today=LATER, **kwargs)
    result = fetch_month("okx-perps", LINEAR, JAN, today=LATER, allow_missing_days=True, **kwargs)
    assert result.report.days_missing == [date(2024, 1, 15)]
    assert date(2024, 1, 14) not in result.report.days_covered
    assert not result.report.complete
    with pytest.raises(NotPublishedError):
        fetch_month("okx-perps", LINEAR, date(2024, 3, 1), today=date(2024, 3, 10), **kwargs)
    assert (
        probe_month("okx-perps", LINEAR, date(2024, 3, 1), today=date(2024, 3, 10), **kwargs)
        is None
    )


def test_probe_uses_head_and_sees_revisions(mirror: Mirror) -> None:
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 2, 1, 16), 200)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS)
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    first = probe_month("okx-perps", LINEAR, JAN, **kwargs)
    assert first is not None
    assert probe_month("okx-perps", LINEAR, JAN, **kwargs) == first
    assert {method for method, _, _ in mirror.server.log} == {"HEAD"}
    write_okx(trades.head(150), mirror.root, LINEAR)
    assert probe_month("okx-perps", LINEAR, JAN, **kwargs) != first


def test_env_var_sets_the_base_url(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    write_okx(linear_trades(utc(2024, 1, 1), utc(2024, 1, 2), 20), mirror.root, LINEAR)
    monkeypatch.setenv("FLOW_ASSETS_OKX_URL", mirror.url)
    probe = probe_month("okx-perps", LINEAR, JAN, session=mirror.session, today=LATER)
    assert probe is not None


# --------------------------------------------------------------------------- real file formats

HEADER = "instrument_name,trade_id,side,price,size,created_time"
JAN_1_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def read_text(tmp_path: Path, text: str, symbol: str = LINEAR) -> pl.DataFrame:
    path = tmp_path / "BTC-USDT-SWAP-trades-2024-01-01.csv"
    path.write_text(text)
    return read_okx_csv(path, symbol)


def test_seven_column_file_with_source_and_scientific_sizes(tmp_path: Path) -> None:
    text = (
        f"{HEADER},source\n"
        f"BTC-USDT-SWAP,101,buy,42000.5,1.772e-05,{JAN_1_MS},0\n"
        f"BTC-USDT-SWAP,102,sell,42001.0,3,{JAN_1_MS + 5},1\n"
    )
    trades = read_text(tmp_path, text)
    assert trades.schema == pl.Schema(TRADE_SCHEMA)
    assert trades["trade_id"].to_list() == [101, 102]
    assert trades["base_qty"].to_list() == pytest.approx([1.772e-05 * 0.01, 0.03], rel=1e-12)
    assert trades["notional"][0] == pytest.approx(42000.5 * 1.772e-07, rel=1e-12)
    assert trades["is_taker_buy"].to_list() == [True, False]
    assert trades["exchange_ts"][1] == utc(2024, 1, 1) + timedelta(milliseconds=5)


def test_columns_are_found_by_name_in_any_order(tmp_path: Path) -> None:
    text = (
        "source,created_time,size,price,side,trade_id,instrument_name\n"
        f"0,{JAN_1_MS},2,42000.0,sell,7,BTC-USDT-SWAP\n"
    )
    trades = read_text(tmp_path, text)
    assert trades.row(0, named=True) | {"exchange_ts": None} == {
        "exchange_ts": None,
        "arrival_ts": None,
        "trade_id": 7,
        "price": 42000.0,
        "base_qty": pytest.approx(0.02),
        "notional": pytest.approx(840.0),
        "is_taker_buy": False,
        "first_trade_id": None,  # an OKX record is one fill
        "last_trade_id": None,
    }
    assert trades["exchange_ts"][0] == utc(2024, 1, 1)


@pytest.mark.parametrize(
    "header",
    [
        "instrument_name,trade_id,side,price,qty,created_time",  # a column missing
        f"{HEADER},fee",  # an unknown extra column
        "trade_id/x,side/y,size/z,price/p,created_time/t",  # the spot files' bilingual header
    ],
)
def test_an_unknown_header_is_refused_naming_file_and_header(tmp_path: Path, header: str) -> None:
    width = header.count(",") + 1
    row = ",".join(["BTC-USDT-SWAP", "1", "buy", "42000", "1", str(JAN_1_MS), "0"][:width])
    with pytest.raises(MalformedCsvError, match="unknown OKX trade header") as caught:
        read_text(tmp_path, f"{header}\n{row}\n")
    assert "BTC-USDT-SWAP-trades-2024-01-01.csv" in str(caught.value)
    assert header in str(caught.value)


# --------------------------------------------------------------------------- contract values


def contract_values(*rows: tuple[datetime | None, datetime | None, float]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CONTRACT_VALUES_SCHEMA, orient="row")


def test_contract_values_parameter_converts_each_trade_with_its_own_value(
    mirror: Mirror,
) -> None:
    change = utc(2024, 1, 15, 12)
    trades = linear_trades(utc(2024, 1, 1), utc(2024, 2, 1), 400)  # written at 0.01 per contract
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS)
    values = contract_values((None, change, 0.01), (change, None, 0.001))
    result = fetch_month(
        "okx-perps",
        LINEAR,
        JAN,
        base_url=mirror.url,
        session=mirror.session,
        today=LATER,
        contract_values=values,
    )
    factor = pl.when(pl.col("exchange_ts") < change).then(1.0).otherwise(0.1)
    expected = trades.with_columns(pl.col("base_qty", "notional") * factor)
    assert trades.filter(pl.col("exchange_ts") >= change).height > 100
    assert_same_trades(result.trades, expected)


@pytest.mark.parametrize(
    ("values", "at"),
    [
        (((None, utc(2024, 1, 10), 0.01), (utc(2024, 1, 12), None, 0.01)), "2024-01-10"),
        (((utc(2024, 1, 20), None, 0.01),), "2024-01-01"),  # before the first valid_from
        (((None, utc(2024, 1, 20), 0.01),), "2024-01-20"),  # after the last valid_to
        ((), "2024-01-01"),  # the instrument has no value at all
    ],
)
def test_a_trade_with_no_contract_value_in_force_is_an_error(
    mirror: Mirror, values: tuple[tuple[datetime | None, datetime | None, float], ...], at: str
) -> None:
    trades = linear_trades(utc(2024, 1, 1), utc(2024, 2, 1), 400)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS)
    with pytest.raises(MissingContractValueError, match=f"BTC-USDT-SWAP in force at {at}"):
        fetch_month(
            "okx-perps",
            LINEAR,
            JAN,
            base_url=mirror.url,
            session=mirror.session,
            today=LATER,
            contract_values=contract_values(*values),
        )


def test_overlapping_contract_values_are_refused() -> None:
    values = contract_values((None, utc(2024, 1, 10), 0.01), (utc(2024, 1, 9), None, 0.1))
    with pytest.raises(ValueError, match="overlap"):
        OkxCsv(LINEAR, values)


def test_default_contract_values_are_the_package_table() -> None:
    change = utc(2020, 3, 20, 8)
    expected = contract_values((None, change, 0.0001), (change, None, 0.01))
    assert contract_values_from_specs(LINEAR).equals(expected)


# --------------------------------------------------------------------------- running month


def test_latest_days_not_published_yet_end_the_running_month(mirror: Mirror) -> None:
    """Files up to Jan 8 are out on Jan 10: Jan 9 (and today's) are late, not missing."""
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 1, 8, 16), 300)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS[:10])  # Dec 30 .. Jan 8
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": date(2024, 1, 10)}
    result = fetch_month("okx-perps", LINEAR, JAN, **kwargs)
    assert result.report.end == utc(2024, 1, 8)
    assert not result.report.complete
    assert result.report.days_missing == []
    assert result.report.days_covered == [date(2024, 1, d) for d in range(1, 8)]
    assert_same_trades(result.trades, trades_between(trades, utc(2024, 1, 1), utc(2024, 1, 8)))
    first = probe_month("okx-perps", LINEAR, JAN, **kwargs)
    assert first is not None
    write_okx(trades.clear(), mirror.root, LINEAR, empty_days=(date(2024, 1, 9),))
    assert probe_month("okx-perps", LINEAR, JAN, **kwargs) != first
    assert fetch_month("okx-perps", LINEAR, JAN, **kwargs).report.end == utc(2024, 1, 9)


def test_a_day_missing_before_the_latest_published_is_still_missing(mirror: Mirror) -> None:
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 1, 8, 16), 300)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS[:10])
    hole = "cdn/okex/traderecords/trades/daily/20240105/BTC-USDT-SWAP-trades-2024-01-05.zip"
    (mirror.root / hole).unlink()
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": date(2024, 1, 10)}
    with pytest.raises(MissingFileError, match="2024-01-05") as caught:
        fetch_month("okx-perps", LINEAR, JAN, **kwargs)
    assert "2024-01-09" not in str(caught.value)
    report = fetch_month("okx-perps", LINEAR, JAN, allow_missing_days=True, **kwargs).report
    assert report.days_missing == [date(2024, 1, 5)]
    assert report.end == utc(2024, 1, 8)


def test_old_files_absent_at_the_end_are_missing_days_not_an_earlier_end(mirror: Mirror) -> None:
    """Long after the month, absent last files are holes, as for Binance: the month still ends
    at its end and lists them."""
    trades = linear_trades(utc(2023, 12, 31, 16), utc(2024, 1, 29, 16), 300)
    write_okx(trades, mirror.root, LINEAR, empty_days=ALL_FILE_DAYS[:31])  # up to Jan 29
    kwargs = {"base_url": mirror.url, "session": mirror.session, "today": LATER}
    report = fetch_month("okx-perps", LINEAR, JAN, allow_missing_days=True, **kwargs).report
    assert report.days_missing == [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1)]
    assert report.end == utc(2024, 2, 1)
    assert report.days_covered[-1] == date(2024, 1, 28)
    assert not report.complete


def test_rows_wider_than_the_header_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MalformedCsvError, match="line 2: 7 fields, the header names 6"):
        read_text(tmp_path, f"{HEADER}\nBTC-USDT-SWAP,1,buy,42000,1,{JAN_1_MS},0\n")
