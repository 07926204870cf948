"""Contract values dated by the exchange's own candles (pure: frames in, history rows out).

A candle counts its volume in contracts (``vol``), in the base currency (``vol_ccy``) and in
the quote currency (``vol_ccy_quote``), so the contract value in force over it follows: linear
``vol_ccy / vol`` (base units per contract), inverse ``vol_ccy_quote / vol`` (USD per
contract). A change shows on the daily candles as a day whose ratio lies between the values
before and after it (the change fell inside the day) or where the ratio steps (it fell between
two days' trades). That day is then narrowed to the hour (``1H`` candles of the day: the first
hour with volume not at the old value) and the hour to the minute (``1m`` candles of the hour,
same rule): the change is dated to the start of the first minute that traded at the new value.
Days without volume have no ratio: a change inside them needs no date (no trade to convert).

:func:`timeline` does this for one instrument with the candles it is given (``fetch``, injected:
the HTTP is the venue's, e.g. :mod:`flow_assets.venues.okx_candles`); its :class:`Timeline` is
laid over the stored history by :func:`flow_assets.catalog.contracts.merge_snapshot`, where the
snapshot rule (a change dated by the snapshot's time) remains only for what the candles cannot
show: no candles at all, or a value the snapshot lists that no complete day has traded yet.
Each history row says which rule dated its start (``dated_by``: :data:`DATED_BY`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from flow_assets.catalog.model import UTC_US

# How a history row's start was dated: the seed table, the instrument's listing time, the
# exchange's candles, or (fallback) the time of the catalog snapshot that first showed it.
DATED_BY = ("seed", "listing", "candles", "snapshot")
CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "time": UTC_US,  # the candle's start (UTC)
    "vol": pl.Float64(),  # contracts
    "vol_ccy": pl.Float64(),  # base currency
    "vol_ccy_quote": pl.Float64(),  # quote currency (USD for inverse swaps)
    "confirmed": pl.Boolean(),  # the candle's period has ended
}
# Per instrument, how far the daily candles were read (exclusive) and the value they showed last.
STATE_SCHEMA: dict[str, pl.DataType] = {
    "exchange": pl.String(),
    "native": pl.String(),
    "through": UTC_US,
    "ct_val": pl.Float64(),
}
REL_TOL = 1e-6  # two ratios are the same value (published decimals are far finer)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
# (bar, start, end) -> the candles of ``bar`` starting in [start, end), CANDLE_SCHEMA
Fetch = Callable[[str, datetime, datetime], pl.DataFrame]


@dataclass(frozen=True)
class Timeline:
    """What one instrument's candles say from ``since`` (null: since listing): its values,
    each from its start (the first at ``since``), read up to ``through`` (exclusive; the end of
    the last complete day). No segment: no day with volume, nothing learnt."""

    since: datetime | None
    segments: tuple[tuple[datetime | None, float], ...]
    through: datetime | None


@dataclass
class ContractDating:
    """A venue's candle reading for one catalog snapshot: the timelines of the instruments it
    could read, the new reading state (:data:`STATE_SCHEMA`), the requests made and the
    instruments whose candles could not be had (snapshot rule for them)."""

    timelines: dict[str, Timeline]
    state: pl.DataFrame
    requests: int = 0
    unavailable: list[str] = field(default_factory=list)


def empty_state() -> pl.DataFrame:
    """No instrument read yet."""
    return pl.DataFrame(schema=STATE_SCHEMA)


def same(a: float, b: float) -> bool:
    """Whether two contract values (or candle ratios) are the same value."""
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def snap(value: float, known: list[float]) -> float:
    """``value`` as the known value it equals, else rounded to 6 significant digits (contract
    values are round numbers; a ratio of published decimals is not exactly one)."""
    for candidate in known:
        if same(value, candidate):
            return candidate
    return float(f"{value:.6g}")


def ratios(candles: pl.DataFrame, inverse: bool) -> list[tuple[datetime, float]]:
    """``(start, contract value)`` of the candles with volume, oldest first."""
    numerator = pl.col("vol_ccy_quote") if inverse else pl.col("vol_ccy")
    traded = candles.filter((pl.col("vol") > 0) & (numerator > 0)).sort("time")
    return list(
        zip(traded["time"], (traded[numerator.meta.output_name()] / traded["vol"]), strict=False)
    )


def locate(candles: pl.DataFrame, before: float, inverse: bool) -> datetime | None:
    """Start of the first candle with volume not at the value ``before`` (None: all are)."""
    for start, ratio in ratios(candles, inverse):
        if not same(ratio, before):
            return start
    return None


def date_change(fetch: Fetch, day: datetime, before: float, inverse: bool) -> datetime:
    """The minute a change seen on ``day`` (a UTC day start) took effect: the day's ``1H``
    candles give the hour, that hour's ``1m`` candles the minute."""
    hour = locate(fetch("1H", day, day + DAY), before, inverse) or day
    return locate(fetch("1m", hour, hour + HOUR), before, inverse) or hour


def first_value(fetch: Fetch, days: list[tuple[datetime, float]], inverse: bool) -> float:
    """The value the first day with volume opened at: its ratio, unless it differs from the
    next day's (a change on that day): then its first minute with volume's."""
    day, ratio = days[0]
    if len(days) < 2 or same(ratio, days[1][1]):
        return ratio
    hours = ratios(fetch("1H", day, day + DAY), inverse)
    if not hours:
        return ratio
    minutes = ratios(fetch("1m", hours[0][0], hours[0][0] + HOUR), inverse)
    return snap((minutes or hours)[0][1], [days[1][1]])


def _new_value(days: list[tuple[datetime, float]], i: int, final: float | None) -> float:
    """The value after a change seen on day ``i``: the day's own ratio if the change is a step
    (the next day, or the snapshot's value, trades at it too), else the next one's (day ``i``
    mixes both values)."""
    ratio = days[i][1]
    after = days[i + 1][1] if i + 1 < len(days) else final
    return ratio if after is None or same(ratio, after) else after


def timeline(
    daily: pl.DataFrame,
    *,
    since: datetime | None,
    start_value: float | None,
    final_value: float | None,
    inverse: bool,
    fetch: Fetch,
) -> Timeline:
    """The values the complete daily candles ``daily`` (days from ``since``'s day) show, each
    change dated to the minute (``fetch``: the finer candles of a day or hour).

    ``start_value``: the value in force at ``since`` if known (else the first day's ratio);
    ``final_value``: the snapshot's value now, used to read the last day's ratio.
    """
    complete = daily.filter(pl.col("confirmed")).sort("time")
    through = complete["time"].max() + DAY if complete.height else since  # type: ignore[operator]
    known = [v for v in (start_value, final_value) if v is not None]
    days = [(start, snap(ratio, known)) for start, ratio in ratios(complete, inverse)]
    if not days:
        return Timeline(since, (), through)
    current = first_value(fetch, days, inverse) if start_value is None else start_value
    segments: list[tuple[datetime | None, float]] = [(since, current)]
    for i, (day, ratio) in enumerate(days):
        if same(ratio, current):
            continue
        after = _new_value(days, i, final_value)
        at = date_change(fetch, day, current, inverse)
        at = max(at, since) if since else at
        if at == segments[-1][0]:  # at the very start (e.g. midnight of a reading's first day)
            segments[-1] = (at, after)
        else:
            segments.append((at, after))
        current = after
    return Timeline(since, tuple(segments), through)


def state_rows(exchange: str, timelines: dict[str, Timeline]) -> list[dict[str, object]]:
    """The reading state after ``timelines`` (only those read through some day)."""
    return [
        {
            "exchange": exchange,
            "native": native,
            "through": line.through,
            "ct_val": line.segments[-1][1] if line.segments else None,
        }
        for native, line in timelines.items()
        if line.through is not None
    ]


def next_state(
    previous: pl.DataFrame, exchange: str, timelines: dict[str, Timeline]
) -> pl.DataFrame:
    """``previous`` with the rows of the instruments read now replaced; a value not learnt now
    (no day with volume) keeps the one read before."""
    rows = pl.DataFrame(state_rows(exchange, timelines), schema=STATE_SCHEMA, orient="row")
    old = previous.select(list(STATE_SCHEMA))
    rows = rows.join(old.select("native", old_val="ct_val"), on="native", how="left")
    rows = rows.with_columns(pl.coalesce("ct_val", "old_val").alias("ct_val")).drop("old_val")
    kept = old.join(rows.select("native"), on="native", how="anti")
    return pl.concat([kept, rows.select(list(STATE_SCHEMA))]).sort("native")
