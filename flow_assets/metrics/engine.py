"""Trades to flow bars in one pass, in bounded memory.

How the work is split:

1. Each chunk of trades is binned once into *partials* at the finest requested interval:
   per bar, the taker buy/sell base volume, the notional and count of every side x size
   bucket, and the close (price of the last trade by time, then ``trade_id``) with its key.
2. Every coarser interval is rolled up from the next finer one (each divides the next),
   so the trades are scanned once whatever the number of intervals.
3. Trades before ``start`` are history: per interval only the last ``window + horizon + 1``
   bars with trades are kept, which is all the rolling fields can reach back to.
4. ``finish`` lays each interval on its dense grid, carries the close forward, computes
   the rolling fields on bars and the 36 fields, and returns ``[start, end)``.

**Carried state.** What the rolling fields of the next period need is, per interval, the last
``window + horizon + 1`` bars with trades before ``end`` (their sums and close): exactly the
history step 3 keeps. :meth:`FlowBarsEngine.carry` returns it, and an engine for the following
period seeded with it (:meth:`FlowBarsEngine.seed`) gives the same bars as one fed the whole
past's trades, bit for bit. :func:`state_to_frame` / :func:`state_from_frame` store it.

Partials of one bar that arrive in different chunks are merged (sums add, the close with the
greatest ``(time, trade_id)`` wins), so chunked and unchunked input give the same bars.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from flow_assets.metrics.intervals import ALL_INTERVALS, interval_micros, sorted_intervals
from flow_assets.metrics.rolling import toxicity_score
from flow_assets.metrics.schema import (
    BAR_SCHEMA,
    FLOW_FIELDS,
    MEDIUM_LARGE_EDGE,
    SIDES,
    SIZES,
    SMALL_MEDIUM_EDGE,
    TIMESTAMP_COLUMNS,
    bucket_field,
)

Trades = pl.DataFrame | pl.LazyFrame

_VOLUME_COLUMNS = ("taker_buy_volume", "taker_sell_volume")
_BUCKET_NOTIONAL = tuple(bucket_field(s, z, "order_volume") for s in SIDES for z in SIZES)
_BUCKET_COUNT = tuple(bucket_field(s, z, "order_count") for s in SIDES for z in SIZES)
_SUM_COLUMNS = _VOLUME_COLUMNS + _BUCKET_NOTIONAL + _BUCKET_COUNT
_CLOSE_COLUMNS = ("close", "close_ts", "close_id")
_PARTIAL_SCHEMA: dict[str, pl.DataType] = {
    "bin": pl.Int64(),
    **{c: pl.Float64() for c in _VOLUME_COLUMNS + _BUCKET_NOTIONAL},
    **{c: pl.Int64() for c in _BUCKET_COUNT},
    "close": pl.Float64(),
    "close_ts": pl.Int64(),
    "close_id": pl.Int64(),
}

_FLOAT_INPUTS = ("price", "base_qty", "notional")
_SLICE_ROWS = 250_000  # trades binned at a time (their temporaries: ~35 MB)
_HOUR_US = 3_600_000_000


def to_utc_micros(moment: datetime | date) -> int:
    """Microseconds since the epoch; a naive datetime (or a date) is taken as UTC."""
    if not isinstance(moment, datetime):
        if not isinstance(moment, date):
            raise TypeError(f"expected a datetime, got {type(moment).__name__}: {moment!r}")
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _check_trade_schema(schema: pl.Schema, timestamp: str) -> None:
    """Raise a clear error for missing columns, wrong dtypes or non-UTC times."""
    time_column = TIMESTAMP_COLUMNS[timestamp]
    required = [time_column, "trade_id", *_FLOAT_INPUTS, "is_taker_buy"]
    missing = [name for name in required if name not in schema]
    if missing:
        raise ValueError(
            f"trades are missing column(s) {missing} (timestamp={timestamp!r} needs {required})"
        )
    dtype = schema[time_column]
    if not isinstance(dtype, pl.Datetime):
        raise TypeError(f"trades column {time_column!r} must be Datetime in UTC, got {dtype}")
    if dtype.time_zone != "UTC":
        raise ValueError(
            f"trades column {time_column!r} must hold UTC times (Datetime with time_zone='UTC'),"
            f" got {dtype}: convert with .dt.convert_time_zone('UTC') or replace_time_zone"
        )
    if not schema["trade_id"].is_integer():
        raise TypeError(f"trades column 'trade_id' must be an integer, got {schema['trade_id']}")
    for name in _FLOAT_INPUTS:
        if not schema[name].is_float():
            raise TypeError(f"trades column {name!r} must be Float64, got {schema[name]}")
    if schema["is_taker_buy"] != pl.Boolean:
        raise TypeError(
            f"trades column 'is_taker_buy' must be Boolean, got {schema['is_taker_buy']}"
        )


def _check_trade_values(frame: pl.DataFrame, timestamp: str) -> None:
    """Raise for nulls, and for prices, quantities or notionals that are not finite and > 0."""
    problems: list[str] = []
    counts = frame.select(
        pl.col("ts").null_count().alias("ts"),
        *[pl.col(c).null_count().alias(c) for c in ("trade_id", "is_taker_buy")],
        *[(~(pl.col(c).is_finite() & (pl.col(c) > 0))).sum().alias(c) for c in _FLOAT_INPUTS],
    ).row(0, named=True)
    if counts["ts"]:
        column = TIMESTAMP_COLUMNS[timestamp]
        hint = " (this source records no arrival time)" if timestamp == "true" else ""
        problems.append(f"{counts['ts']} trade(s) have a null {column}{hint}")
    problems += [
        f"{counts[c]} trade(s) have a null {c}" for c in ("trade_id", "is_taker_buy") if counts[c]
    ]
    problems += [
        f"{counts[c]} trade(s) have a {c} that is null, not finite or <= 0"
        for c in _FLOAT_INPUTS
        if counts[c]
    ]
    if problems:
        raise ValueError("invalid trades: " + "; ".join(problems))


def _in_time_order(frame: pl.DataFrame) -> bool:
    """Whether ``(ts, trade_id)`` strictly increases (one vectorised pass, no diff columns)."""
    if frame.height < 2:
        return True
    if not frame["ts"].is_sorted():
        return False
    ids = frame["trade_id"].to_numpy()
    if np.all(ids[1:] > ids[:-1]):  # the usual case: ids increase with time, ties included
        return True
    ts = frame["ts"].to_numpy()
    later, earlier = ts[1:], ts[:-1]
    return bool(np.all((later > earlier) | ((later == earlier) & (ids[1:] > ids[:-1]))))


def _normalized_chunk(trades: Trades, timestamp: str, end_us: int) -> pl.DataFrame:
    """Trades with integer time ``ts`` (µs) before ``end``, sorted by ``(ts, trade_id)``."""
    if not isinstance(trades, pl.DataFrame | pl.LazyFrame):
        raise TypeError(f"trades must be a polars DataFrame or LazyFrame, got {type(trades)}")
    lazy = trades.lazy()
    _check_trade_schema(lazy.collect_schema(), timestamp)
    frame = lazy.select(
        pl.col(TIMESTAMP_COLUMNS[timestamp]).dt.epoch("us").alias("ts"),
        pl.col("trade_id").cast(pl.Int64),
        *[pl.col(c).cast(pl.Float64) for c in _FLOAT_INPUTS],
        pl.col("is_taker_buy"),
    ).collect()
    _check_trade_values(frame, timestamp)
    if frame.height and frame["ts"].max() >= end_us:  # a filter copies the chunk: only if needed
        frame = frame.filter(pl.col("ts") < end_us)
    if not _in_time_order(frame):
        frame = frame.sort("ts", "trade_id")
    return frame.set_sorted("ts")


def _trade_partials(trades: pl.DataFrame, width: int) -> pl.DataFrame:
    """Bin sorted trades into partials of ``width`` µs (only bars that have trades)."""
    buy = pl.col("is_taker_buy")
    qty = pl.col("base_qty")
    notional = pl.col("notional")
    sides = {"buy": buy, "sell": ~buy}
    sizes = {
        "small": notional < SMALL_MEDIUM_EDGE,
        "medium": (notional >= SMALL_MEDIUM_EDGE) & (notional < MEDIUM_LARGE_EDGE),
        "large": notional >= MEDIUM_LARGE_EDGE,
    }
    masked = [
        pl.when(buy).then(qty).otherwise(0.0).alias("taker_buy_volume"),
        pl.when(buy).then(0.0).otherwise(qty).alias("taker_sell_volume"),
    ]
    for side in SIDES:
        for size in SIZES:
            in_bucket = sides[side] & sizes[size]
            masked.append(
                pl.when(in_bucket)
                .then(notional)
                .otherwise(0.0)
                .alias(bucket_field(side, size, "order_volume"))
            )
            masked.append(in_bucket.alias(bucket_field(side, size, "order_count")))  # bits
    return (
        trades.lazy()
        .select(
            (pl.col("ts") // width * width).alias("bin"),
            *masked,
            pl.col("price").alias("close"),
            pl.col("ts").alias("close_ts"),
            pl.col("trade_id").alias("close_id"),
        )
        .set_sorted("bin")
        .group_by("bin", maintain_order=True)
        .agg(
            *[pl.col(c).sum() for c in _VOLUME_COLUMNS + _BUCKET_NOTIONAL],
            *[pl.col(c).sum().cast(pl.Int64) for c in _BUCKET_COUNT],
            *[pl.col(c).last() for c in _CLOSE_COLUMNS],
        )
        .collect()
    )


def _finest_partials(trades: pl.DataFrame, width: int) -> pl.DataFrame:
    """:func:`_trade_partials` of sorted trades, binned in slices of whole hours (whole bars when
    they are longer) of about ``_SLICE_ROWS`` trades: the same partials, with a slice's
    per-trade temporaries in memory instead of the whole chunk's."""
    if trades.height <= _SLICE_ROWS:
        return _trade_partials(trades, width)
    unit = max(width, _HOUR_US) if _HOUR_US % width == 0 or width % _HOUR_US == 0 else width
    ts = trades["ts"].to_numpy()
    edges = np.flatnonzero(np.diff(ts // unit)) + 1  # where a new hour (or bar) begins
    cuts, last = [0], 0
    for edge in edges.tolist():
        if edge - last >= _SLICE_ROWS:
            cuts.append(edge)
            last = edge
    cuts.append(trades.height)
    return pl.concat(
        [_trade_partials(trades.slice(a, b - a), width) for a, b in itertools.pairwise(cuts)]
    ).set_sorted("bin")


def _roll_up(partials: pl.DataFrame, width: int) -> pl.DataFrame:
    """Partials of a finer interval (sorted by bin) summed into bars of ``width`` µs."""
    return (
        partials.lazy()
        .with_columns(pl.col("bin") // width * width)
        .set_sorted("bin")
        .group_by("bin", maintain_order=True)
        .agg(*[pl.col(c).sum() for c in _SUM_COLUMNS], *[pl.col(c).last() for c in _CLOSE_COLUMNS])
        .collect()
    )


def _merge_partials(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """One partial per bar, sorted by bin, from pieces that may share bars."""
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=_PARTIAL_SCHEMA)
    frame = pl.concat(parts, how="vertical")
    disjoint_in_order = all(a["bin"][-1] < b["bin"][0] for a, b in itertools.pairwise(parts))
    if disjoint_in_order:
        return frame.set_sorted("bin")
    return (
        frame.sort("bin", "close_ts", "close_id")
        .group_by("bin", maintain_order=True)
        .agg(*[pl.col(c).sum() for c in _SUM_COLUMNS], *[pl.col(c).last() for c in _CLOSE_COLUMNS])
        .set_sorted("bin")
    )


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator`` as Float64, null where the denominator is 0."""
    return pl.when(denominator != 0).then(numerator.cast(pl.Float64) / denominator)


def _entropy_bits(buy: pl.Expr, sell: pl.Expr) -> pl.Expr:
    """Binary Shannon entropy (bits) of the buy share, 0 log 0 = 0; null when both are 0."""
    total = buy + sell

    def term(part: pl.Expr) -> pl.Expr:
        share = part / total
        return pl.when((part > 0) & (part < total)).then(-share * share.log(2)).otherwise(0.0)

    return pl.when(total > 0).then((term(buy) + term(sell)).clip(0.0, 1.0))


def flow_field_exprs() -> list[pl.Expr]:
    """The 36 fields, in the spec's order, from dense per-bar sums and ``flow_toxicity_score``."""
    vb, vs = pl.col("taker_buy_volume"), pl.col("taker_sell_volume")
    notional = {
        side: pl.sum_horizontal(bucket_field(side, z, "order_volume") for z in SIZES)
        for side in SIDES
    }
    count = {
        side: pl.sum_horizontal(bucket_field(side, z, "order_count") for z in SIZES)
        for side in SIDES
    }
    fields = {
        "taker_buy_volume": vb,
        "taker_sell_volume": vs,
        "taker_buy_count": count["buy"],
        "taker_sell_count": count["sell"],
        "volume_delta": vb - vs,
        "volume_delta_notional": notional["buy"] - notional["sell"],
        "flow_entropy": _entropy_bits(vb, vs),
        "flow_toxicity_score": pl.col("flow_toxicity_score"),
        "taker_buy_sell_ratio": _ratio(vb, vs),
        "taker_buy_sell_count_ratio": _ratio(count["buy"], count["sell"]),
        "taker_buy_sell_percentage": _ratio(vb, vb + vs),
        "taker_buy_sell_count_percentage": _ratio(count["buy"], count["buy"] + count["sell"]),
    }
    for side in SIDES:
        for size in SIZES:
            bucket_notional = pl.col(bucket_field(side, size, "order_volume"))
            bucket_count = pl.col(bucket_field(side, size, "order_count"))
            fields[bucket_field(side, size, "order_volume")] = bucket_notional
            fields[bucket_field(side, size, "order_count")] = bucket_count
            fields[bucket_field(side, size, "order_percentage")] = _ratio(
                bucket_notional, notional[side]
            )
            fields[bucket_field(side, size, "order_count_percentage")] = _ratio(
                bucket_count, count[side]
            )
    return [fields[name].alias(name) for name in FLOW_FIELDS]


class FlowBarsEngine:
    """Accumulates trades chunk by chunk (any order, any size) and returns the bars at the end,
    or, with trades fed in time order, part by part as they are done (:meth:`bars_before`).

    Memory is bounded by one chunk of trades plus the finest interval's partials and bars over
    ``[start, end)`` (over the part, with :meth:`bars_before`): trades are never kept, only
    per-bar partials.
    """

    def __init__(
        self,
        start: datetime | date,
        end: datetime | date,
        *,
        intervals: Iterable[str] = ALL_INTERVALS,
        timestamp: str = "exchange",
        window: int = 60,
        horizon: int = 5,
    ) -> None:
        self.start_us = to_utc_micros(start)
        self.end_us = to_utc_micros(end)
        if self.end_us <= self.start_us:
            raise ValueError(f"end ({end}) must be after start ({start})")
        if timestamp not in TIMESTAMP_COLUMNS:
            raise ValueError(
                f"unknown timestamp {timestamp!r}; supported: {sorted(TIMESTAMP_COLUMNS)}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an integer >= 2 bars, got {window!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1 bar, got {horizon!r}")
        self.intervals = sorted_intervals(tuple(intervals))
        for interval in self.intervals:
            width = interval_micros(interval)
            if self.start_us % width or self.end_us % width:
                raise ValueError(
                    f"start ({start}) and end ({end}) must be aligned to the {interval} bars"
                    " (bars are aligned to the UTC epoch)"
                )
        self.timestamp = timestamp
        self.window = window
        self.horizon = horizon
        self.trades_in_range = 0
        self._history_bars = window + horizon
        self._current: dict[str, list[pl.DataFrame]] = {i: [] for i in self.intervals}
        # per interval, the last ``window + horizon + 1`` bars with trades before the bars still
        # to make: history before ``start``, then the bars already returned by :meth:`bars_before`
        self._history: dict[str, pl.DataFrame] = {}
        self._made_until = dict.fromkeys(self.intervals, self.start_us)  # bars made before this
        self._grid_start: dict[str, int] = {}  # where the dense grid of the whole period starts
        self._sealed_us: int | None = None  # no trade before this may come any more

    @property
    def settings(self) -> dict[str, int | str]:
        """The settings the rolling fields use, to be recorded with the output."""
        return {"timestamp": self.timestamp, "window": self.window, "horizon": self.horizon}

    def add(self, trades: Trades) -> None:
        """Take one chunk of normalized trades (trades at or after ``end`` are ignored)."""
        chunk = _normalized_chunk(trades, self.timestamp, self.end_us)
        if not chunk.height:
            return
        if self._sealed_us is not None and chunk["ts"][0] < self._sealed_us:
            raise ValueError(
                f"trades at {chunk['ts'][0]} µs came after the bars before {self._sealed_us} µs"
                " were made (bars_before): feed the trades in time order"
            )
        self.trades_in_range += int((chunk["ts"] >= self.start_us).sum())
        partials: pl.DataFrame | None = None
        for interval in self.intervals:
            width = interval_micros(interval)
            partials = (
                _finest_partials(chunk, width) if partials is None else _roll_up(partials, width)
            )
            current = partials.filter(pl.col("bin") >= self.start_us)
            if current.height:
                self._current[interval].append(current)
            history = partials.filter(pl.col("bin") < self.start_us)
            if history.height:
                kept = (
                    [self._history[interval], history] if interval in self._history else [history]
                )
                self._history[interval] = _merge_partials(kept).tail(self._history_bars + 1)

    def seed(self, state: dict[str, pl.DataFrame]) -> None:
        """Take the carried state of the period before ``start`` (see :meth:`carry`)."""
        if self._sealed_us is not None:
            raise ValueError("seed the engine before any bars are made")
        for interval in self.intervals:
            partials = state.get(interval)
            if partials is None:
                raise ValueError(f"the carried state has no {interval} bars")
            before = partials.filter(pl.col("bin") < self.start_us)
            if before.height != partials.height:
                raise ValueError(
                    f"the carried {interval} state reaches past start ({self.start_us})"
                )
            kept = [self._history[interval], before] if interval in self._history else [before]
            self._history[interval] = _merge_partials(kept).tail(self._history_bars + 1)

    def carry(self) -> dict[str, pl.DataFrame]:
        """Per interval, the last ``window + horizon + 1`` bars with trades before ``end``.

        Call before :meth:`finish`. Each chunk's partials are sorted by bar, so the last bars
        overall are among the last ``window + horizon + 1`` of every chunk.
        """
        keep = self._history_bars + 1
        carried = {}
        for interval in self.intervals:
            parts = [p.tail(keep) for p in self._current[interval]]
            if interval in self._history:
                parts.insert(0, self._history[interval])
            carried[interval] = _merge_partials(parts).tail(keep)
        return carried

    def bars_before(
        self, cut: datetime | date, *, at_least: int = 1
    ) -> Iterator[tuple[str, pl.DataFrame]]:
        """``(interval, bars)`` not made yet that open before ``cut`` and end by it, finest
        first: each interval's bars from where the last call stopped to ``cut`` rounded down to
        the interval, for the intervals with at least ``at_least`` such bars (the others wait:
        making a few bars at a time costs more than holding them).

        The caller promises that no trade before ``cut`` comes any more (:meth:`add` refuses
        one): feed the trades in time order, e.g. a UTC day at a time, and take each day's bars
        after it, so only a day's bars are held at a time. The bars are the same, bit for bit,
        as those of :meth:`iter_bars` without this call.
        """
        cut_us = min(to_utc_micros(cut), self.end_us)
        self._sealed_us = max(cut_us, self._sealed_us or cut_us)
        for interval in self.intervals:
            width = interval_micros(interval)
            stop = cut_us - cut_us % width
            if stop - self._made_until[interval] >= max(at_least, 1) * width:
                yield interval, self._bars_until(interval, stop)

    def iter_bars(self) -> Iterator[tuple[str, pl.DataFrame]]:
        """``(interval, bars over [start, end))`` one interval at a time, finest first; after
        :meth:`bars_before`, only the bars it has not returned.

        Each interval's partials are freed once its bars are made, so only one interval's bars
        need to be held at a time.
        """
        self._sealed_us = self.end_us
        for interval in self.intervals:
            yield interval, self._bars_until(interval, self.end_us)

    def finish(self) -> dict[str, pl.DataFrame]:
        """The bars of every interval over ``[start, end)``, keyed by interval name."""
        return dict(self.iter_bars())

    def _bars_until(self, interval: str, stop: int) -> pl.DataFrame:
        """The bars of ``interval`` from where they were last made to ``stop``; their partials
        are freed and the last bars with trades kept as the next bars' history."""
        parts = self._current[interval]
        done = [p.filter(pl.col("bin") < stop) for p in parts]
        self._current[interval] = [
            rest for p in parts if (rest := p.filter(pl.col("bin") >= stop)).height
        ]
        parts.clear()
        history = self._history.get(interval, pl.DataFrame(schema=_PARTIAL_SCHEMA))
        if interval not in self._grid_start:  # from the history before start, as it is now
            grid_start = self.start_us
            if history.height:
                width = interval_micros(interval)
                grid_start = max(self.start_us - self._history_bars * width, history["bin"][0])
            self._grid_start[interval] = grid_start
        made = _merge_partials(done)
        del done
        bars = self._interval_bars(interval, history, made, stop)
        self._history[interval] = _merge_partials([history, made.tail(self._history_bars + 1)])
        self._history[interval] = self._history[interval].tail(self._history_bars + 1)
        self._made_until[interval] = stop
        return bars

    def _interval_bars(
        self, interval: str, history: pl.DataFrame, made: pl.DataFrame, stop: int
    ) -> pl.DataFrame:
        """The bars of ``interval`` over ``[made until, stop)`` from the last bars with trades
        before them (``history``) and their merged partials ``made``.

        The dense grid starts ``window + horizon`` bars before the first bar made (never before
        the whole period's grid start): all the rolling fields of these bars reach back to.
        """
        width = interval_micros(interval)
        first = self._made_until[interval]
        grid_start = max(first - self._history_bars * width, self._grid_start[interval])
        seed = history.filter(pl.col("bin") < grid_start)["close"]
        seed_close = seed[-1] if seed.len() else None
        sparse = _merge_partials([history.filter(pl.col("bin") >= grid_start), made])
        grid = pl.DataFrame({"bin": pl.int_range(grid_start, stop, width, eager=True)})
        dense = (
            grid.join(sparse, on="bin", how="left", maintain_order="left")
            .with_columns(
                *[pl.col(c).fill_null(0) for c in _SUM_COLUMNS],
                pl.col("close").forward_fill().fill_null(pl.lit(seed_close, dtype=pl.Float64)),
            )
            .with_columns(
                volume_delta_notional=pl.sum_horizontal(_BUCKET_NOTIONAL[:3])
                - pl.sum_horizontal(_BUCKET_NOTIONAL[3:])
            )
        )
        del grid, sparse
        dense = dense.with_columns(toxicity_score(dense, window=self.window, horizon=self.horizon))
        return (
            dense.lazy()
            .filter(pl.col("bin") >= first)
            .select(pl.col("bin").cast(pl.Datetime("us")).alias("time"), *flow_field_exprs())
            .cast(BAR_SCHEMA)
            .collect()
        )


def state_to_frame(state: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """A carried state as one frame: ``interval`` then the partial columns, bars in order."""
    return pl.concat(
        [p.select(pl.lit(i).alias("interval"), *_PARTIAL_SCHEMA) for i, p in state.items()]
        or [pl.DataFrame(schema={"interval": pl.String, **_PARTIAL_SCHEMA})],
        how="vertical",
    )


def state_from_frame(frame: pl.DataFrame, intervals: Iterable[str]) -> dict[str, pl.DataFrame]:
    """The carried state stored by :func:`state_to_frame` for ``intervals`` (none: no bars)."""
    expected = {"interval": pl.String(), **_PARTIAL_SCHEMA}
    if dict(frame.schema) != expected:
        raise ValueError(f"not a carried state: columns {dict(frame.schema)}")
    return {
        interval: frame.filter(pl.col("interval") == interval).drop("interval").sort("bin")
        for interval in intervals
    }


def _chunks(trades: Trades | Iterable[Trades]) -> Iterable[Trades]:
    if isinstance(trades, pl.DataFrame | pl.LazyFrame):
        return (trades,)
    return trades


def flow_bars_all(
    trades: Trades | Iterable[Trades],
    start: datetime | date,
    end: datetime | date,
    *,
    intervals: Iterable[str] = ALL_INTERVALS,
    timestamp: str = "exchange",
    window: int = 60,
    horizon: int = 5,
) -> dict[str, pl.DataFrame]:
    """Flow bars on the dense grid ``[start, end)`` for every interval, keyed by interval name.

    ``trades`` is a frame of normalized trades or an iterable of such frames (chunks, e.g.
    one day each). Trades before ``start`` are history: they feed close, rv and the z-scores.
    """
    engine = FlowBarsEngine(
        start, end, intervals=intervals, timestamp=timestamp, window=window, horizon=horizon
    )
    for chunk in _chunks(trades):
        engine.add(chunk)
    return engine.finish()


def flow_bars(
    trades: Trades | Iterable[Trades],
    interval: str,
    start: datetime | date,
    end: datetime | date,
    *,
    timestamp: str = "exchange",
    window: int = 60,
    horizon: int = 5,
) -> pl.DataFrame:
    """Flow bars of one ``interval`` on the dense grid ``[start, end)``: ``time`` + 36 fields."""
    return flow_bars_all(
        trades,
        start,
        end,
        intervals=(interval,),
        timestamp=timestamp,
        window=window,
        horizon=horizon,
    )[interval]
