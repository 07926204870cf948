"""OKX contract-value changes dated by OKX's own candles, through Dagster: one swap changed
before the first catalog snapshot, another between two snapshots; every day converted right."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flow_assets.catalog import load_catalog, update_catalog
from flow_assets.instruments import InstrumentEntry
from flow_assets.orchestration.resources import FlowStore
from flow_assets.publish import flow_file, read_manifest
from flow_assets.sources.mirror import sample_trades
from flow_assets.venues.okx_candles import minute_candles, step_value, with_candles
from flow_assets.venues.okx_perps import okx_instrument, okx_instruments, parse_catalog, write_okx
from flow_assets_tests.venue_runs import published_trades, run_months

MONTH = date(2024, 3, 1)
LISTED = datetime(2024, 2, 20, 9, 30, tzinfo=UTC)
FILE_DAYS = tuple(date(2024, 2, 29) + timedelta(days=n) for n in range(34))
# A: 1000 -> 100 before the first snapshot; B: 10 -> 1 mid-day between two snapshots
SWAPS = {
    "AGLD-USDT-SWAP": (1000.0, 100.0, datetime(2024, 3, 2, 13, 37, tzinfo=UTC)),
    "SAND-USDT-SWAP": (10.0, 1.0, datetime(2024, 3, 3, 9, 41, tzinfo=UTC)),
}


def symbol(native: str) -> str:
    return f"perpetual-{native.split('-', maxsplit=1)[0]}-USDT:USDT"


def trades_of(native: str, seed: int) -> pl.DataFrame:
    """Trades over four days in whole contracts of the value in force (the truth)."""
    before, after, change = SWAPS[native]
    start = datetime(2024, 3, 1, tzinfo=UTC)
    trades = sample_trades(start, start + timedelta(days=4), 1500, seed=seed)
    contracts = (pl.col("trade_id") % 4 + 1).cast(pl.Float64)
    value = pl.when(pl.col("exchange_ts") < change).then(before).otherwise(after)
    return trades.with_columns(base_qty=contracts * value).with_columns(
        notional=pl.col("price") * pl.col("base_qty")
    )


def daily_base_volume(frame: pl.DataFrame, time: str) -> list[tuple[datetime, float]]:
    days = frame.group_by(pl.col(time).dt.truncate("1d").alias("day")).agg(pl.col("v").sum())
    return days.filter(pl.col("v") > 0).sort("day").rows()


def test_changes_before_and_between_snapshots_convert_every_day_right(
    tmp_path: Path, mirror_root: Path, archive_server
) -> None:
    trades, minutes = {}, {}
    for n, (native, (before, after, change)) in enumerate(SWAPS.items()):
        trades[native] = trades_of(native, seed=70 + n)
        value_at = step_value(before, after, change)
        write_okx(trades[native], mirror_root, symbol(native), empty_days=FILE_DAYS,
                  contract_value_at=value_at)  # fmt: skip
        minutes[native] = minute_candles(trades[native], False, value_at)
    now = okx_instruments([okx_instrument(n, f"{v[1]:g}", listed=LISTED) for n, v in SWAPS.items()])
    store = FlowStore(url=str(tmp_path / "store"))
    # B's first snapshot, before its change, listed it at 10 (the old snapshot rule's store)
    earlier = okx_instruments([okx_instrument("SAND-USDT-SWAP", "10", listed=LISTED)])
    update_catalog(
        store.open(), "okx-perps", parse_catalog(earlier), datetime(2024, 3, 1, 6, tzinfo=UTC)
    )
    entries = [InstrumentEntry("okx-perps", symbol(native)) for native in SWAPS]
    run_months(store, archive_server.url, entries, MONTH, {"okx-perps": with_candles(now, minutes)})

    contracts = load_catalog(store.open(), "okx-perps").contracts
    for native, (before, after, change) in SWAPS.items():
        rows = contracts.filter(pl.col("native") == native)
        assert rows.select("ct_val", "dated_by").rows() == [
            (before, "listing"), (after, "candles")
        ]  # fmt: skip
        dated = rows["valid_to"][0]
        first_after = trades[native].filter(pl.col("exchange_ts") >= change)["exchange_ts"].min()
        assert change <= dated <= first_after  # type: ignore[operator]
        assert dated == first_after.replace(second=0, microsecond=0)  # type: ignore[union-attr]

        got = published_trades(store, "okx-perps", symbol(native), MONTH)
        assert got["base_qty"].to_list() == pytest.approx(trades[native]["base_qty"].to_list())
        objects = store.open()
        manifest = read_manifest(objects, "flow", "okx-perps", symbol(native), MONTH)
        bars = objects.read_parquet(manifest.key_of(flow_file("exchange", "1d")))
        bars = bars.with_columns(v=pl.col("taker_buy_volume") + pl.col("taker_sell_volume"))
        expected = daily_base_volume(trades[native].rename({"base_qty": "v"}), "exchange_ts")
        got_days = daily_base_volume(bars, "time")
        assert [d.replace(tzinfo=UTC) for d, _ in got_days] == [d for d, _ in expected]
        assert [v for _, v in got_days] == pytest.approx([v for _, v in expected], rel=1e-9)
