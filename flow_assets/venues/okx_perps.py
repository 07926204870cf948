"""``okx-perps``: OKX perpetual swaps.

* Atlas: ``<BASE>-USDT|USDC-SWAP`` linear (``perpetual-<BASE>-<QUOTE>:<QUOTE>``),
  ``<BASE>-USD-SWAP`` inverse (``perpetual-<BASE>-USD:<BASE>``), ``<BASE>-USD_UM-SWAP`` linear
  settled in USD (``perpetual-<BASE>-USD:USD``).
* Archive: ``static.okx.com`` daily zips on UTC+8 days, no checksums, integer trade ids, sizes
  in contracts converted with the catalog's contract values (below);
  base ``FLOW_ASSETS_OKX_URL``.
* Catalog: ``GET {base}/api/v5/public/instruments?instType=SWAP`` (base
  ``FLOW_ASSETS_OKX_API_URL``, else ``https://www.okx.com``): one answer holds every swap (no
  pagination; 20 requests per 2 s per IP), ``{"code": "0", "msg": "", "data": [...]}``; another
  ``code`` is an :class:`OkxApiError`. Fields: ``instId``, ``ctType`` (linear/inverse),
  ``ctVal * ctMult`` in ``ctValCcy`` (the contract value), ``settleCcy``, ``listTime``,
  ``expTime``, ``state``. Contract values are dated by OKX's own candles
  (``GET {base}/api/v5/market/history-candles``, :mod:`flow_assets.venues.okx_candles`), which
  the mirror's routing answers too.

Archive layout:
``{base}/cdn/okex/traderecords/trades/daily/{YYYYMMDD}/{INST}-trades-{YYYY-MM-DD}.zip``;
the base is ``base_url``, else ``$FLOW_ASSETS_OKX_URL``, else ``https://static.okx.com``.

**Days are UTC+8 days**: the file dated D holds trades from D 00:00 UTC+8 (D-1 16:00 UTC) to
D+1 00:00 UTC+8. A UTC month therefore reads the files dated from its first day through the
first day of the next month and keeps the trades whose ``created_time`` falls in the month
(the others count as ``outside_period``). A running month ends at 00:00 UTC of the date of the
last published file (the last complete UTC day); a day's file appears some time after the day
ends, so recent absent files are *not published yet*, not missing (see
:mod:`flow_assets.sources.archive`, which plans, downloads and streams every exchange's files).

CSV: header ``instrument_name,trade_id,side,price,size,created_time`` (``created_time`` in ms;
``side`` is the taker side); later files add a seventh column ``source`` (ignored). Columns are
found by header name, in any order; a header missing one of them or naming another column is
refused (:class:`MalformedCsvError` with the file and the header). Without a header the first six
columns are taken in that order. ``size`` may be written in scientific notation (``1.772e-05``).

``size`` is in contracts, converted with the contract value in force at the trade's time
(``contract_values``: rows ``valid_from``, ``valid_to``, ``ct_val``, see
:class:`ContractValues`; by default the package's table,
:func:`flow_assets.symbology.contract_specs`): linear ``base_qty = size * ctVal`` and
``notional = price * base_qty``; inverse ``notional = size * ctVal`` (USD) and
``base_qty = notional / price``. A trade with no value in force raises
:class:`MissingContractValueError`.

OKX publishes no checksums: each file's sha256 and size go into the report
(``checksum_verified`` false), and every file of the month is downloaded before reading (which
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import requests

from flow_assets import symbology
from flow_assets.catalog.fetch import CatalogFetchError, get_json, non_empty
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import (
    CatalogShapeError,
    field,
    from_ms,
    instruments_frame,
    items_of,
    number,
)
from flow_assets.catalog.samples import COINS, listed
from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.contracts import ContractValues, specs_history
from flow_assets.sources.csvstream import (
    CsvFormat,
    no_fill_ids,
    read_trades,
    taker_buy,
    text,
    to_micros,
)
from flow_assets.sources.csvstream import field as csv_field
from flow_assets.sources.errors import MalformedCsvError
from flow_assets.sources.mirror import epoch, write_zip
from flow_assets.sources.probing import DayFrontier
from flow_assets.sources.report import empty_trades
from flow_assets.symbology import Instrument, contract_value, format_symbol, parse_symbol
from flow_assets.venues import okx_candles
from flow_assets.venues.base import CatalogReader, ExchangeAggregation, Venue

NAME = "okx-perps"
_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+)-(?P<quote>USDT|USDC|USD|USD_UM)-SWAP$")
HELP = (
    f"{NAME} supports perpetual swaps 'perpetual-<BASE>-USDT:USDT' <-> '<BASE>-USDT-SWAP' "
    "(also USDC), 'perpetual-<BASE>-USD:<BASE>' <-> '<BASE>-USD-SWAP' (inverse) and "
    "'perpetual-<BASE>-USD:USD' <-> '<BASE>-USD_UM-SWAP' (USD-margined), "
    "e.g. BTC-USDT-SWAP, BTC-USD-SWAP"
)


def to_native(inst: Instrument) -> str | None:
    """``BTC-USDT-SWAP`` for ``perpetual-BTC-USDT:USDT``; None outside the grammar."""
    if inst.kind != "perpetual":
        return None
    if inst.is_linear and inst.quote in ("USDT", "USDC"):
        return f"{inst.base}-{inst.quote}-SWAP"
    if inst.quote == "USD" and inst.settle == "USD":
        return f"{inst.base}-USD_UM-SWAP"
    if inst.is_inverse and inst.quote == "USD":
        return f"{inst.base}-USD-SWAP"
    return None


def from_native(native: str) -> Instrument | None:
    """The perpetual of an OKX swap id (case as OKX publishes it)."""
    match = _NATIVE.match(native)
    if match is None:
        return None
    base, quote = match["base"], match["quote"]
    if quote == "USD_UM":
        return Instrument("perpetual", base, "USD", "USD")
    return Instrument("perpetual", base, quote, base if quote == "USD" else quote)


# --- archive --------------------------------------------------------------------------------

DEFAULT_URL = "https://static.okx.com"
URL_ENV = "FLOW_ASSETS_OKX_URL"
COLUMNS = ("instrument_name", "trade_id", "side", "price", "size", "created_time")
IGNORED_COLUMNS = ("source",)
UTC_OFFSET = timedelta(hours=8)


def file_url(base: str, native: str, day: date) -> str:
    """URL of the trade file dated ``day`` (a UTC+8 day)."""
    return f"{base}/cdn/okex/traderecords/trades/daily/{day:%Y%m%d}/{native}-trades-{day}.zip"


def contract_values_from_specs(symbol: str) -> pl.DataFrame:
    """The contract value history of ``symbol`` from the package's table."""
    return specs_history(NAME, symbol)


def _header_positions(header: str, width: int | None, name: str) -> dict[str, int]:
    """The position of each column in ``header``; refuses an unknown header."""
    names = [h.strip().lstrip("\ufeff") for h in header.split(",")]
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS + IGNORED_COLUMNS]
    problems = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(unknown)
    if len(set(names)) != len(names):
        problems.append("repeated names")
    if problems:
        expected = ",".join(COLUMNS)
        raise MalformedCsvError(
            name,
            1,
            f"unknown OKX trade header {header.strip()!r} ({'; '.join(problems)}); "
            f"expected {expected} in any order, optionally with source",
        )
    if width is not None and width != len(names):
        raise MalformedCsvError(name, 2, f"{width} fields, the header names {len(names)}")
    return {column: names.index(column) for column in COLUMNS}


class OkxCsv(CsvFormat):
    """The CSV of one OKX trade file of the Atlas perpetual ``symbol``; sizes converted with
    ``contract_values`` (None: :func:`contract_values_from_specs`)."""

    widths = (6, 7, 8)

    def __init__(self, symbol: str, contract_values: pl.DataFrame | None = None) -> None:
        self.symbol = symbol
        self.native = symbology.to_native(NAME, symbol)
        self.inverse = parse_symbol(symbol).is_inverse
        self.invalid_reason = f"instrument is not {self.native}"
        if contract_values is None:
            contract_values = contract_values_from_specs(symbol)
        self.values = ContractValues(self.native, contract_values)
        self.position = {column: i for i, column in enumerate(COLUMNS)}
        self.name = self.native

    def start(self, header: str | None, first_row: str, name: str) -> None:
        self.name = name
        if header is not None:
            width = first_row.count(",") + 1 if first_row else None
            self.position = _header_positions(header, width, name)

    def columns(self) -> dict[int, pl.DataType]:
        numbers = {"trade_id": pl.Int64(), "price": pl.Float64(), "size": pl.Float64()}
        numbers["created_time"] = pl.Int64()
        return {i: numbers.get(column, pl.String()) for column, i in self.position.items()}

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        at = self.position
        ts = to_micros(csv_field(raw, at["created_time"], pl.Int64()))
        raw = raw.with_columns(ts.alias("_ts"))
        raw = raw.with_columns(self.values.expr(pl.col("_ts")).alias("_ct_val"))
        self.values.check(raw["_ts"], raw["_ct_val"], self.name)
        ts, ct_val = pl.col("_ts"), pl.col("_ct_val")
        size = csv_field(raw, at["size"], pl.Float64())
        price = csv_field(raw, at["price"], pl.Float64())
        if self.inverse:
            notional = size * ct_val
            base_qty = notional / price
        else:
            base_qty = size * ct_val
            notional = price * base_qty
        return raw.select(
            ts.alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            csv_field(raw, at["trade_id"], pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            taker_buy(text(at["side"])).alias("is_taker_buy"),
            *no_fill_ids(),
            (text(at["instrument_name"]) == self.native).alias("_valid"),
        )


def read_okx_csv(
    path: Path,
    symbol: str,
    *,
    name: str | None = None,
    contract_values: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One OKX trade CSV (plain, gzip or zip) as trades in ``TRADE_SCHEMA``, in source order,
    unfiltered."""
    frames = list(read_trades(path, OkxCsv(symbol, contract_values), name))
    return pl.concat(frames) if frames else empty_trades()


def daily_url(base: str, native: str, dataset: str, day: date) -> str:
    """URL of the trade file dated ``day`` (one dataset: ``dataset`` is not part of it)."""
    return file_url(base, native, day)


def _csv_format(symbol: str, options: FetchOptions) -> OkxCsv:
    return OkxCsv(symbol, options.contract_values)


# OKX has a single trades dataset; it answers to the default name every exchange accepts.
OKX = Exchange(
    name=NAME,
    default_url=DEFAULT_URL,
    url_env=URL_ENV,
    daily_url=daily_url,
    csv_format=_csv_format,
    day_offset=UTC_OFFSET,
    version_tag="okx",
    sizes_in_contracts=True,
    probe=DayFrontier(),  # no listing, no index: HEADs of the day files not seen yet
)


def okx_csv(
    trades: pl.DataFrame,
    symbol: str,
    *,
    header: bool = True,
    extra_column: bool = False,
    contract_value_at: Callable[[datetime], float] | None = None,
) -> bytes:
    """OKX trade CSV bytes: sizes in contracts at the contract value in force per trade
    (``contract_value_at``, default the package's table)."""
    native = symbology.to_native(NAME, symbol)
    inverse = parse_symbol(symbol).is_inverse
    value_at = contract_value_at or (lambda ts: contract_value(NAME, symbol, ts))
    values = [value_at(ts) for ts in trades["exchange_ts"]]
    ct_val = pl.Series("ct_val", values, dtype=pl.Float64)
    size = (pl.col("notional") if inverse else pl.col("base_qty")) / ct_val
    frame = trades.select(
        pl.lit(native).alias("instrument_name"),
        "trade_id",
        pl.when(pl.col("is_taker_buy")).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
        "price",
        size.round(8).alias("size"),
        epoch(False).alias("created_time"),
    )
    if extra_column:
        frame = frame.with_columns(pl.lit(0).alias("source"))
    return frame.write_csv(include_header=header).encode()


def write_okx(
    trades: pl.DataFrame,
    root: Path,
    symbol: str,
    *,
    header: bool = True,
    extra_column: bool = False,
    empty_days: tuple[date, ...] = (),
    contract_value_at: Callable[[datetime], float] | None = None,
) -> list[Path]:
    """OKX daily trade zips under ``root``, one per UTC+8 day traded (plus ``empty_days``)."""
    native = symbology.to_native(NAME, symbol)
    keyed = trades.with_columns(
        (pl.col("exchange_ts") + UTC_OFFSET).dt.date().alias("_day")  # the UTC+8 date
    )
    parts = {day: part.drop("_day") for (day,), part in keyed.group_by("_day")}
    for day in empty_days:
        parts.setdefault(day, trades.clear())
    written = []
    for day, part in sorted(parts.items()):
        name = f"{native}-trades-{day}"
        folder = root / "cdn/okex/traderecords/trades/daily" / f"{day:%Y%m%d}"
        data = okx_csv(
            part,
            symbol,
            header=header,
            extra_column=extra_column,
            contract_value_at=contract_value_at,
        )
        written.append(write_zip(folder / f"{name}.zip", f"{name}.csv", data))
    return written


# --- catalog --------------------------------------------------------------------------------

API_URL = "https://www.okx.com"
API_ENV = "FLOW_ASSETS_OKX_API_URL"
API_PATH = "/api/v5/public/instruments"


class OkxApiError(CatalogFetchError):
    """OKX answered with a ``code`` other than ``"0"``; ``code`` and ``msg`` are its own."""

    def __init__(self, url: str, code: object, msg: object) -> None:
        super().__init__(f"OKX error code {code!r} from {url}: {msg!r}")
        self.code = code
        self.msg = msg


def _row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(field(item, "instId", "okx instrument"))
    where = f"okx instrument {native}"
    kind = field(item, "ctType", where)
    if kind not in ("linear", "inverse"):
        raise CatalogShapeError(f"{where}: ctType must be linear or inverse, got {kind!r}")
    ct_val = number(field(item, "ctVal", where), where)
    ct_val *= number(item.get("ctMult"), where, default=1.0)
    inst = from_native(native)
    if inst is not None:
        symbol, base, quote = format_symbol(inst), inst.base, inst.quote
    else:
        symbol = None
        family = str(item.get("instFamily") or item.get("uly") or "-")
        base, _, quote = family.partition("-")
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": str(field(item, "settleCcy", where)),
        "kind": kind,
        "ct_val": ct_val,
        "ct_val_ccy": str(field(item, "ctValCcy", where)),
        "listed": from_ms(field(item, "listTime", where), where),
        "delisted": from_ms(item.get("expTime"), where),
        "status": str(field(item, "state", where)),
    }


def parse_catalog(document: object) -> pl.DataFrame:
    """The swaps of a ``/api/v5/public/instruments?instType=SWAP`` answer (``code`` "0")."""
    items = items_of(document, "data", "okx instruments")
    return instruments_frame([_row(i) for i in items if i.get("instType", "SWAP") == "SWAP"])


def fetch_catalog(base: str, session: requests.Session) -> pl.DataFrame:
    """Every OKX swap now (one request)."""
    url = base + API_PATH
    document = get_json(session, url, {"instType": "SWAP"})
    if not isinstance(document, dict) or "code" not in document:
        raise CatalogShapeError(f"{url}: expected an object with 'code', got {document!r:.200}")
    if str(document["code"]) != "0":
        raise OkxApiError(url, document["code"], document.get("msg"))
    return non_empty(parse_catalog(document), url)


def answer(path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
    """``GET /api/v5/public/instruments``: ``instType`` required, only SWAP listed here;
    ``GET /api/v5/market/history-candles`` from the document's candles
    (:func:`flow_assets.venues.okx_candles.with_candles`)."""
    if path == okx_candles.PATH:
        return 200, okx_candles.answer_candles(query, document.get("_candles", {}))
    if path != API_PATH:
        return 404, {"msg": "Not Found", "code": 404}
    inst_type = query.get("instType", [""])[0]
    if not inst_type:
        return 200, {"code": "50014", "msg": "Parameter instType can not be empty", "data": []}
    if inst_type != "SWAP":
        return 200, {"code": "0", "msg": "", "data": []}
    return 200, {key: value for key, value in document.items() if key != "_candles"}


def okx_instrument(
    inst_id: str,
    ct_val: str,
    *,
    listed: datetime,
    state: str = "live",
    exp: datetime | None = None,
    ct_val_ccy: str | None = None,
    settle: str | None = None,
) -> dict[str, Any]:
    """One ``data`` entry of the SWAP instruments answer (ctVal as OKX writes it, a string).

    ``X-USDT-SWAP``/``X-USDC-SWAP`` are linear in X, ``X-USD-SWAP`` inverse (ctVal in USD,
    settled in X), ``X-USD_UM-SWAP`` linear settled in USD.
    """
    base, family_quote, _ = inst_id.split("-")
    quote = family_quote.removesuffix("_UM")
    inverse = family_quote == "USD"
    default_settle = base if inverse else quote
    return {
        "alias": "",
        "auctionEndTime": "",
        "baseCcy": "",
        "category": "1",
        "contTdSwTime": "",
        "ctMult": "1",
        "ctType": "inverse" if inverse else "linear",
        "ctVal": ct_val,
        "ctValCcy": ct_val_ccy or ("USD" if inverse else base),
        "expTime": "" if exp is None else str(ms(exp)),
        "futureSettlement": False,
        "groupId": "1",
        "instFamily": f"{base}-{family_quote}",
        "instId": inst_id,
        "instIdCode": zlib.crc32(inst_id.encode()) % 10_000_000,
        "instType": "SWAP",
        "lever": "100" if base in ("BTC", "ETH") else "50",
        "listTime": str(ms(listed)),
        "lotSz": "0.01",
        "maxIcebergSz": "100000000.0000000000000000",
        "maxLmtAmt": "20000000",
        "maxLmtSz": "100000000",
        "maxMktAmt": "",
        "maxMktSz": "12000",
        "maxStopSz": "12000",
        "maxTriggerSz": "100000000.0000000000000000",
        "maxTwapSz": "100000000.0000000000000000",
        "minSz": "0.01",
        "openType": "",
        "optType": "",
        "preMktSwTime": "",
        "quoteCcy": "",
        "ruleType": "normal",
        "settleCcy": settle or default_settle,
        "state": state,
        "stk": "",
        "tickSz": "0.1",
        "tradeQuoteCcyList": [],
        "uly": f"{base}-{quote}",
    }


def okx_instruments(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole answer: ``{"code": "0", "msg": "", "data": items}``."""
    return {"code": "0", "msg": "", "data": items}


_CT_VAL = {"BTC": "0.01", "ETH": "0.1", "SOL": "1", "DOGE": "1000", "XRP": "100", "BNB": "0.01",
           "ADA": "100", "TRX": "1000", "LTC": "1", "BCH": "0.1", "LINK": "1", "DOT": "1",
           "AVAX": "1", "PEPE": "10000000", "SHIB": "1000000", "BONK": "100000",
           "FLOKI": "100", "SATS": "10000000", "1INCH": "1", "ORDI": "0.1",
           "TON": "1"}  # fmt: skip
_INVERSE = {"BTC": "100", "ETH": "10", "SOL": "10", "DOGE": "10", "XRP": "10", "LTC": "10",
            "ADA": "10", "TRX": "10", "DOT": "10", "LINK": "10", "BCH": "10", "ETC": "10",
            "FIL": "10", "TON": "10"}  # fmt: skip
_USDC = ["BTC", "ETH", "SOL", "XRP", "DOGE", "PEPE", "SUI", "WIF"]
_UM = ["BTC", "ETH", "SOL"]


def _ct_val(base: str, n: int) -> str:
    return _CT_VAL.get(base, ("1", "10", "100", "0.1")[n % 4])


def sample() -> dict[str, Any]:
    """A realistic SWAP instruments answer: ~220 swaps of every kind OKX lists (linear USDT and
    USDC, inverse USD, USD-margined ``_UM``) with their ctVal, and a suspended one."""
    bases = [c for c in dict.fromkeys(COINS) if c not in ("BTCDOM", "4", "42")]
    bases += ["PEPE", "SHIB", "BONK", "FLOKI"]
    items = [
        okx_instrument(f"{base}-USDT-SWAP", _ct_val(base, n), listed=listed(n))
        for n, base in enumerate(bases)
    ]
    items += [
        okx_instrument(f"{base}-USD-SWAP", value, listed=listed(n))
        for n, (base, value) in enumerate(_INVERSE.items())
    ]
    items += [
        okx_instrument(f"{base}-USDC-SWAP", _ct_val(base, n), listed=listed(n + 7))
        for n, base in enumerate(_USDC)
    ]
    items += [
        okx_instrument(f"{base}-USD_UM-SWAP", _ct_val(base, n), listed=listed(n + 11),
                       settle="USD")
        for n, base in enumerate(_UM)
    ]  # fmt: skip
    items.append(
        okx_instrument("LOOM-USDT-SWAP", "10", listed=listed(3), state="suspend",
                       exp=datetime(2026, 10, 3, 8, tzinfo=UTC))
    )  # fmt: skip
    return okx_instruments(items)


def serve_candles(document: dict[str, Any], symbol: str, trades: pl.DataFrame) -> dict[str, Any]:
    """The catalog mirror's document also answering the history candles of ``trades`` (their
    contracts at the package's contract values, as :func:`write_okx` writes them)."""
    minutes = okx_candles.minute_candles(
        trades,
        parse_symbol(symbol).is_inverse,
        lambda ts: contract_value(NAME, symbol, ts),
    )
    return okx_candles.with_candles(document, {symbology.to_native(NAME, symbol): minutes})


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=OKX,
    catalog=CatalogReader(
        API_URL, API_ENV, fetch_catalog, answer, sample, okx_candles.date_contracts
    ),
    write_archive=write_okx,
    exchange_figures=ExchangeAggregation(
        "1d", "api", okx_candles.read_figures, "daily candles (REST)", serve_candles
    ),
)
