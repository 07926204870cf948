"""``bybit-perps``: Bybit linear (USDT, USDC) and inverse perpetuals.

* Atlas: ``<BASE>USDT`` <-> ``perpetual-<BASE>-USDT:USDT``, ``<BASE>PERP`` <->
  ``perpetual-<BASE>-USDC:USDC`` (USDC perpetuals), ``<BASE>USD`` <->
  ``perpetual-<BASE>-USD:<BASE>`` (inverse); e.g. ``1000PEPEUSDT`` ->
  ``perpetual-1000PEPE-USDT:USDT``. Ids are upper case.
* Archive: Bybit's public trade history, one gzip CSV per symbol and UTC day,
  ``{base}/trading/{SYMBOL}/{SYMBOL}{YYYY-MM-DD}.csv.gz`` (no separator before the date; the
  symbol folder is an HTML index of its files). Base ``FLOW_ASSETS_BYBIT_URL``, else
  ``https://public.bybit.com``. **No checksum files**: the data version is what the server says
  of the files (size, Last-Modified, ETag, from HEAD) and each file's sha256 once downloaded
  (in the fetch report); every file of a month is downloaded before reading. The archive
  sensor reads the symbol folder's index (nginx's autoindex: each file's date and exact size)
  in one GET per instrument, a month's version from its files' entries
  (:class:`~flow_assets.sources.probing.HtmlIndex`).
* CSV: header ``timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,
  homeNotional,foreignNotional`` (columns found by name, in any order; an unknown header is
  refused naming the file; without a header the ten columns in that order). ``timestamp`` is
  epoch seconds with a fractional part (older files: integer), read exactly to the µs; ``side``
  is the taker side (``Buy``/``Sell``); ``size`` is in the base asset for linear perpetuals
  and in 1-USD contracts for inverse ones (``notional = size``, ``base_qty = size / price``);
  sizes may be written in scientific notation. A row of another symbol is refused.
* Trade ids: ``trdMatchID`` is a UUID (a string): its 128-bit key decides duplicates (exact
  duplicate rows are published; the first is kept) and an id on two UTC days refuses the month
  (:mod:`flow_assets.sources.report`). Days are written newest first, the venue's normal
  layout (``file_order="newest_first"``: sorted, not reported as reordered; rows out of that
  order are counted and warned), but any order is read:
  **ties in time keep the file's order, read from its oldest end** — ``trade_id`` is the row's
  place in its day's file counted from the end holding its oldest trades (decided by the first
  chunk's first and last times), so the close of a bar is the last trade in that order.
* Catalog: ``GET /v5/market/instruments-info?category=linear`` and ``?category=inverse``
  (``limit`` up to 1000, cursor pagination through ``nextPageCursor`` until it is empty; base
  ``FLOW_ASSETS_BYBIT_API_URL``, else ``https://api.bybit.com``); ``contractType``
  ``LinearPerpetual`` / ``InversePerpetual`` kept (futures dropped), ``status``, ``baseCoin``,
  ``quoteCoin``, ``settleCoin``, ``launchTime``, ``deliveryTime`` (``0``: none planned).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
import requests

from flow_assets import symbology
from flow_assets.catalog.fetch import CatalogFetchError, get_json, non_empty
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import CatalogShapeError, atlas_id, from_ms, instruments_frame
from flow_assets.metrics.exchange_check import ExchangeFigures, decimals
from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.csvstream import (
    CsvFormat,
    base_and_notional,
    field,
    no_fill_ids,
    taker_buy,
    text,
)
from flow_assets.sources.errors import MalformedCsvError
from flow_assets.sources.idset import DAY_US
from flow_assets.sources.probing import HtmlIndex
from flow_assets.sources.report import KEY_COLUMNS
from flow_assets.symbology import Instrument, SymbolError, perpetual
from flow_assets.venues.base import CatalogReader, ExchangeAggregation, Venue

NAME = "bybit-perps"
ARCHIVE_URL = "https://public.bybit.com"
ARCHIVE_ENV = "FLOW_ASSETS_BYBIT_URL"
API_URL = "https://api.bybit.com"
API_ENV = "FLOW_ASSETS_BYBIT_API_URL"
API_PATH = "/v5/market/instruments-info"
CATEGORIES = ("linear", "inverse")
PERPETUALS = ("LinearPerpetual", "InversePerpetual")
PAGE_LIMIT = 1000
COLUMNS = ("timestamp", "symbol", "side", "size", "price", "tickDirection", "trdMatchID",
           "grossValue", "homeNotional", "foreignNotional")  # fmt: skip
_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+?)(?P<quote>USDT|PERP|USD)$")
HELP = (
    f"{NAME} supports 'perpetual-<BASE>-USDT:USDT' <-> '<BASE>USDT', "
    "'perpetual-<BASE>-USDC:USDC' <-> '<BASE>PERP' and 'perpetual-<BASE>-USD:<BASE>' <-> "
    "'<BASE>USD' (inverse), e.g. BTCUSDT, BTCPERP, BTCUSD"
)
ROWS_PER_FILE = 1 << 31  # trade_id = day << 32 | 2**31 +- the row's place in its file


def to_native(inst: Instrument) -> str | None:
    """``BTCUSDT``, ``BTCPERP`` or ``BTCUSD`` for the Atlas perpetual; None outside."""
    if inst.kind != "perpetual":
        return None
    if inst.is_linear and inst.quote == "USDT":
        return f"{inst.base}USDT"
    if inst.is_linear and inst.quote == "USDC":
        return f"{inst.base}PERP"
    if inst.is_inverse and inst.quote == "USD":
        return f"{inst.base}USD"
    return None


def from_native(native: str) -> Instrument | None:
    """The perpetual of a Bybit symbol by its suffix (USDT, PERP = USDC, USD = inverse)."""
    match = _NATIVE.match(native)
    if match is None:
        return None
    base, quote = match["base"], match["quote"]
    if quote == "USD":
        return Instrument("perpetual", base, "USD", base)
    quote = "USDC" if quote == "PERP" else quote
    return Instrument("perpetual", base, quote, quote)


# --- archive --------------------------------------------------------------------------------


def daily_url(base: str, native: str, dataset: str, day: date) -> str:
    """URL of the trade file of the UTC ``day`` (one dataset: not part of the URL)."""
    return f"{base}/trading/{native}/{native}{day:%Y-%m-%d}.csv.gz"


def _positions(header: str, name: str) -> dict[str, int]:
    """The position of each column in ``header``; refuses an unknown header naming ``name``."""
    names = [h.strip().lstrip("\ufeff") for h in header.split(",")]
    if sorted(names) != sorted(COLUMNS):
        raise MalformedCsvError(
            name, 1, f"unknown Bybit trade header {header.strip()!r}; expected {','.join(COLUMNS)}"
        )
    return {column: names.index(column) for column in COLUMNS}


def _micros(seconds: pl.Expr) -> pl.Expr:
    """Epoch seconds written ``1585180700`` or ``1585180700.5178`` as exact µs (null if not)."""
    parts = seconds.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    fraction = parts.struct.field("field_1").fill_null("").str.pad_end(6, "0").str.slice(0, 6)
    digits = fraction.str.contains(r"^[0-9]{6}$")
    return pl.when(digits).then(whole * 1_000_000 + fraction.cast(pl.Int64, strict=False))


def _uuid_half(hex32: pl.Expr, start: int) -> pl.Expr:
    return hex32.str.slice(start, 16).str.to_integer(base=16, dtype=pl.UInt64, strict=False)


class BybitCsv(CsvFormat):
    """The CSV of one Bybit trade file of the Atlas perpetual ``symbol``."""

    widths = (len(COLUMNS),)
    required = (*CsvFormat.required, *KEY_COLUMNS)
    row_numbers = True

    def __init__(self, symbol: str) -> None:
        self.native = symbology.to_native(NAME, symbol)
        self.inverse = symbology.parse_symbol(symbol).is_inverse
        self.invalid_reason = f"symbol is not {self.native}"
        self.position = {column: i for i, column in enumerate(COLUMNS)}
        self.base: int | None = None  # trade_id of the file's first row
        self.step = 1  # +1 when the file starts with its oldest rows, -1 when newest-first

    def start(self, header: str | None, first_row: str, name: str) -> None:
        self.base = None
        if header is not None:
            self.position = _positions(header, name)

    def columns(self) -> dict[int, pl.DataType]:
        numbers = {"size": pl.Float64(), "price": pl.Float64()}
        return {i: numbers.get(column, pl.String()) for column, i in self.position.items()}

    def _file_order(self, ts: pl.Series) -> None:
        """The file's first trade id and direction, from its first chunk's first and last
        times (ties keep the file's order read from its oldest end)."""
        if self.base is None and ts.len() and ts.null_count() == 0:
            self.step = -1 if ts[0] > ts[-1] else 1
            self.base = (int(ts[0]) // DAY_US << 32) + ROWS_PER_FILE

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        at = self.position
        raw = raw.with_columns(_micros(text(at["timestamp"])).alias("_us"))
        self._file_order(raw["_us"])
        hex32 = text(at["trdMatchID"]).str.replace_all("-", "", literal=True)
        hex32 = pl.when(hex32.str.len_bytes() == 32).then(hex32)
        size, price = field(raw, at["size"], pl.Float64()), field(raw, at["price"], pl.Float64())
        base_qty, notional = base_and_notional(size, price, 1.0 if self.inverse else None)
        return raw.select(
            pl.col("_us").cast(UTC_MICROS).alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            (pl.lit(self.base or 0) + pl.col("_row") * self.step).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            taker_buy(text(at["side"])).alias("is_taker_buy"),
            *no_fill_ids(),
            (text(at["symbol"]) == self.native).alias("_valid"),
            _uuid_half(hex32, 0).alias(KEY_COLUMNS[0]),
            _uuid_half(hex32, 16).alias(KEY_COLUMNS[1]),
        )


def _csv_format(symbol: str, options: FetchOptions) -> BybitCsv:
    """Bybit sizes are base units (linear) or 1-USD contracts (inverse): no contract values."""
    if options.contract_values is not None:
        raise ValueError(f"{NAME} sizes need no contract values; contract_values does not apply")
    return BybitCsv(symbol)


ARCHIVE = Exchange(
    name=NAME,
    default_url=ARCHIVE_URL,
    url_env=ARCHIVE_ENV,
    daily_url=daily_url,
    csv_format=_csv_format,
    datasets=("trading",),
    version_tag="bybit",
    compression="gzip",
    trade_ids="string",
    file_order="newest_first",
    probe=HtmlIndex(),  # one GET of the symbol folder: each file's date and size
)


def _timestamps(ts: pl.Expr) -> pl.Expr:
    """Seconds with the fraction Bybit writes (no trailing zeros; integer when whole)."""
    us = ts.dt.epoch("us")
    fraction = (us % 1_000_000).cast(pl.String).str.pad_start(6, "0").str.strip_chars_end("0")
    whole = (us // 1_000_000).cast(pl.String)
    return pl.when(fraction == "").then(whole).otherwise(whole + "." + fraction)


def trade_uuid(native: str, trade_id: int) -> str:
    """A deterministic ``trdMatchID`` for a synthetic trade."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bybit:{native}:{trade_id}"))


def bybit_csv(trades: pl.DataFrame, symbol: str, *, header: bool = True) -> bytes:
    """Bybit trade CSV bytes for normalized trades, in the given row order."""
    native = symbology.to_native(NAME, symbol)
    inverse = symbology.parse_symbol(symbol).is_inverse
    ids = [trade_uuid(native, i) for i in trades["trade_id"]]
    frame = trades.select(
        _timestamps(pl.col("exchange_ts")).alias("timestamp"),
        pl.lit(native).alias("symbol"),
        pl.when(pl.col("is_taker_buy")).then(pl.lit("Buy")).otherwise(pl.lit("Sell")).alias("side"),
        (pl.col("notional") if inverse else pl.col("base_qty")).alias("size"),
        "price",
        pl.lit("ZeroPlusTick").alias("tickDirection"),
        pl.Series("trdMatchID", ids, dtype=pl.String),
        (pl.col("notional") * 1e8).round(0).cast(pl.Int64).alias("grossValue"),
        pl.col("base_qty").alias("homeNotional"),
        pl.col("notional").alias("foreignNotional"),
    )
    return frame.write_csv(include_header=header).encode()


def write_archive(
    trades: pl.DataFrame,
    root: Path,
    symbol: str,
    *,
    newest_first: bool = True,
    header: bool = True,
) -> list[Path]:
    """One ``{SYMBOL}{YYYY-MM-DD}.csv.gz`` per UTC day traded under ``root/trading/{SYMBOL}``,
    rows newest-first by default (as Bybit publishes many days); the mirror serves the folder's
    HTML index (:func:`~flow_assets.sources.mirror.autoindex`) as Bybit's host does."""
    native = symbology.to_native(NAME, symbol)
    folder = root / "trading" / native
    folder.mkdir(parents=True, exist_ok=True)
    keyed = trades.with_columns(pl.col("exchange_ts").dt.date().alias("_day"))
    written = []
    for (day,), rows in sorted(keyed.group_by("_day"), key=lambda item: item[0]):
        ordered = rows.drop("_day").sort("exchange_ts", "trade_id", descending=newest_first)
        path = folder / f"{native}{day:%Y-%m-%d}.csv.gz"
        path.write_bytes(gzip.compress(bybit_csv(ordered, symbol, header=header), mtime=0))
        written.append(path)
    return written


# --- catalog --------------------------------------------------------------------------------


def _row(item: dict[str, Any]) -> dict[str, Any]:
    where = f"bybit instrument {item.get('symbol')!r}"
    for key in ("symbol", "contractType", "status", "baseCoin", "quoteCoin", "settleCoin"):
        if key not in item:
            raise CatalogShapeError(f"{where}: missing field {key!r}")
    native, base, quote = str(item["symbol"]), str(item["baseCoin"]), str(item["quoteCoin"])
    inverse = item["contractType"] == "InversePerpetual"
    try:
        inst = perpetual(base, quote, str(item["settleCoin"]))
        symbol = atlas_id(NAME, native, inst)
    except SymbolError:
        symbol = None
    delivery = item.get("deliveryTime")
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": str(item["settleCoin"]),
        "kind": "inverse" if inverse else "linear",
        "ct_val": 1.0,  # linear sizes are base units, inverse sizes 1-USD contracts
        "ct_val_ccy": quote if inverse else base,
        "listed": from_ms(item.get("launchTime"), where),
        "delisted": None if delivery in (None, "", "0", 0) else from_ms(delivery, where),
        "status": str(item["status"]),
    }


def _page(document: object, url: str) -> tuple[list[dict[str, Any]], str]:
    """The instruments and the next cursor of one answer; errors named with ``url``."""
    if not isinstance(document, dict) or "retCode" not in document:
        raise CatalogShapeError(f"{url}: expected an object with 'retCode', got {document!r:.200}")
    if document["retCode"] != 0:
        raise CatalogFetchError(
            f"Bybit error {document['retCode']!r} from {url}: {document.get('retMsg')!r}"
        )
    result = document.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise CatalogShapeError(f"{url}: expected result.list")
    items = result["list"]
    if not all(isinstance(i, dict) for i in items):
        raise CatalogShapeError(f"{url}: an instrument is not an object")
    return items, str(result.get("nextPageCursor") or "")


def fetch_catalog(base: str, session: requests.Session, limit: int = PAGE_LIMIT) -> pl.DataFrame:
    """Every Bybit perpetual now: each category, page after page until the cursor is empty."""
    url, rows = base + API_PATH, []
    for category in CATEGORIES:
        cursor, seen = "", set()
        while True:
            params = {"category": category, "limit": str(limit)}
            if cursor:
                params["cursor"] = cursor
            items, cursor = _page(get_json(session, url, params), url)
            rows += [_row(i) for i in items if i.get("contractType") in PERPETUALS]
            if not cursor:
                break
            if cursor in seen:
                raise CatalogShapeError(f"{url}: cursor {cursor!r} repeats (category {category})")
            seen.add(cursor)
    return non_empty(instruments_frame(rows), url)


def answer(path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
    """``GET /v5/market/instruments-info`` over ``document`` (``{category: [instrument]}``):
    ``category`` required, ``limit`` 1..1000 (default 500), ``cursor`` from the last page;
    ``GET /v5/market/kline`` over its ``klines`` (:func:`answer_klines`)."""
    if path == KLINE_PATH:
        return answer_klines(query, document.get("klines", {}))
    if path != API_PATH:
        return 404, {"retCode": 404, "retMsg": "Not Found"}
    category = query.get("category", [""])[0]
    if category not in ("linear", "inverse", "spot", "option"):
        return 200, {"retCode": 10001, "retMsg": "params error: category", "result": {},
                     "retExtInfo": {}, "time": 1759276800000}  # fmt: skip
    limit = min(max(int(query.get("limit", ["500"])[0]), 1), 1000)
    cursor = query.get("cursor", [""])[0]
    start = int(cursor.removeprefix("next%3D")) if cursor else 0
    items = document.get(category, [])
    end = start + limit
    result = {"category": category, "list": items[start:end],
              "nextPageCursor": f"next%3D{end}" if end < len(items) else ""}  # fmt: skip
    return 200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                 "time": 1759276800000}  # fmt: skip


# --- daily klines: the exchange's own aggregation of the trades -----------------------------
#
# ``GET /v5/market/kline?category=linear|inverse&symbol=..&interval=D&start=ms&end=ms&limit=..``
# answers ``result.list`` newest first, rows ``[startTime, open, high, low, close, volume,
# turnover]`` as strings. ``volume`` is in contracts: base coin on linear perpetuals, USD on
# inverse ones (1 USD contracts); ``turnover`` is the quote value on linear, the base coin on
# inverse. UTC days.

KLINE_PATH = "/v5/market/kline"


def _category(native: str) -> str:
    return "inverse" if native.endswith("USD") else "linear"


def kline_figures(rows: list[list[str]], inverse: bool) -> pl.DataFrame:
    """The figures of :mod:`flow_assets.metrics.exchange_check` of daily kline rows, with the
    decimals each was printed with (inverse: volume is the USD, turnover the base)."""
    raw = pl.DataFrame(
        [r[:7] for r in rows],
        schema=["start", "open", "high", "low", "close", "volume", "turnover"],
        orient="row",
    )
    base, quote = ("turnover", "volume") if inverse else ("volume", "turnover")
    return raw.select(
        pl.from_epoch(pl.col("start").cast(pl.Int64), time_unit="ms").dt.replace_time_zone("UTC")
        .alias("time"),
        pl.col(base).cast(pl.Float64).alias("volume"),
        decimals(pl.col(base)).alias("volume_decimals"),
        pl.col(quote).cast(pl.Float64).alias("quote_volume"),
        decimals(pl.col(quote)).alias("quote_volume_decimals"),
    )  # fmt: skip


def read_figures(
    base: str, session: requests.Session, native: str, span: tuple[datetime, datetime]
) -> ExchangeFigures:
    """The daily klines of ``span`` (one request: a month is at most 31 rows)."""
    start, end = span
    url = base + KLINE_PATH
    params = {"category": _category(native), "symbol": native, "interval": "D",
              "start": str(ms(start)), "end": str(ms(end) - 1), "limit": "1000"}  # fmt: skip
    document = get_json(session, url, params)
    if not isinstance(document, dict) or document.get("retCode") != 0:
        raise CatalogFetchError(f"Bybit kline error from {url}: {document!r:.200}")
    rows = (document.get("result") or {}).get("list") or []
    source = {"name": f"GET {KLINE_PATH} {native} D", "url": f"{url}?{urlencode(params)}",
              "sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest(),
              "checksum_verified": False}  # fmt: skip
    if not rows:
        return ExchangeFigures.unavailable(
            f"Bybit answers no daily klines for {native} {start:%Y-%m}"
        )
    return ExchangeFigures(kline_figures(rows, _category(native) == "inverse"), [source])


def daily_klines(trades: pl.DataFrame, inverse: bool) -> list[list[str]]:
    """Daily kline rows computed from trades as Bybit does (for the mirror), newest first."""
    size, value = ("notional", "base_qty") if inverse else ("base_qty", "notional")
    days = (
        trades.sort("exchange_ts", "trade_id")
        .group_by(pl.col("exchange_ts").dt.truncate("1d").alias("day"), maintain_order=True)
        .agg(pl.col("price").first().alias("o"), pl.col("price").max().alias("h"),
             pl.col("price").min().alias("l"), pl.col("price").last().alias("c"),
             pl.col(size).sum().alias("v"), pl.col(value).sum().alias("t"))
        .sort("day", descending=True)
    )  # fmt: skip
    return [
        [str(ms(r["day"])), *(f"{r[k]:.2f}" for k in "ohlc"), f"{r['v']:.8f}", f"{r['t']:.8f}"]
        for r in days.iter_rows(named=True)
    ]


def serve_klines(document: dict[str, Any], symbol: str, trades: pl.DataFrame) -> dict[str, Any]:
    """The catalog mirror's document also answering the daily klines of ``trades``."""
    native = symbology.to_native(NAME, symbol)
    rows = daily_klines(trades, _category(native) == "inverse")
    return document | {"klines": {**document.get("klines", {}), native: rows}}


def answer_klines(
    query: dict[str, list[str]], klines: dict[str, list[list[str]]]
) -> tuple[int, Any]:
    """The mirror's ``/v5/market/kline``: ``klines`` maps a symbol to its daily rows."""
    symbol = query.get("symbol", [""])[0]
    start = int(query.get("start", ["0"])[0])
    end = int(query.get("end", [str(2**62)])[0])
    rows = [r for r in klines.get(symbol, []) if start <= int(r[0]) <= end]
    limit = int(query.get("limit", ["200"])[0])
    return 200, {"retCode": 0, "retMsg": "OK", "result": {"category": query.get("category",
                 [""])[0], "symbol": symbol, "list": rows[:limit]}, "retExtInfo": {},
                 "time": 1759276800000}  # fmt: skip


def instrument(
    native: str,
    base: str,
    quote: str,
    settle: str,
    contract_type: str,
    *,
    launched: datetime,
    status: str = "Trading",
    delivery: datetime | None = None,
) -> dict[str, Any]:
    """One ``result.list`` entry of instruments-info, every field Bybit answers with."""
    return {
        "symbol": native, "contractType": contract_type, "status": status,
        "baseCoin": base, "quoteCoin": quote, "settleCoin": settle,
        "launchTime": str(round(launched.timestamp() * 1000)),
        "deliveryTime": "0" if delivery is None else str(round(delivery.timestamp() * 1000)),
        "deliveryFeeRate": "" if delivery is None else "0.0005", "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                          "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                          "minNotionalValue": "5"},
        "unifiedMarginTrade": True, "fundingInterval": 480,
        "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
        "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }  # fmt: skip


_COINS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LINK", "AVAX", "DOT", "LTC", "BCH", "TRX",
          "ATOM", "NEAR", "APT", "ARB", "OP", "SUI", "SEI", "TIA", "INJ", "WLD", "ORDI", "TON",
          "1000PEPE", "1000BONK", "SHIB1000", "10000SATS", "1000000MOG", "ENA", "WIF",
          "JUP"]  # fmt: skip


def sample() -> dict[str, list[dict[str, Any]]]:
    """A realistic listing per category: ~32 USDT, 4 USDC and 5 inverse perpetuals, with
    futures of both kinds (dropped by the reader) and a settling and a pre-launch symbol."""
    start = datetime(2020, 3, 25, tzinfo=UTC)

    def at(n: int) -> datetime:
        return start + timedelta(days=41 * n, minutes=7 * n)

    linear = [instrument(f"{c}USDT", c, "USDT", "USDT", "LinearPerpetual", launched=at(n))
              for n, c in enumerate(_COINS)]  # fmt: skip
    linear += [instrument(f"{c}PERP", c, "USDC", "USDC", "LinearPerpetual", launched=at(n + 9))
               for n, c in enumerate(["BTC", "ETH", "SOL", "XRP"])]  # fmt: skip
    linear += [
        instrument("BTC-26DEC26", "BTC", "USDC", "USDC", "LinearFutures", launched=at(40),
                   delivery=datetime(2026, 12, 26, 8, tzinfo=UTC)),
        instrument("LUNA2USDT", "LUNA2", "USDT", "USDT", "LinearPerpetual", launched=at(12),
                   status="Settling", delivery=datetime(2026, 10, 20, 8, tzinfo=UTC)),
        instrument("NEWCOINUSDT", "NEWCOIN", "USDT", "USDT", "LinearPerpetual",
                   launched=datetime(2026, 10, 2, tzinfo=UTC), status="PreLaunch"),
    ]  # fmt: skip
    inverse = [instrument(f"{c}USD", c, "USD", c, "InversePerpetual", launched=at(n))
               for n, c in enumerate(["BTC", "ETH", "XRP", "EOS", "DOT"])]  # fmt: skip
    inverse.append(instrument("BTCUSDZ26", "BTC", "USD", "BTC", "InverseFutures", launched=at(45),
                              delivery=datetime(2026, 12, 25, 8, tzinfo=UTC)))  # fmt: skip
    return {"linear": linear, "inverse": inverse}


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=ARCHIVE,
    catalog=CatalogReader(API_URL, API_ENV, fetch_catalog, answer, sample),
    write_archive=write_archive,
    exchange_figures=ExchangeAggregation(
        "1d", "api", read_figures, "daily klines (REST)", serve_klines
    ),
)
