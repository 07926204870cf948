"""Each month's bars against the exchange's own aggregation: Binance 1m klines (USD-M, COIN-M),
served in the archive's exact layout, damaged on purpose; and the real 142 minutes."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from flow_assets.catalog.mirror import CatalogServer
from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics.exchange_check import ExchangeCheck, ExchangeFigures, compare
from flow_assets.month import ExchangeReference, publish_flow, publish_trades
from flow_assets.orchestration.automation import flow_job_name
from flow_assets.orchestration.catalog import run_instruments_sensor
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.exchange_checks import CHECK_NAME
from flow_assets.orchestration.partitions import partition_key
from flow_assets.orchestration.reconciliation import reconciliation_asset_key
from flow_assets.orchestration.resources import ArchiveSources, CatalogApi, FlowStore
from flow_assets.publish import read_manifest
from flow_assets.sources import ingest_month
from flow_assets.sources.mirror import sample_trades
from flow_assets.store import LocalStore, exchange_check_key
from flow_assets.venues import (
    VENUES,
    binance_futures,
    binance_futures_cm,
    bybit_perps,
    okx_candles,
    okx_perps,
)
from flow_assets.venues.binance_common import (
    KLINE_COLUMNS,
    kline_figures,
    read_klines_csv,
    write_klines,
)
from flow_assets_tests.archive_fixtures import Mirror
from flow_assets_tests.test_month import ingest_of
from flow_assets_tests.test_sources_okx import ALL_FILE_DAYS as OKX_FILE_DAYS
from flow_assets_tests.test_sources_okx import JAN as OKX_JAN
from flow_assets_tests.test_sources_okx import LATER, linear_trades
from flow_assets_tests.trade_frames import utc

NAME, BTC, NATIVE = "binance-futures", "perpetual-BTC-USDT:USDT", "BTCUSDT"
FEB = date(2024, 2, 1)
INTERVALS = ("1m", "1d")


def aggregated(trades: pl.DataFrame) -> pl.DataFrame:
    """Sample trades as aggTrades of 1 to 3 underlying trades each (contiguous fill ids)."""
    fills = pl.col("trade_id") % 3 + 1
    last = (fills.cum_sum()).alias("last_trade_id")
    return trades.with_columns(last).with_columns(
        (pl.col("last_trade_id") - fills + 1).alias("first_trade_id")
    )


@pytest.fixture(scope="module")
def feb_trades() -> pl.DataFrame:
    return aggregated(sample_trades(utc(2024, 2, 1), utc(2024, 3, 1), 4000, seed=16))


def _run(mirror: Mirror, store: LocalStore, trades: pl.DataFrame, klines: pl.DataFrame | None):
    """The archive of ``trades`` and the klines of ``klines`` served; the month run through
    the production ingest, the reader of the served klines and ``publish_flow``."""
    binance_futures.write_binance(trades, mirror.root, BTC)
    if klines is not None:
        write_klines(klines, mirror.root, binance_futures.LAYOUT, NATIVE)

    def ingest(dest: Path):
        return ingest_month(
            NAME,
            BTC,
            FEB,
            dest,
            base_url=mirror.url,
            session=mirror.session,
            today=date(2024, 4, 1),
        )

    assert publish_trades(store, NAME, BTC, FEB, ingest).published
    reference = ExchangeReference(
        "1m", lambda span: binance_futures.read_figures(mirror.url, mirror.session, NATIVE, span)
    )
    return publish_flow(
        store, NAME, BTC, FEB, ("exchange",), intervals=INTERVALS, reference=reference
    )


def _stored(store: LocalStore) -> ExchangeCheck:
    return ExchangeCheck.from_json(store.get_json(exchange_check_key(NAME, BTC, FEB)))


def test_a_clean_month_passes_and_records_its_verdict(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame
) -> None:
    store = LocalStore(tmp_path / "store")
    outcome = _run(mirror, store, feb_trades, feb_trades)
    check = outcome.exchange_check
    assert check is not None
    assert check.status == "passed", check
    assert outcome.published
    assert check.figures == ["volume", "quote_volume", "taker_buy_volume",
                             "taker_buy_quote_volume", "count"]  # fmt: skip
    assert check.compared == 29 * 24 * 60 == check.equal
    assert check.sources[0]["name"] == "BTCUSDT-1m-2024-02.zip"
    assert check.sources[0]["checksum_verified"]
    assert _stored(store).to_json() == check.to_json()
    assert read_manifest(store, "flow", NAME, BTC, FEB).metadata["reconciled"] is True
    assert sum(d["ours"] for d in check.days) == pytest.approx(feb_trades["base_qty"].sum())


def _flip_hour(trades: pl.DataFrame, hour: datetime) -> pl.DataFrame:
    inside = pl.col("exchange_ts").is_between(hour, hour + timedelta(hours=1), closed="left")
    return trades.with_columns(
        pl.when(inside)
        .then(~pl.col("is_taker_buy"))
        .otherwise("is_taker_buy")
        .alias("is_taker_buy")
    )


def _first_minute(trades: pl.DataFrame, hour: datetime) -> str:
    inside = pl.col("exchange_ts").is_between(hour, hour + timedelta(hours=1), closed="left")
    first = trades.filter(inside)["exchange_ts"].min()
    return f"{first:%Y-%m-%d %H:%M}"


def test_a_side_flipped_for_an_hour_blocks_the_month(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame
) -> None:
    store = LocalStore(tmp_path / "store")
    hour = utc(2024, 2, 10, 5)
    outcome = _run(mirror, store, _flip_hour(feb_trades, hour), feb_trades)
    check = outcome.exchange_check
    assert check is not None
    assert check.status == "failed"
    assert not outcome.published
    assert read_manifest(store, "flow", NAME, BTC, FEB) is None
    assert check.first_differing[0] == _first_minute(feb_trades, hour)
    assert all(t.startswith("2024-02-10 05:") for t in check.first_differing)
    worst = check.worst[0]
    assert worst["time"].startswith("2024-02-10 05:")
    assert worst["taker_buy_volume"]["ours"] != worst["taker_buy_volume"]["exchange"]
    assert worst["volume"]["ours"] == pytest.approx(worst["volume"]["exchange"])
    assert _stored(store).status == "failed"


def test_a_missing_hour_is_named(mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame) -> None:
    store = LocalStore(tmp_path / "store")
    hour = utc(2024, 2, 20, 13)
    gap = pl.col("exchange_ts").is_between(hour, hour + timedelta(hours=1), closed="left")
    outcome = _run(mirror, store, feb_trades.filter(~gap), feb_trades)
    check = outcome.exchange_check
    assert check is not None
    assert check.status == "failed"
    assert not outcome.published
    lacking = feb_trades.filter(gap)["exchange_ts"].dt.strftime("%Y-%m-%d %H:%M").unique().sort()
    assert check.we_lack == lacking.to_list()
    assert check.exchange_lacks == []


def test_a_reissued_klines_file_that_disagrees_is_caught(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame
) -> None:
    store = LocalStore(tmp_path / "store")
    reissued = feb_trades.with_columns(
        pl.when(pl.col("trade_id") == 2000).then(pl.col("base_qty") + 0.001).otherwise("base_qty")
    )
    outcome = _run(mirror, store, feb_trades, reissued)
    check = outcome.exchange_check
    assert check is not None
    assert check.status == "failed"
    assert not outcome.published
    moment = feb_trades.filter(pl.col("trade_id") == 2000)["exchange_ts"][0]
    assert check.first_differing == [f"{moment:%Y-%m-%d %H:%M}"]
    assert check.compared - check.equal == 1


def test_no_klines_published_is_not_reconciled_but_publishes(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame
) -> None:
    store = LocalStore(tmp_path / "store")
    outcome = _run(mirror, store, feb_trades, None)
    check = outcome.exchange_check
    assert check is not None
    assert check.status == "unavailable"
    assert check.reconciled is None
    assert "no 1m klines published yet" in check.reason
    assert outcome.published
    assert read_manifest(store, "flow", NAME, BTC, FEB).metadata["reconciled"] is None


def test_compare_is_exact_within_the_printed_decimals() -> None:
    t = datetime(2024, 1, 1)
    ours = pl.DataFrame({"time": [t], "volume": [0.1 + 0.2], "trades": [2], "count": [2]})
    theirs = pl.DataFrame({"time": [t], "volume": [0.3], "volume_decimals": [3], "count": [2]})
    span = (utc(2024, 1, 1), utc(2024, 1, 2))
    assert compare(ours, ExchangeFigures(theirs), span).status == "passed"
    off = ours.with_columns(pl.col("volume") + 0.001)
    failed = compare(off, ExchangeFigures(theirs), span)
    assert failed.status == "failed"
    assert failed.first_differing == ["2024-01-01 00:00"]


CM, CM_BTC, CM_NATIVE = "binance-futures-cm", "perpetual-BTC-USD:BTC", "BTCUSD_PERP"


def _coin_m(trades: pl.DataFrame) -> pl.DataFrame:
    """Trades of whole 100 USD contracts (BTCUSD_PERP's size in the seed table)."""
    notional = (pl.col("notional") / 100).ceil() * 100
    return trades.with_columns(notional=notional, base_qty=notional / pl.col("price"))


@pytest.mark.parametrize("damaged", [False, True])
def test_coin_m_compares_base_volumes_and_trade_counts(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame, damaged: bool
) -> None:
    store = LocalStore(tmp_path / "store")
    clean = _coin_m(feb_trades)
    served = _flip_hour(clean, utc(2024, 2, 3, 7)) if damaged else clean
    binance_futures_cm.write_archive(served, mirror.root, CM_BTC)
    klines = binance_futures_cm.write_archive(clean, mirror.root / "k", CM_BTC, klines=True)
    for path in klines:  # only the klines of the clean trades are served
        if "/klines/" in str(path):
            target = mirror.root / path.relative_to(mirror.root / "k")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())

    def ingest(dest: Path):
        return ingest_month(
            CM,
            CM_BTC,
            FEB,
            dest,
            base_url=mirror.url,
            session=mirror.session,
            today=date(2024, 4, 1),
        )

    assert publish_trades(store, CM, CM_BTC, FEB, ingest).published
    reference = ExchangeReference(
        "1m",
        lambda span: binance_futures_cm.read_figures(mirror.url, mirror.session, CM_NATIVE, span),
    )
    outcome = publish_flow(
        store, CM, CM_BTC, FEB, ("exchange",), intervals=INTERVALS, reference=reference
    )
    check = outcome.exchange_check
    assert check is not None
    assert check.figures == ["volume", "taker_buy_volume", "count"]
    assert len(check.sources) == 29  # the daily klines files
    if damaged:
        assert check.status == "failed"
        assert check.first_differing[0].startswith("2024-02-03 07:")
        assert not outcome.published
    else:
        assert check.status == "passed", check.worst
        assert check.compared == check.equal == 29 * 24 * 60
        assert outcome.published


BYBIT, BYBIT_BTC = "bybit-perps", "perpetual-BTC-USDT:USDT"


@pytest.mark.parametrize("damaged", [False, True])
def test_bybit_daily_klines_judge_the_1d_bars(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame, damaged: bool
) -> None:
    store = LocalStore(tmp_path / "store")
    trades = feb_trades.head(1500)  # 2024-02-01 .. about 02-11
    bybit_perps.write_archive(trades, mirror.root, BYBIT_BTC)
    hour = utc(2024, 2, 5, 9)
    gap = pl.col("exchange_ts").is_between(hour, hour + timedelta(hours=1), closed="left")
    judged = trades.filter(~gap) if damaged else trades  # the exchange lacks an hour of ours
    klines = {"BTCUSDT": bybit_perps.daily_klines(judged, inverse=False)}
    today = trades["exchange_ts"].max().date() + timedelta(days=1)

    def ingest(dest: Path):
        return ingest_month(
            BYBIT, BYBIT_BTC, FEB, dest, base_url=mirror.url, session=mirror.session, today=today
        )

    assert publish_trades(store, BYBIT, BYBIT_BTC, FEB, ingest).published
    with CatalogServer({BYBIT: bybit_perps.sample() | {"klines": klines}}) as server:
        reference = ExchangeReference(
            "1d", lambda span: bybit_perps.read_figures(server.url, mirror.session, "BTCUSDT", span)
        )
        outcome = publish_flow(
            store, BYBIT, BYBIT_BTC, FEB, ("exchange",), intervals=INTERVALS, reference=reference
        )
    check = outcome.exchange_check
    assert check is not None
    assert check.unit == "day"
    assert check.figures == ["volume", "quote_volume"]
    assert check.compared == (today - FEB).days
    if damaged:
        assert check.status == "failed"
        assert check.first_differing == ["2024-02-05"]
        assert not outcome.published
    else:
        assert check.status == "passed", check.worst
        assert outcome.published


OKX, OKX_BTC, OKX_SWAP = "okx-perps", "perpetual-BTC-USDT:USDT", "BTC-USDT-SWAP"


@pytest.mark.parametrize("damaged", [False, True])
def test_okx_daily_candles_judge_the_1d_bars(mirror: Mirror, tmp_path: Path, damaged: bool) -> None:
    """OKX's own 1Dutc candles (history-candles, served in OKX's format) judge the 1d bars: base
    volume (volCcy) and quote notional (volCcyQuote) per UTC day."""
    store = LocalStore(tmp_path / "store")
    trades = linear_trades(utc(2023, 12, 30), utc(2024, 2, 3), 700)
    okx_perps.write_okx(trades, mirror.root, OKX_BTC, empty_days=OKX_FILE_DAYS)
    first = trades.filter(pl.col("exchange_ts") >= utc(2024, 1, 17))["exchange_ts"][0]
    assert first < utc(2024, 1, 18)
    judged = trades.filter(pl.col("exchange_ts") != first) if damaged else trades  # one lacks
    minutes = {OKX_SWAP: okx_candles.minute_candles(judged, False, lambda _: 0.01)}

    def ingest(dest: Path):
        return ingest_month(
            OKX, OKX_BTC, OKX_JAN, dest, base_url=mirror.url, session=mirror.session, today=LATER
        )

    assert publish_trades(store, OKX, OKX_BTC, OKX_JAN, ingest).published
    document = okx_candles.with_candles(okx_perps.sample(), minutes)
    with CatalogServer({OKX: document}) as server:
        reference = ExchangeReference(
            "1d",
            lambda span: okx_candles.read_figures(server.url, mirror.session, OKX_SWAP, span),
        )
        outcome = publish_flow(
            store, OKX, OKX_BTC, OKX_JAN, ("exchange",), intervals=INTERVALS, reference=reference
        )
    check = outcome.exchange_check
    assert check is not None
    assert (check.unit, check.figures, check.compared) == ("day", ["volume", "quote_volume"], 31)
    if damaged:
        assert check.status == "failed"
        assert check.first_differing == ["2024-01-17"]
        assert not outcome.published
    else:
        assert check.status == "passed", check.worst
        assert outcome.published


def _dagster_run(store: FlowStore, archive_url: str, month: date) -> dg.ExecuteInProcessResult:
    """The catalog served, the instruments synced, and the BTCUSDT month through its flow job."""
    documents = {name: v.catalog.sample() for name, v in VENUES.items()}
    instance = dg.DagsterInstance.ephemeral()
    with CatalogServer(documents) as server:
        resources = {
            "catalog_api": CatalogApi(urls=dict.fromkeys(documents, server.url)),
            "archives": ArchiveSources(urls=dict.fromkeys(VENUES, archive_url)),
            "store": store,
        }
        entry = InstrumentEntry(NAME, BTC)
        defs = build_definitions([entry], resources)
        catalog = defs.resolve_job_def("instrument_catalog_job").execute_in_process(
            instance=instance
        )
        assert catalog.success
        run_instruments_sensor(defs, instance)
        return defs.resolve_job_def(flow_job_name(NAME)).execute_in_process(
            partition_key=str(partition_key(entry, month)), instance=instance, raise_on_error=False
        )


def _evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME]
    assert len(evaluations) == 1
    assert evaluations[0].asset_key == dg.AssetKey(["binance_futures", "flow_bars_1m"])
    return evaluations[0]


@pytest.mark.parametrize("damaged", [False, True])
def test_through_dagster_the_check_judges_the_partition_in_the_same_run(
    mirror: Mirror, tmp_path: Path, feb_trades: pl.DataFrame, damaged: bool
) -> None:
    store = FlowStore(url=str(tmp_path / "store"))
    binance_futures.write_binance(feb_trades, mirror.root, BTC)
    hour = utc(2024, 2, 12, 22)
    served = _flip_hour(feb_trades, hour) if damaged else feb_trades  # a reissued klines file
    write_klines(served, mirror.root, binance_futures.LAYOUT, NATIVE)
    result = _dagster_run(store, mirror.url, FEB)
    evaluation = _evaluation(result)
    meta = evaluation.metadata
    key = str(partition_key(InstrumentEntry(NAME, BTC), FEB))
    assert meta["partition"].value == key  # the instrument-month judged, in the run that made it
    assert meta["minutes_compared"].value == 29 * 24 * 60
    assert meta["sources"].value[0]["name"] == "BTCUSDT-1m-2024-02.zip"
    assert "per_day" in meta
    published = read_manifest(store.open(), "flow", NAME, BTC, FEB)
    if damaged:
        assert not result.success
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert meta["first_differing"].value.startswith(_first_minute(feb_trades, hour))
        assert "taker_buy_volume" in meta["worst"].value
        assert published is None
    else:
        assert result.success
        assert evaluation.passed
        assert meta["minutes_equal"].value == 29 * 24 * 60
        assert published is not None
        target = evaluation.target_materialization_data  # attached to the partition's bars
        assert target is not None
        assert target.run_id == result.run_id
    history = _history(store)
    assert f"| {BTC} | {'✗' if damaged else '✓'} |" in history["history"].value
    assert (history["agreed"].value, history["differed"].value) == ((0, 1) if damaged else (1, 0))


def _history(store: FlowStore) -> dict[str, dg.MetadataValue]:
    """The metadata of a materialization of ``binance_futures/reconciliation``."""
    defs = build_definitions([InstrumentEntry(NAME, BTC)], {"store": store})
    key = reconciliation_asset_key(NAME)
    result = dg.materialize([defs.resolve_assets_def(key)])  # its store: the one given above
    (event,) = result.get_asset_materialization_events()
    return dict(event.materialization.metadata)


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("micros", [False, True])
def test_klines_are_read_with_or_without_a_header_in_ms_or_us(header: bool, micros: bool) -> None:
    opened = "1706745600000000" if micros else "1706745600000"
    row = f"{opened},1.0,1.0,1.0,1.0,2.500,1706745659999,5.12000,3,1.250,2.10000,0\n"
    data = (",".join(KLINE_COLUMNS) + "\n" if header else "") + row
    figures = kline_figures(read_klines_csv(data.encode()), coin_margined=False)
    first = figures.row(0, named=True)
    assert first["time"] == utc(2024, 2, 1)
    assert (first["volume"], first["volume_decimals"]) == (2.5, 3)
    assert (first["quote_volume"], first["quote_volume_decimals"], first["count"]) == (5.12, 5, 3)
    coin_m = kline_figures(read_klines_csv(data.encode()), coin_margined=True).row(0, named=True)
    assert (coin_m["volume"], coin_m["taker_buy_volume"]) == (5.12, 2.1)  # the base columns
    assert coin_m["volume_tolerance"] == pytest.approx(3e-5)  # a unit of 1e-5 per trade


def test_days_without_exchange_figures_are_named_and_not_reconciled() -> None:
    days = [datetime(2024, 1, 1), datetime(2024, 1, 2)]
    ours = pl.DataFrame({"time": days, "volume": [1.0, 2.0], "trades": [1, 1], "count": [1, 1]})
    theirs = pl.DataFrame({"time": [utc(2024, 1, 1)], "volume": [1.0], "count": [1]})
    span = (utc(2024, 1, 1), utc(2024, 1, 3))
    check = compare(ours, ExchangeFigures(theirs, days_missing=[date(2024, 1, 2)]), span, "day")
    assert (check.status, check.reconciled, check.compared) == ("partial", None, 1)
    assert check.days_not_compared == ["2024-01-02"]
    assert "1 day(s)" in check.reason


def test_trades_stored_before_fill_ids_were_kept_still_make_bars_judged_without_counts(
    tmp_path: Path,
) -> None:
    """Raw trades of code version 2 (no fill ids) and a carried spill of that time: the bars are
    made and published; the count is not compared (only the volumes)."""
    store = LocalStore(tmp_path / "store")
    trades = sample_trades(utc(2024, 2, 1), utc(2024, 4, 1), 3000, seed=5)
    late = pl.col("trade_id") % 97 == 0  # some trades arrive a day later (into March)
    old = trades.with_columns(
        arrival_ts=pl.col("exchange_ts")
        + pl.when(late).then(pl.duration(days=1)).otherwise(pl.duration(milliseconds=80))
    ).drop("first_trade_id", "last_trade_id")

    def figures(span: tuple[datetime, datetime]) -> ExchangeFigures:
        minutes = old.group_by(pl.col("exchange_ts").dt.truncate("1m").alias("time")).agg(
            pl.col("base_qty").sum().alias("volume")
        )
        return ExchangeFigures(minutes)

    for month in (FEB, date(2024, 3, 1)):
        assert publish_trades(store, NAME, BTC, month, ingest_of(old, month)).published
        outcome = publish_flow(
            store, NAME, BTC, month, ("exchange", "true"), intervals=INTERVALS,
            reference=ExchangeReference("1m", figures),
        )  # fmt: skip
        assert outcome.published
        assert outcome.exchange_check is not None
        assert outcome.exchange_check.status == "passed"
        assert outcome.exchange_check.figures == ["volume"]
    assert "carried from 2024-02" in outcome.history
