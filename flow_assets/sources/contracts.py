"""What one contract of an instrument is worth over time, applied to trades.

Venues whose size column counts contracts (OKX swaps, Binance COIN-M) convert each trade with
the value in force at its time: the catalog's history (``FetchOptions.contract_values``) or,
without one, the package's table (:func:`specs_history`). A trade with no value in force is a
:class:`MissingContractValueError` naming the instrument, never a guess.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import polars as pl

from flow_assets.metrics.schema import CONTRACT_VALUES_SCHEMA
from flow_assets.sources.errors import MissingContractValueError
from flow_assets.symbology import contract_specs


def specs_history(exchange: str, symbol: str) -> pl.DataFrame:
    """The contract value history of ``symbol`` on ``exchange`` from the package's table
    (:func:`flow_assets.symbology.contract_specs`), as a ``CONTRACT_VALUES_SCHEMA`` frame."""
    specs = contract_specs(exchange, symbol)
    rows = {
        "valid_from": [s.valid_from for s in specs],
        "valid_to": [s.valid_to for s in specs],
        "ct_val": [s.ct_val for s in specs],
    }
    return pl.DataFrame(rows, schema=CONTRACT_VALUES_SCHEMA)


class ContractValues:
    """What one contract of an instrument is worth over time: rows ``[valid_from, valid_to)``
    with ``ct_val`` (base units for linear, USD for inverse); a null ``valid_from`` means since
    listing, a null ``valid_to`` still valid. The rows must not overlap."""

    def __init__(self, native: str, frame: pl.DataFrame) -> None:
        if frame.schema != CONTRACT_VALUES_SCHEMA:
            raise ValueError(
                f"contract values of {native}: schema {frame.schema}, expected "
                f"{CONTRACT_VALUES_SCHEMA}"
            )
        self.native = native
        self.rows: list[tuple[datetime | None, datetime | None, float]] = sorted(
            frame.iter_rows(), key=lambda row: (row[0] is not None, row[0] or datetime.min)
        )
        bounds = [(start, end) for start, end, _ in self.rows]
        empty = [(start, end) for start, end in bounds if start and end and end <= start]
        overlap = [
            (end, start)
            for (_, end), (start, _) in pairwise(bounds)
            if end is None or start is None or start < end
        ]
        if empty or overlap:
            raise ValueError(f"contract values of {native} are empty or overlap: {self.rows}")

    def expr(self, ts: pl.Expr) -> pl.Expr:
        """The ``ct_val`` in force at each ``ts`` (null where none is)."""
        value: pl.Expr = pl.lit(None, dtype=pl.Float64)
        for start, end, ct_val in reversed(self.rows):
            inside = pl.lit(True)
            if start is not None:
                inside = inside & (ts >= start)
            if end is not None:
                inside = inside & (ts < end)
            value = pl.when(inside).then(pl.lit(ct_val)).otherwise(value)
        return value

    def check(self, times: pl.Series, values: pl.Series, name: str) -> None:
        """Raise when a trade at ``times`` has no value in force (a null in ``values``)."""
        gaps = times.filter(times.is_not_null() & values.is_null())
        if gaps.len():
            raise MissingContractValueError(
                f"{name}: no contract value of {self.native} in force at {gaps[0].isoformat()} "
                f"({gaps.len()} trades); known values: {self.rows or 'none'}"
            )
