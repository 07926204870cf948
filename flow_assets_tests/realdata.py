"""Loaders for the real-data tests: hftbacktest websocket captures and Binance archive klines.

The files live in ``../shared/realdata`` (see its PROVENANCE.md and verify.py); they are not part
of the repository.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.venues.binance_common import KLINE_COLUMNS

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

_TRADE_EVENT = '"e":"trade"'
_NS_THRESHOLD = 10**17  # local ts above this is in ns (2024 files), below in µs (2023 files)


def _micros(ts: int) -> int:
    return ts // 1000 if ts > _NS_THRESHOLD else ts


def read_ws_trades(paths: Iterable[Path], *, market_only: bool = True) -> pl.DataFrame:
    """Trades (TRADE_SCHEMA) of hftbacktest Binance USD-M captures: ``<local ts> <json>`` lines.

    Keeps the ``@trade`` events (``data.e == "trade"``): ``t`` id, ``T`` trade time (ms),
    ``p`` price, ``q`` base quantity, ``m`` buyer is maker, ``X`` trade type. The local receive
    time (µs in the 2023 captures, ns in the 2024 ones) becomes ``arrival_ts`` in µs. Note that
    the 2024 collectors' clocks ran behind Binance's: their local time is a median 1.3-1.5 s
    *before* the trade time ``T`` (the 2023 ones: +6 ms), so those arrival times are only good
    for ordering, not for latency.

    With ``market_only`` (the default) trades whose ``X`` is not ``MARKET`` are dropped: e.g. an
    ``INSURANCE_FUND`` fill is a liquidation taken over by the insurance fund, not a market trade,
    and Binance leaves it out of its klines (volume, quote volume, count, high/low).
    """
    local, trade_time, ids, prices, qtys, buyer_maker, kinds = [], [], [], [], [], [], []
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                if _TRADE_EVENT not in line:
                    continue
                stamp, _, payload = line.partition(" ")
                message = json.loads(payload)
                data = message.get("data", message)
                if data.get("e") != "trade":
                    continue
                local.append(_micros(int(stamp)))
                trade_time.append(int(data["T"]) * 1000)
                ids.append(int(data["t"]))
                prices.append(float(data["p"]))
                qtys.append(float(data["q"]))
                buyer_maker.append(bool(data["m"]))
                kinds.append(data.get("X", "MARKET"))
    frame = pl.DataFrame(
        {
            "exchange_ts": trade_time,
            "arrival_ts": local,
            "trade_id": ids,
            "price": prices,
            "base_qty": qtys,
            "buyer_maker": buyer_maker,
            "kind": kinds,
        },
        schema={
            "exchange_ts": pl.Int64,
            "arrival_ts": pl.Int64,
            "trade_id": pl.Int64,
            "price": pl.Float64,
            "base_qty": pl.Float64,
            "buyer_maker": pl.Boolean,
            "kind": pl.String,
        },
    )
    if market_only:
        frame = frame.filter(pl.col("kind") == "MARKET")
    return frame.select(
        pl.col("exchange_ts").cast(pl.Datetime("us", "UTC")),
        pl.col("arrival_ts").cast(pl.Datetime("us", "UTC")),
        "trade_id",
        "price",
        "base_qty",
        (pl.col("price") * pl.col("base_qty")).alias("notional"),  # linear contract
        (~pl.col("buyer_maker")).alias("is_taker_buy"),
        pl.col("trade_id").alias("first_trade_id"),  # a websocket trade is one fill
        pl.col("trade_id").alias("last_trade_id"),
    ).cast(TRADE_SCHEMA)


def read_klines(path: Path) -> pl.DataFrame:
    """Binance archive klines (12 columns, no header, ms times) with every value kept as printed,
    plus ``time``: the open time as a naive UTC ``Datetime[us]`` (the bars' label)."""
    frame = pl.read_csv(path, has_header=False, new_columns=list(KLINE_COLUMNS), infer_schema=False)
    return frame.with_columns(
        (pl.col("open_time").cast(pl.Int64) * 1000).cast(pl.Datetime("us")).alias("time")
    )


def utc_minute(moment: datetime) -> datetime:
    """The UTC minute a zone-aware moment falls in, as a zone-aware datetime."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)
