"""OKX's own candles: ``GET /api/v5/market/history-candles`` (client, contract dating, mirror).

``?instId=...&bar=1Dutc|1H|1m&after=<ms>&limit=100`` answers ``{"code": "0", "msg": "",
"data": [[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm], ...]}``, newest first, every field
a string, ``ts`` the candle's start in epoch ms; ``after`` returns the records earlier than
(exclusive) the ts given, ``before`` the newer ones; ``limit`` at most 100 (the default). For a
swap ``vol`` counts contracts, ``volCcy`` the base currency (inverse swaps too: BTC for
BTC-USD-SWAP) and ``volCcyQuote`` the quote currency (USDT for BTC-USDT-SWAP, USD for
BTC-USD-SWAP); ``confirm`` is ``1`` once the period has ended. ``1Dutc`` days are UTC days (``1D``
would be UTC+8). Rate limit: 20 requests per 2 s per IP (:data:`PACE` between requests).
The REST root is the catalog's (``FLOW_ASSETS_OKX_API_URL``).

* :class:`CandleClient` pages backwards with ``after`` (= the oldest ts seen) to a start time.
* :func:`daily_volumes`: a month's UTC-day base and quote volumes, for reconciling ``1d`` bars.
* :func:`date_contracts`: every listed swap's contract values read from its candles since the
  last reading (:mod:`flow_assets.catalog.contract_dating` does the maths).
* :func:`minute_candles`, :func:`with_candles`, :func:`answer_candles`: the local mirror's
  candles, computed from normalized trades in the exact answer format.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import requests

from flow_assets.catalog.contract_dating import (
    CANDLE_SCHEMA,
    DAY,
    HOUR,
    MINUTE,
    ContractDating,
    Timeline,
    next_state,
    timeline,
)
from flow_assets.catalog.fetch import CatalogFetchError, get_json
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import EPOCH, CatalogError, CatalogShapeError
from flow_assets.metrics.exchange_check import ExchangeFigures

PATH = "/api/v5/market/history-candles"
PAGE = 100  # rows per request (the documented maximum)
PACE = 0.1  # seconds between requests: 20 per 2 s per IP
BARS: dict[str, timedelta] = {"1m": MINUTE, "1H": HOUR, "1Dutc": DAY}
NO_SUCH_INSTRUMENT = "51001"  # OKX's code for an instId it does not know
RAW_COLUMNS = ("ts", "o", "h", "l", "c", "vol", "volCcy", "volCcyQuote", "confirm")


class CandleClient:
    """History candles of OKX at ``api_url`` through ``session`` (retries), ``pace`` seconds
    apart at least; ``requests`` counts the requests made."""

    def __init__(self, api_url: str, session: requests.Session, pace: float = PACE) -> None:
        self.url = api_url.rstrip("/") + PATH
        self.session = session
        self.pace = pace
        self.requests = 0
        self._last = 0.0

    def page(self, inst_id: str, bar: str, after: int | None) -> list[list[str]]:
        """One answer's rows (newest first): the ``limit`` rows before ``after`` (ms)."""
        wait = self._last + self.pace - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        params = {"instId": inst_id, "bar": bar, "limit": str(PAGE)}
        if after is not None:
            params["after"] = str(after)
        document = get_json(self.session, self.url, params)
        self._last = time.monotonic()
        self.requests += 1
        return _rows(document, f"{self.url} {inst_id} {bar}")

    def raw(
        self, inst_id: str, bar: str, start: datetime | None, end: datetime | None = None
    ) -> pl.DataFrame:
        """The answer rows (strings; ``ts`` as int ms) of candles starting in [start, end)."""
        rows: list[list[str]] = []
        after = None if end is None else ms(end)
        while True:
            page = self.page(inst_id, bar, after)
            rows += page
            oldest = int(page[-1][0]) if page else None
            if oldest is None or len(page) < PAGE or (start and oldest <= ms(start)):
                break
            after = oldest
        frame = _raw_frame(rows)
        low = ms(start) if start is not None else None
        return frame.filter(pl.col("ts") >= low) if low is not None else frame

    def candles(
        self, inst_id: str, bar: str, start: datetime | None, end: datetime | None = None
    ) -> pl.DataFrame:
        """Candles of ``bar`` starting in [start, end) (:data:`CANDLE_SCHEMA`), oldest first."""
        return as_candles(self.raw(inst_id, bar, start, end))


def _rows(document: object, where: str) -> list[list[str]]:
    if not isinstance(document, dict) or "code" not in document:
        raise CatalogShapeError(f"{where}: expected an object with 'code', got {document!r:.200}")
    if str(document["code"]) == NO_SUCH_INSTRUMENT:
        return []
    if str(document["code"]) != "0":
        raise CatalogFetchError(f"OKX error code {document['code']!r} from {where}: "
                                f"{document.get('msg')!r}")  # fmt: skip
    data = document.get("data")
    if not isinstance(data, list) or any(
        not isinstance(row, list) or len(row) < len(RAW_COLUMNS) for row in data
    ):
        raise CatalogShapeError(f"{where}: expected 'data' rows of {len(RAW_COLUMNS)} fields")
    return [[str(value) for value in row[: len(RAW_COLUMNS)]] for row in data]


def _raw_frame(rows: list[list[str]]) -> pl.DataFrame:
    schema = dict.fromkeys(RAW_COLUMNS, pl.String())
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    frame = frame.with_columns(pl.col("ts").cast(pl.Int64)).unique("ts", keep="first")
    return frame.sort("ts")


def as_candles(raw: pl.DataFrame) -> pl.DataFrame:
    """Answer rows as :data:`CANDLE_SCHEMA` candles, oldest first."""
    return raw.select(
        pl.lit(EPOCH, dtype=CANDLE_SCHEMA["time"])
        .dt.offset_by(pl.format("{}ms", pl.col("ts")))
        .alias("time"),
        pl.col("vol").cast(pl.Float64),
        pl.col("volCcy").cast(pl.Float64).alias("vol_ccy"),
        pl.col("volCcyQuote").cast(pl.Float64).alias("vol_ccy_quote"),
        (pl.col("confirm") == "1").alias("confirmed"),
    )


def _decimals(column: str) -> pl.Expr:
    """Digits after the point of a published decimal string."""
    return pl.col(column).str.split(".").list.get(1, null_on_oob=True).str.len_chars().fill_null(0)


def daily_volumes(
    api_url: str, session: requests.Session, inst_id: str, month: date
) -> pl.DataFrame:
    """OKX's own UTC-day volumes of ``inst_id`` in ``month``: ``time`` (the day's start, UTC),
    ``volume`` (base currency, ``volCcy``), ``quote_volume`` (quote currency, ``volCcyQuote``;
    USD for an inverse swap), ``volume_decimals`` / ``quote_volume_decimals`` (digits after the
    point OKX published: equal within half a unit of that digit), ``confirmed`` (the day ended).
    """
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    raw = CandleClient(api_url, session).raw(inst_id, "1Dutc", start, end)
    return as_candles(raw).select(
        "time",
        pl.col("vol_ccy").alias("volume"),
        pl.col("vol_ccy_quote").alias("quote_volume"),
        raw.select(_decimals("volCcy"))["volCcy"].cast(pl.Int32).alias("volume_decimals"),
        raw.select(_decimals("volCcyQuote"))["volCcyQuote"]
        .cast(pl.Int32)
        .alias("quote_volume_decimals"),
        "confirmed",
    )


def read_figures(
    api_url: str, session: requests.Session, inst_id: str, span: tuple[datetime, datetime]
) -> ExchangeFigures:
    """OKX's own volumes of the UTC days in ``span`` (the month's ``1Dutc`` candles, one
    request), what the month's ``1d`` bars are judged by; a day still running is left out."""
    start, end = span
    days = daily_volumes(api_url, session, inst_id, start.date().replace(day=1))
    source = {
        "name": f"GET {PATH} {inst_id} 1Dutc",
        "url": f"{api_url.rstrip('/')}{PATH}?instId={inst_id}&bar=1Dutc",
        "sha256": hashlib.sha256(days.write_csv().encode()).hexdigest(),
        "checksum_verified": False,
    }
    complete = days.filter(pl.col("confirmed") & pl.col("time").is_between(start, end, "left"))
    if complete.is_empty():
        return ExchangeFigures.unavailable(
            f"OKX has no complete daily candles of {inst_id} for {start:%Y-%m}"
        )
    return ExchangeFigures(complete.drop("confirmed"), [source])


# --- contract values ------------------------------------------------------------------------


def _day(at: datetime | None) -> datetime | None:
    return None if at is None else at.replace(hour=0, minute=0, second=0, microsecond=0)


def _read_one(
    client: CandleClient, listing: dict[str, Any], state: dict[str, Any] | None
) -> Timeline:
    """One swap's timeline from its daily candles since the last reading (else listing)."""
    native = listing["native"]
    since = state["through"] if state else listing["listed"]
    daily = client.candles(native, "1Dutc", _day(since))
    return timeline(
        daily,
        since=since,
        start_value=state["ct_val"] if state else None,
        final_value=listing["ct_val"],
        inverse=listing["kind"] == "inverse",
        fetch=lambda bar, start, end: client.candles(native, bar, start, end),
    )


def date_contracts(
    api_url: str,
    session: requests.Session,
    listings: pl.DataFrame,
    state: pl.DataFrame,
    pace: float = PACE,
) -> ContractDating:
    """Every listed swap's contract values from its candles since ``state`` (first reading:
    since listing); a swap whose candles cannot be had is named in ``unavailable``."""
    client = CandleClient(api_url, session, pace)
    read = {row["native"]: row for row in state.iter_rows(named=True)}
    timelines: dict[str, Timeline] = {}
    unavailable = []
    for listing in listings.filter(pl.col("delisted").is_null()).iter_rows(named=True):
        try:
            timelines[listing["native"]] = _read_one(client, listing, read.get(listing["native"]))
        except CatalogError:
            unavailable.append(listing["native"])
    exchange = listings["exchange"][0] if listings.height else ""
    new_state = next_state(state, exchange, timelines)
    return ContractDating(timelines, new_state, client.requests, unavailable)


# --- the local mirror -----------------------------------------------------------------------


def step_value(before: float, after: float, at: datetime) -> Callable[[datetime], float]:
    """A contract value that changes from ``before`` to ``after`` at ``at`` (tests, demo)."""
    return lambda ts: before if ts < at else after


def minute_candles(
    trades: pl.DataFrame, inverse: bool, contract_value_at: Callable[[datetime], float]
) -> pl.DataFrame:
    """The ``1m`` candles OKX would publish for normalized ``trades`` whose contracts were
    worth ``contract_value_at(ts)``: ``time``, ``o``/``h``/``l``/``c``, ``vol`` (contracts),
    ``vol_ccy`` (base), ``vol_ccy_quote`` (quote)."""
    values = pl.Series([contract_value_at(ts) for ts in trades["exchange_ts"]], dtype=pl.Float64)
    size = (pl.col("notional") if inverse else pl.col("base_qty")) / values
    return _aggregate(trades.sort("exchange_ts").with_columns(size.round(8).alias("_size")), "1m")


def _aggregate(frame: pl.DataFrame, bar: str) -> pl.DataFrame:
    """Candles of ``bar`` from trades (``_size`` column) or from finer candles."""
    step = {"1m": "1m", "1H": "1h", "1Dutc": "1d"}[bar]
    if "_size" in frame.columns:
        frame = frame.select(
            pl.col("exchange_ts").alias("time"),
            *[pl.col("price").alias(c) for c in "ohlc"],
            pl.col("_size").alias("vol"),
            pl.col("base_qty").alias("vol_ccy"),
            pl.col("notional").alias("vol_ccy_quote"),
        )
    return (
        frame.sort("time")
        .group_by(pl.col("time").dt.truncate(step), maintain_order=True)
        .agg(
            pl.col("o").first(),
            pl.col("h").max(),
            pl.col("l").min(),
            pl.col("c").last(),
            pl.col("vol", "vol_ccy", "vol_ccy_quote").sum(),
        )
    )


def with_candles(document: dict[str, Any], minutes: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """The mirror's OKX document serving ``minutes`` (``1m`` candles by instId, see
    :func:`minute_candles`) as history candles, beside its instruments."""
    bars = {inst: {bar: _aggregate(frame, bar) for bar in BARS} for inst, frame in minutes.items()}
    return document | {"_candles": {**document.get("_candles", {}), **bars}}


def _text(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _answer_rows(frame: pl.DataFrame, length: timedelta, now: datetime) -> list[list[str]]:
    return [
        [str(ms(t)), _text(o), _text(h), _text(low), _text(c), _text(v), _text(vc), _text(vq),
         "1" if t + length <= now else "0"]
        for t, o, h, low, c, v, vc, vq in frame.iter_rows()
    ]  # fmt: skip


def answer_candles(query: dict[str, list[str]], bars: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/v5/market/history-candles`` over the mirror's candles (``bars``: by instId,
    then bar), in OKX's format: strings, newest first, ``after``/``before`` exclusive,
    ``limit`` at most 100; an instrument without trades has no candles."""
    first = {key: values[0] for key, values in query.items()}
    bar, limit = first.get("bar", "1m"), first.get("limit", str(PAGE))
    if not first.get("instId"):
        return {"code": "50014", "msg": "Parameter instId can not be empty", "data": []}
    if bar not in BARS or not limit.isdigit() or not 0 < int(limit) <= PAGE:
        return {"code": "51000", "msg": "Parameter bar or limit error", "data": []}
    frame = bars.get(first["instId"], {}).get(bar)
    if frame is None:
        return {"code": "0", "msg": "", "data": []}
    at = pl.col("time").dt.epoch("ms")
    if "after" in first:
        frame = frame.filter(at < int(first["after"]))
    if "before" in first:
        frame = frame.filter(at > int(first["before"]))
    frame = frame.sort("time", descending=True).head(int(limit))
    rows = _answer_rows(frame.select("time", *"ohlc", "vol", "vol_ccy", "vol_ccy_quote"),
                        BARS[bar], datetime.now(UTC))  # fmt: skip
    return {"code": "0", "msg": "", "data": rows}
