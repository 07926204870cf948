"""Our bars against the exchange's own aggregation (klines, candles): the comparison maths, no I/O.

*Ours* are per-period figures made from the bars (:func:`bar_figures`) plus, where the venue's
trades carry the underlying fills, their count (:func:`fill_counts`). *Theirs*
(:class:`ExchangeFigures`) is a frame with ``time`` (period start, UTC) and the figures the
exchange publishes, any of :data:`FIGURES` (a figure it does not publish is not compared), and
optionally ``{figure}_decimals``: the decimals the exchange printed that value with (or
``{figure}_tolerance``: an absolute tolerance, where the exchange rounds each fill).

Equal means: counts identical; a volume within rounding of the exchange's printed precision,
``|ours - theirs| <= 0.5 * 10**-d + 1e-9 * |theirs|`` (``d`` its decimals; unknown: only the
relative term), because the exchange's figure is an exact decimal and ours a float sum.
A period the exchange has and we have no trades in (or no bar) is one *we lack*; a period we
have trades in and the exchange has no row for is one *the exchange lacks*: both differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

FIGURES = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "count")
FIGURE_MEANING = {
    "volume": "base-asset volume",
    "quote_volume": "quote (USD) notional",
    "taker_buy_volume": "taker-buy base volume",
    "taker_buy_quote_volume": "taker-buy quote notional",
    "count": "underlying trades (fills)",
}
RELATIVE_TOLERANCE = 1e-9
WORST_ROWS = 10
FIRST_ROWS = 10
PASSED, FAILED, UNAVAILABLE = "passed", "failed", "unavailable"
PARTIAL = "partial"  # all compared agree, but the exchange has nothing for some days


@dataclass(frozen=True)
class ExchangeFigures:
    """What the exchange published for a span: ``frame`` (``time`` + figures, see the module),
    ``sources`` (each file or request read: name, url, sha256, checksum_verified), the UTC
    days it has nothing for (``days_missing``: those are not compared), and ``reason`` when it
    has nothing at all (``frame`` None: the check is not made)."""

    frame: pl.DataFrame | None
    sources: list[dict[str, Any]] = field(default_factory=list)
    days_missing: list[date] = field(default_factory=list)
    reason: str = ""

    @classmethod
    def unavailable(cls, reason: str) -> ExchangeFigures:
        """Nothing to compare with, and why (no klines published yet, API unreachable)."""
        return cls(None, reason=reason)


@dataclass
class ExchangeCheck:
    """The verdict of one instrument-month against the exchange's figures."""

    status: str  # passed, failed, partial or unavailable
    unit: str  # "minute" or "day": what one compared row is
    compared: int = 0
    equal: int = 0
    figures: list[str] = field(default_factory=list)
    first_differing: list[str] = field(default_factory=list)  # "YYYY-MM-DD HH:MM"
    worst: list[dict[str, Any]] = field(default_factory=list)
    exchange_lacks: list[str] = field(default_factory=list)
    we_lack: list[str] = field(default_factory=list)
    days_not_compared: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    days: list[dict[str, Any]] = field(default_factory=list)  # per day: ours vs theirs, differing

    @property
    def reconciled(self) -> bool | None:
        """True passed, False failed, None not (wholly) reconciled: the exchange had nothing,
        or nothing for some days."""
        return {PASSED: True, FAILED: False}.get(self.status)

    def to_json(self) -> dict[str, Any]:
        """The verdict as a JSON-able dict (stored beside the month, shown in the UI)."""
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ExchangeCheck:
        """The verdict stored by :meth:`to_json`."""
        return cls(**document)


def bar_figures(bars: pl.DataFrame) -> pl.DataFrame:
    """Per bar: ``time``, ``volume`` and ``taker_buy_volume`` (base), ``quote_volume`` and
    ``taker_buy_quote_volume`` (USD notional, the size buckets summed), ``trades`` (records)."""
    buy = [f"taker_buy_{s}_order_volume" for s in ("small", "medium", "large")]
    sell = [f"taker_sell_{s}_order_volume" for s in ("small", "medium", "large")]
    return bars.select(
        "time",
        (pl.col("taker_buy_volume") + pl.col("taker_sell_volume")).alias("volume"),
        pl.sum_horizontal(buy + sell).alias("quote_volume"),
        pl.col("taker_buy_volume"),
        pl.sum_horizontal(buy).alias("taker_buy_quote_volume"),
        (pl.col("taker_buy_count") + pl.col("taker_sell_count")).alias("trades"),
    )


def fill_counts(trades: pl.LazyFrame, every: str) -> pl.LazyFrame:
    """Underlying trades per period (``every``: ``1m`` or ``1d``) of exchange-time trades:
    ``last_trade_id - first_trade_id + 1`` of an aggregated trade, else 1."""
    fills = (pl.col("last_trade_id") - pl.col("first_trade_id") + 1).fill_null(1)
    return (
        trades.group_by(pl.col("exchange_ts").dt.truncate(every).dt.replace_time_zone(None))
        .agg(fills.sum().alias("count"))
        .rename({"exchange_ts": "time"})
    )


def _naive(frame: pl.DataFrame) -> pl.DataFrame:
    """``time`` as a naive UTC datetime in µs (the bars' label)."""
    time = frame.schema["time"]
    column = pl.col("time")
    if isinstance(time, pl.Datetime) and time.time_zone is not None:
        column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return frame.with_columns(column.cast(pl.Datetime("us")))


def _within(figure: str, theirs: pl.DataFrame) -> pl.Expr:
    """Whether our figure equals theirs (see the module's tolerance)."""
    ours, exchange = pl.col(figure), pl.col(f"{figure}_x")
    if figure == "count":
        return ours == exchange
    slack = RELATIVE_TOLERANCE * exchange.abs()
    if f"{figure}_tolerance" in theirs.columns:
        slack = slack + pl.col(f"{figure}_tolerance").fill_null(0.0)
    elif f"{figure}_decimals" in theirs.columns:
        half_unit = 0.5 * pl.lit(10.0).pow(-pl.col(f"{figure}_decimals").cast(pl.Float64))
        slack = slack + half_unit.fill_null(0.0)
    return (ours - exchange).abs() <= slack


def _label(moment: datetime, unit: str) -> str:
    return f"{moment:%Y-%m-%d}" if unit == "day" else f"{moment:%Y-%m-%d %H:%M}"


def _joined(
    ours: pl.DataFrame, theirs: pl.DataFrame, span: tuple[datetime, datetime], skip: list[date]
) -> pl.DataFrame:
    """Ours and theirs (suffix ``_x``) side by side over the span, outer-joined on time."""
    start, end = (m.replace(tzinfo=None) for m in span)
    inside = pl.col("time").is_between(start, end, closed="left") & ~pl.col("time").dt.date().is_in(
        skip
    )
    theirs = _naive(theirs).filter(inside).with_columns(pl.lit(True).alias("_theirs"))
    ours = _naive(ours).filter(inside).with_columns(pl.lit(True).alias("_ours"))
    joined = ours.join(theirs, on="time", how="full", coalesce=True, suffix="_x")
    return joined.with_columns(pl.col("_ours", "_theirs").fill_null(False)).sort("time")


def compare(
    ours: pl.DataFrame,
    theirs: ExchangeFigures,
    span: tuple[datetime, datetime],
    unit: str = "minute",
) -> ExchangeCheck:
    """Our per-period figures (``time`` + figures + ``trades``) against the exchange's over
    ``span`` (its days without exchange figures left out)."""
    if theirs.frame is None:
        return ExchangeCheck(UNAVAILABLE, unit, sources=theirs.sources, reason=theirs.reason)
    figures = [f for f in FIGURES if f in theirs.frame.columns and f in ours.columns]
    renamed = theirs.frame.rename({f: f"{f}_x" for f in figures})
    joined = _joined(ours, renamed, span, theirs.days_missing)
    active = pl.col("trades").fill_null(0) > 0
    their_active = pl.any_horizontal([pl.col(f"{f}_x").fill_null(0) > 0 for f in figures])
    lacks = pl.col("_ours") & active & ~pl.col("_theirs")
    we_lack = pl.col("_theirs") & their_active & ~(pl.col("_ours") & active)
    both = pl.col("_ours") & pl.col("_theirs")
    checks = [(~both | _within(f, renamed).fill_null(False)).alias(f"{f}_ok") for f in figures]
    rows = joined.with_columns(
        *checks, lacks.alias("_lacks"), we_lack.alias("_we_lack")
    ).with_columns(
        (
            pl.all_horizontal([f"{f}_ok" for f in figures])
            & ~pl.col("_lacks")
            & ~pl.col("_we_lack")
        ).alias("_equal")
    )
    counted = rows.filter(pl.col("_ours") | pl.col("_theirs"))
    differing = counted.filter(~pl.col("_equal"))
    agreed = PARTIAL if theirs.days_missing else PASSED
    check = ExchangeCheck(
        FAILED if differing.height else agreed,
        unit,
        compared=counted.height,
        equal=counted.height - differing.height,
        figures=figures,
        first_differing=[_label(t, unit) for t in differing["time"].head(FIRST_ROWS)],
        worst=_worst(differing, figures, unit),
        exchange_lacks=[_label(t, unit) for t in rows.filter("_lacks")["time"]],
        we_lack=[_label(t, unit) for t in rows.filter("_we_lack")["time"]],
        days_not_compared=[str(d) for d in theirs.days_missing],
        sources=theirs.sources,
        days=_days(counted, figures),
        reason=f"no exchange figures for {len(theirs.days_missing)} day(s)"
        if theirs.days_missing
        else "",
    )
    return check


def _worst(differing: pl.DataFrame, figures: list[str], unit: str) -> list[dict[str, Any]]:
    """The rows that differ most (by relative difference of any figure), with both figures."""
    if not differing.height:
        return []
    gaps = [
        ((pl.col(f).fill_null(0) - pl.col(f"{f}_x").fill_null(0)).abs()
         / pl.max_horizontal(pl.col(f"{f}_x").abs().fill_null(0), pl.lit(1e-12)))
        .alias(f"{f}_gap")
        for f in figures
    ]  # fmt: skip
    ranked = differing.with_columns(gaps).with_columns(
        pl.max_horizontal([f"{f}_gap" for f in figures]).alias("_gap")
    )
    worst = ranked.sort("_gap", descending=True, nulls_last=True).head(WORST_ROWS)
    out = []
    for row in worst.iter_rows(named=True):
        entry: dict[str, Any] = {"time": _label(row["time"], unit)}
        for f in figures:
            entry[f] = {"ours": row[f], "exchange": row[f"{f}_x"]}
        out.append(entry)
    return out


def _days(counted: pl.DataFrame, figures: list[str]) -> list[dict[str, Any]]:
    """Per UTC day: our and the exchange's volume (base, else the first figure) and the
    periods that differ (the picture's data)."""
    figure = "volume" if "volume" in figures else (figures[0] if figures else None)
    if figure is None or not counted.height:
        return []
    daily = (
        counted.group_by(pl.col("time").dt.date().alias("day"))
        .agg(
            pl.col(figure).fill_null(0).sum().alias("ours"),
            pl.col(f"{figure}_x").fill_null(0).sum().alias("exchange"),
            (~pl.col("_equal")).sum().alias("differing"),
        )
        .sort("day")
    )
    return [
        {"day": str(r["day"]), "figure": figure, "ours": r["ours"], "exchange": r["exchange"],
         "differing": r["differing"]}
        for r in daily.iter_rows(named=True)
    ]  # fmt: skip


def decimals(printed: pl.Expr) -> pl.Expr:
    """The decimals a number is printed with (``"186.965"`` -> 3, ``"206"`` -> 0)."""
    fraction = printed.str.split(".").list.get(1, null_on_oob=True)
    return fraction.str.len_chars().fill_null(0).cast(pl.Int32)
