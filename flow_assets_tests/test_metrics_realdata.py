"""1m flow bars from real Binance USD-M trades reconciled with Binance's own 1m klines.

The data is in ``../shared/realdata`` (see its PROVENANCE.md; verify.py there does the same
reconciliation in exact decimals, independently of this project). Per fully covered minute, our
bar must give the kline's taker buy volume, volume, quote volume, taker buy quote volume and
trade count:

* volume = ``taker_buy_volume + taker_sell_volume``
* quote volume = the six ``taker_{side}_{size}_order_volume`` notionals; taker buy quote = the
  three buy ones
* count = ``taker_buy_count + taker_sell_count``

"Exactly" for floats: our value rounded to the kline's printed decimals is the printed value,
and it is within 1e-12 relative of it. Counts are equal integers.

Only minutes the capture covers fully are compared: strictly after the minute of the first trade
and strictly before the minute of the last one (the edge minutes are partial captures).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from flow_assets.metrics.engine import flow_bars
from flow_assets.metrics.exchange_check import ExchangeCheck, bar_figures, compare, fill_counts
from flow_assets.metrics.schema import SIZES, TRADE_SCHEMA, bucket_field
from flow_assets.sources.mirror import write_checksum, write_zip
from flow_assets.sources.tardis import read_tardis_csv
from flow_assets.venues import binance_futures
from flow_assets_tests.archive_fixtures import Mirror
from flow_assets_tests.realdata import REALDATA, read_klines, read_ws_trades, utc_minute

if not REALDATA.is_dir():
    pytest.skip(
        f"real data folder {REALDATA} is absent (it sits next to the repository, at ../shared/"
        "realdata, only on the shared machine): skipping the kline reconciliation",
        allow_module_level=True,
    )

MINUTE = timedelta(minutes=1)
KLINES = REALDATA / "isda_binance_um_klines"
USDM = REALDATA / "hftbacktest" / "usdm"
TARDIS_CSV = REALDATA / "tardis" / "tardis_trades.csv"

# name: (trade files, kline file, fully covered minutes), the four pairs of verify.py
PAIRS: dict[str, tuple[tuple[str, ...], str, int]] = {
    "tardis-2020-02-22": (
        ("tardis",),
        "BTCUSDT-1m-2020-02.lines_2020-02-22T0000Z_2020-02-22T0207Z.csv",
        124,
    ),
    "ws-2023-04-05": (
        ("btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz"),
        "BTCUSDT-1m-2023-04.lines_2023-04-04T2340Z_2023-04-05T0019Z.csv",
        7,
    ),
    "ws-2024-07-19": (
        ("btcusdt_20240718.gz", "btcusdt_20240719.gz"),
        "BTCUSDT-1m-2024-07.lines_2024-07-18T2340Z_2024-07-19T0019Z.csv",
        7,
    ),
    "ws-2024-08-08": (
        ("btcusdt_20240808.gz",),
        "BTCUSDT-1m-2024-08.lines_2024-08-08T2340Z_2024-08-09T0019Z.csv",
        4,
    ),
}

FLOAT_FIELDS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
INSURANCE_FUND_TRADE = 3_535_191_080  # X == "INSURANCE_FUND", 2023-04-05 00:01 UTC
INSURANCE_FUND_MINUTE = datetime(2023, 4, 5, 0, 1)


@functools.cache
def pair_trades(name: str, *, market_only: bool = True) -> pl.DataFrame:
    files, _, _ = PAIRS[name]
    if files == ("tardis",):
        # Our own parser on the real file (Tardis has no trade type: all are market trades).
        return read_tardis_csv(TARDIS_CSV).trades
    return read_ws_trades([USDM / f for f in files], market_only=market_only)


def kline_fields(bars: pl.DataFrame) -> pl.DataFrame:
    """Our 1m bars expressed as the kline's fields."""
    buy_notional = [pl.col(bucket_field("buy", z, "order_volume")) for z in SIZES]
    sell_notional = [pl.col(bucket_field("sell", z, "order_volume")) for z in SIZES]
    return bars.select(
        "time",
        (pl.col("taker_buy_volume") + pl.col("taker_sell_volume")).alias("volume"),
        pl.sum_horizontal(*buy_notional, *sell_notional).alias("quote_volume"),
        (pl.col("taker_buy_count") + pl.col("taker_sell_count")).alias("count"),
        pl.col("taker_buy_volume"),
        pl.sum_horizontal(*buy_notional).alias("taker_buy_quote_volume"),
    )


def matches_printed(ours: float, printed: str) -> bool:
    """Our float rounds to the printed decimal at its own decimals, and is within 1e-12."""
    exact = Decimal(printed)
    rounded = Decimal(repr(ours)).quantize(exact)
    return rounded == exact and abs(ours - float(exact)) <= 1e-12 * abs(float(exact))


def reconcile(trades: pl.DataFrame, kline_file: str) -> tuple[list[datetime], list[str]]:
    """Fully covered minutes compared, and a description of every field that differs."""
    first = utc_minute(trades["exchange_ts"].min())
    last = utc_minute(trades["exchange_ts"].max())
    bars = flow_bars(trades, "1m", first, last + MINUTE)
    covered = kline_fields(bars).filter(
        pl.col("time") > first.replace(tzinfo=None), pl.col("time") < last.replace(tzinfo=None)
    )
    joined = covered.join(read_klines(KLINES / kline_file), on="time", how="left", suffix="_k")
    minutes: list[datetime] = []
    problems: list[str] = []
    for row in joined.iter_rows(named=True):
        minutes.append(row["time"])
        if row["count_k"] is None:
            problems.append(f"{row['time']}: no kline")
            continue
        if row["count"] != int(row["count_k"]):
            problems.append(f"{row['time']} count: ours={row['count']} kline={row['count_k']}")
        problems += [
            f"{row['time']} {f}: ours={row[f]!r} kline={row[f + '_k']}"
            for f in FLOAT_FIELDS
            if not matches_printed(row[f], row[f + "_k"])
        ]
    return minutes, problems


@functools.cache
def reconciled(name: str) -> tuple[list[datetime], list[str]]:
    return reconcile(pair_trades(name), PAIRS[name][1])


@pytest.mark.parametrize("name", list(PAIRS))
def test_bars_reconcile_exactly_with_binance_klines(name: str) -> None:
    trades = pair_trades(name)
    assert trades.schema == pl.Schema(TRADE_SCHEMA)
    minutes, problems = reconciled(name)
    assert problems == []
    assert len(minutes) == PAIRS[name][2]
    assert minutes == [minutes[0] + i * MINUTE for i in range(len(minutes))]


def test_all_pairs_reconcile_142_minutes() -> None:
    minutes = [m for name in PAIRS for m in reconciled(name)[0]]
    assert all(not reconciled(name)[1] for name in PAIRS)
    assert len(set(minutes)) == len(minutes) == 142
    assert INSURANCE_FUND_MINUTE in minutes


def test_insurance_fund_fill_is_left_out_of_klines() -> None:
    """The one non-MARKET trade: kept, its minute no longer matches the kline."""
    market = pair_trades("ws-2023-04-05")
    everything = pair_trades("ws-2023-04-05", market_only=False)
    dropped = set(everything["trade_id"]) - set(market["trade_id"])
    assert dropped == {INSURANCE_FUND_TRADE}
    fill = everything.filter(pl.col("trade_id") == INSURANCE_FUND_TRADE).row(0, named=True)
    assert utc_minute(fill["exchange_ts"]).replace(tzinfo=None) == INSURANCE_FUND_MINUTE

    minutes, problems = reconcile(everything, PAIRS["ws-2023-04-05"][1])
    assert len(minutes) == 7
    assert problems  # only that minute differs, in count, volume and quote volume
    assert all(p.startswith(str(INSURANCE_FUND_MINUTE)) for p in problems)
    assert f"{INSURANCE_FUND_MINUTE} count: ours=1824 kline=1823" in problems
    assert any(" volume: " in p for p in problems)
    assert any(" quote_volume: " in p for p in problems)


def test_arrival_time_bars_lose_no_trade() -> None:
    """Bars by arrival time (``timestamp="true"``) from the real Tardis file: every trade whose
    arrival falls in ``[start, end)`` is counted once, and its volume too."""
    trades = pair_trades("tardis-2020-02-22")
    assert trades["arrival_ts"].null_count() == 0
    whole = (
        utc_minute(trades["arrival_ts"].min()),
        utc_minute(trades["arrival_ts"].max()) + MINUTE,
    )
    inner = (whole[0] + 30 * MINUTE, whole[0] + 90 * MINUTE)  # cuts through the file
    for start, end in (whole, inner):
        bars = flow_bars(trades, "1m", start, end, timestamp="true")
        assert bars.height == (end - start) // MINUTE
        inside = trades.filter(pl.col("arrival_ts") >= start, pl.col("arrival_ts") < end)
        total = bars.select(
            (pl.col("taker_buy_count") + pl.col("taker_sell_count")).sum().alias("count"),
            (pl.col("taker_buy_volume") + pl.col("taker_sell_volume")).sum().alias("volume"),
        ).row(0, named=True)
        assert total["count"] == inside.height
        assert total["volume"] == pytest.approx(inside["base_qty"].sum(), rel=1e-12)
    assert inside.height < trades.height  # the inner range really drops trades


def _serve_klines(root: Path, kline_file: str) -> None:
    """The verbatim kline lines as the archive's daily 1m klines zips (+ CHECKSUM) of their days."""
    lines = (KLINES / kline_file).read_text().splitlines(keepends=True)
    days: dict[str, list[str]] = {}
    for line in lines:
        day = datetime.fromtimestamp(int(line.split(",")[0]) / 1000, UTC).date()
        days.setdefault(str(day), []).append(line)
    for day, rows in days.items():
        url = binance_futures.LAYOUT.klines_url(str(root), "BTCUSDT", day)
        write_checksum(write_zip(Path(url), Path(url).name[:-4] + ".csv", "".join(rows).encode()))


def production_check(name: str, mirror: Mirror, *, market_only: bool = True) -> ExchangeCheck:
    """The pair through the production check: our bars' figures and fill counts against the
    klines read back by the archive reader from served files, over the fully covered minutes."""
    trades = pair_trades(name, market_only=market_only)
    first = utc_minute(trades["exchange_ts"].min())
    last = utc_minute(trades["exchange_ts"].max())
    bars = flow_bars(trades, "1m", first, last + MINUTE)
    counts = fill_counts(trades.lazy(), "1m").collect()
    ours = bar_figures(bars).join(counts, on="time", how="left").fill_null(0)
    _serve_klines(mirror.root, PAIRS[name][1])
    span = (first + MINUTE, last)
    figures = binance_futures.read_figures(mirror.url, mirror.session, "BTCUSDT", span)
    return compare(ours, figures, span)


def test_the_real_142_minutes_pass_the_production_check(mirror: Mirror) -> None:
    checks = {name: production_check(name, mirror) for name in PAIRS}
    for name, check in checks.items():
        assert check.status == "passed", (name, check.worst)
        assert check.compared == check.equal == PAIRS[name][2]
        assert check.figures == [*FLOAT_FIELDS[:2], *FLOAT_FIELDS[2:], "count"]
        assert all(s["checksum_verified"] for s in check.sources)
    assert sum(c.compared for c in checks.values()) == 142


def test_the_insurance_fund_fill_fails_the_production_check(mirror: Mirror) -> None:
    check = production_check("ws-2023-04-05", mirror, market_only=False)
    assert check.status == "failed"
    assert check.first_differing == [f"{INSURANCE_FUND_MINUTE:%Y-%m-%d %H:%M}"]
    assert check.worst[0]["count"] == {"ours": 1824, "exchange": 1823}
