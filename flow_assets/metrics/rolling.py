"""Rolling fields on a dense bar series: close carry-forward, returns, rv and exact z-scores.

``flow_toxicity_score_t = z(volume_delta_notional)_t * z(rv)_t`` where

* ``r_t = ln(close_t / close_{t-1})``, ``rv_t = sqrt(r_{t-k+1}^2 + ... + r_t^2)`` (k = horizon);
* ``z(x)_t`` is the z-score of ``x_t`` in the window of the last ``W`` bars (``t`` included),
  with the sample standard deviation; null when a value in the window is null or the std is 0.

The z-scores use an exact two-pass mean and deviation of every window (no running
add-and-remove sums, which drift over long series). Each window is first shifted by its own
first value, so a window of equal values has a deviation of exactly 0 and gives null.
"""

from __future__ import annotations

import functools
import operator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

_PARALLEL_ROWS = 1 << 16  # longer series get their two z-scores in two threads
_ROWS_PER_BLOCK = 1 << 13  # the (rows x window) temporary stays ~4 MB for W = 60 (cache-sized)


def log_returns(close: pl.Expr) -> pl.Expr:
    """``ln(close_t / close_{t-1})``; null where either close is null."""
    return (close / close.shift(1)).log()


def realized_volatility(returns: pl.Expr, horizon: int) -> pl.Expr:
    """``sqrt`` of the sum of the last ``horizon`` squared returns; null if any is null.

    A plain sum of squares per window: it cannot go negative, and zero returns give exactly 0.
    """
    squares = [returns.shift(lag).pow(2) for lag in range(horizon)]
    return functools.reduce(operator.add, squares).sqrt()


def exact_rolling_zscore(values: pl.Series, window: int) -> pl.Series:
    """z-score of each value within its trailing ``window`` (exact two-pass per window)."""
    x = values.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    out = np.full(x.shape[0], np.nan)
    for first in range(window - 1, x.shape[0], _ROWS_PER_BLOCK):
        last = min(x.shape[0], first + _ROWS_PER_BLOCK)
        windows = sliding_window_view(x[first - window + 1 : last], window)
        shifted = windows - windows[:, :1]
        newest = shifted[:, -1].copy()
        mean = shifted.mean(axis=1)
        deviation = np.subtract(shifted, mean[:, None], out=shifted)  # in place: one temporary
        std = np.sqrt(np.square(deviation, out=deviation).sum(axis=1) / (window - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (newest - mean) / std
        z[~(std > 0)] = np.nan
        out[first:last] = z
    return pl.Series(values.name, out).fill_nan(None)


def toxicity_score(dense: pl.DataFrame, *, window: int, horizon: int) -> pl.Series:
    """``z(volume_delta_notional) * z(rv)`` for a dense, gap-free bar series.

    ``dense`` holds ``close`` (carried forward, null before the first trade) and
    ``volume_delta_notional`` (0 on empty bars), one row per bar in time order.
    """
    rv = dense.select(
        realized_volatility(log_returns(pl.col("close")), horizon).alias("rv")
    ).to_series()
    if dense.height < _PARALLEL_ROWS:
        z_flow = exact_rolling_zscore(dense["volume_delta_notional"], window)
        z_rv = exact_rolling_zscore(rv, window)
    else:  # numpy releases the GIL: the two series take one core each
        with ThreadPoolExecutor(max_workers=2) as pool:
            flow_future = pool.submit(exact_rolling_zscore, dense["volume_delta_notional"], window)
            z_rv = exact_rolling_zscore(rv, window)
            z_flow = flow_future.result()
    return (z_flow * z_rv).alias("flow_toxicity_score")
