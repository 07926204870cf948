"""Small builders of normalized-trade frames for the tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import polars as pl

from flow_assets.metrics.schema import TRADE_SCHEMA


def utc(*parts: int) -> datetime:
    """A zone-aware UTC datetime."""
    return datetime(*parts, tzinfo=UTC)


def trades_frame(rows: Sequence[tuple], *, with_arrival: bool = False) -> pl.DataFrame:
    """Trades from ``(time, trade_id, price, base_qty, is_taker_buy[, arrival])`` tuples.

    ``notional = price * base_qty`` (a linear contract).
    """
    data = {
        "exchange_ts": [r[0] for r in rows],
        "arrival_ts": [r[5] if with_arrival else None for r in rows],
        "trade_id": [r[1] for r in rows],
        "price": [float(r[2]) for r in rows],
        "base_qty": [float(r[3]) for r in rows],
        "notional": [float(r[2]) * float(r[3]) for r in rows],
        "is_taker_buy": [bool(r[4]) for r in rows],
        "first_trade_id": [None] * len(rows),  # single fills
        "last_trade_id": [None] * len(rows),
    }
    return pl.DataFrame(data, schema=TRADE_SCHEMA)
