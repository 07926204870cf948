"""What Binance's two futures venues share: the ``exchangeInfo`` document and the archive CSV.

USD-M (``GET /fapi/v1/exchangeInfo``) and COIN-M (``GET /dapi/v1/exchangeInfo``) answer one
document holding every symbol (no pagination, no parameters), each symbol with the same core
fields; a ``deliveryDate`` of 2100-12-25 08:00 UTC means no delisting is planned. Here: the
shared reading of that date, the fetch and the mirror's answer of one such document, and the
builders of its exact shape (for tests, samples and the demo). Each venue's module adds its own
fields and row mapping.

CSV of the USD-M and COIN-M archives (:class:`BinanceCsv`): aggTrades
``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``
(spot adds ``is_best_match``), trades ``id,price,qty,quote_qty,time,is_buyer_maker``.
A header row may be present or not (futures files before 2022 have none);
times are ms or µs, decided per value by magnitude (>= 1e14 is µs); booleans ``true``/``True``.
Normalized: ``trade_id`` = agg_trade_id or id, ``base_qty`` = quantity, ``notional`` =
price * quantity, ``is_taker_buy`` = not is_buyer_maker, ``arrival_ts`` null. Row policies
(zero quantity, duplicate ids, order) are those of :mod:`flow_assets.sources.report`.

Known defect: in the ``trades`` dataset ``is_buyer_maker`` is true on every row since 2026-07-03.
A day with at least ``ONE_SIDED_MIN_TRADES`` trades all on one side is refused with
:class:`ArchiveDefectError`, never turned into bars; aggTrades keep the side.

The mirror's writer of these CSVs (:func:`binance_csv`) is here too.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import requests

from flow_assets.catalog.fetch import get_json, non_empty
from flow_assets.catalog.mirror import ms
from flow_assets.catalog.model import EPOCH, from_ms
from flow_assets.metrics.exchange_check import ExchangeFigures, decimals
from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources import http
from flow_assets.sources.csvstream import (
    CsvFormat,
    base_and_notional,
    field,
    has_header,
    read_trades,
    text,
    to_micros,
)
from flow_assets.sources.errors import ArchiveDefectError, CorruptArchiveError, MalformedCsvError
from flow_assets.sources.mirror import epoch, write_checksum, write_zip
from flow_assets.sources.report import days_between, empty_trades, next_month

NO_DELIVERY_MS = 4133404800000  # deliveryDate of a perpetual with no delisting planned
_NO_DELIVERY = EPOCH + timedelta(milliseconds=NO_DELIVERY_MS)
_STABLES = ("USDT", "USDC", "FDUSD", "BUSD")
DATASETS = ("aggTrades", "trades")


@dataclass(frozen=True)
class FuturesLayout:
    """Where Binance's futures archive keeps the files of one market (``um`` USD-M, ``cm``
    COIN-M): ``{base}/data/futures/{market}/{monthly|daily}/{dataset}/{SYM}/{SYM}-{dataset}-
    {period}.zip``, a ``.CHECKSUM`` beside each."""

    market: str

    def file_url(self, base: str, native: str, dataset: str, period: str) -> str:
        """URL of one archive zip; ``period`` is ``YYYY-MM`` (monthly) or ``YYYY-MM-DD``
        (daily)."""
        frequency = "monthly" if len(period) == 7 else "daily"
        folder = f"{base}/data/futures/{self.market}/{frequency}/{dataset}/{native}"
        return f"{folder}/{native}-{dataset}-{period}.zip"

    def daily_url(self, base: str, native: str, dataset: str, day: date) -> str:
        """URL of the file of the UTC ``day``."""
        return self.file_url(base, native, dataset, f"{day:%Y-%m-%d}")

    def monthly_url(self, base: str, native: str, dataset: str, month: date) -> str:
        """URL of the file of the whole UTC ``month``."""
        return self.file_url(base, native, dataset, f"{month:%Y-%m}")

    def klines_url(self, base: str, native: str, period: str) -> str:
        """URL of a 1m klines zip: ``{base}/data/futures/{market}/{monthly|daily}/klines/{SYM}/
        1m/{SYM}-1m-{period}.zip``, ``period`` ``YYYY-MM`` or ``YYYY-MM-DD``."""
        frequency = "monthly" if len(period) == 7 else "daily"
        folder = f"{base}/data/futures/{self.market}/{frequency}/klines/{native}/{KLINE_INTERVAL}"
        return f"{folder}/{native}-{KLINE_INTERVAL}-{period}.zip"


# The archive is the S3 bucket ``data.binance.vision``: its host serves files, the bucket's
# regional endpoint answers ListObjectsV2 listings (what the archive's browsable index reads).
LISTING_URL = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
ONE_SIDED_MIN_TRADES = 10

# Positions of (id, price, quantity, time, is_buyer_maker) in each dataset's rows.
_FIELDS = {"aggTrades": (0, 1, 2, 5, 6), "trades": (0, 1, 2, 4, 5)}
_WIDTHS = {"aggTrades": (7, 8), "trades": (6, 7)}
# The dtype of every field (the last, spot's is_best_match, included) read first.
_I, _F, _B = pl.Int64(), pl.Float64(), pl.Boolean()
_DTYPES = {"aggTrades": (_I, _F, _F, _I, _I, _I, _B, _B), "trades": (_I, _F, _F, _F, _I, _B, _B)}


def delisted(delivery_date: object, where: str) -> datetime | None:
    """The announced delisting time: ``deliveryDate`` unless it is the 2100 no-end date."""
    delivery = from_ms(delivery_date, where)
    return delivery if delivery and delivery < _NO_DELIVERY else None


def fetch_exchange_info(
    base: str, path: str, session: requests.Session, parse: Callable[[object], pl.DataFrame]
) -> pl.DataFrame:
    """The perpetuals of one ``exchangeInfo`` answer (one request), refused when empty."""
    url = base + path
    return non_empty(parse(get_json(session, url)), url)


def document_at(path: str) -> Callable[[str, dict[str, list[str]], Any], tuple[int, Any]]:
    """The mirror's routing of one ``exchangeInfo`` path: the whole document, no parameters."""

    def answer(request_path: str, query: dict[str, list[str]], document: Any) -> tuple[int, Any]:
        if request_path != path:
            return 404, {"code": -1, "msg": "Not Found"}
        return 200, document

    return answer


def _filters(tick: str, step: str) -> list[dict[str, Any]]:
    return [
        {"filterType": "PRICE_FILTER", "maxPrice": "4529764", "minPrice": tick, "tickSize": tick},
        {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": step, "stepSize": step},
        {"filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": step, "stepSize": step},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": "5"},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": "1.0500",
            "multiplierDown": "0.9500",
            "multiplierDecimal": "4",
        },
    ]


def binance_symbol(
    symbol: str,
    base: str,
    quote: str,
    *,
    onboard: datetime,
    margin: str | None = None,
    status: str = "TRADING",
    delivery: datetime | None = None,
    contract_type: str = "PERPETUAL",
) -> dict[str, Any]:
    """One ``symbols`` entry of exchangeInfo; ``delivery`` None is the 2100 no-end date."""
    return {
        "symbol": symbol,
        "pair": symbol.split("_", maxsplit=1)[0],
        "contractType": contract_type,
        "deliveryDate": NO_DELIVERY_MS if delivery is None else ms(delivery),
        "onboardDate": ms(onboard),
        "status": status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": margin or quote,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": _filters("0.10", "0.001"),
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def binance_exchange_info(symbols: list[dict[str, Any]], server_time: datetime) -> dict[str, Any]:
    """The whole exchangeInfo document around ``symbols``."""
    margins = sorted({s["marginAsset"] for s in symbols} | {"USDT", "USDC", "BTC"})
    return {
        "timezone": "UTC",
        "serverTime": ms(server_time),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000" if a in _STABLES
             else "0"}
            for a in margins
        ],
        "symbols": symbols,
    }  # fmt: skip


# --- archive CSV ----------------------------------------------------------------------------


def _taker_buy(raw: pl.DataFrame, index: int) -> pl.Expr:
    """Not ``is_buyer_maker`` (``true``/``false`` in any case; else null)."""
    if raw.schema[f"c{index}"] == pl.Boolean:
        return pl.col(f"c{index}").not_()
    maker = text(index).str.to_lowercase()
    return pl.when(maker == "false").then(True).when(maker == "true").then(False).otherwise(None)


class BinanceCsv(CsvFormat):
    """The CSV of one Binance archive file (``aggTrades`` or ``trades``).

    ``inverse_contract_value`` (USD per contract) reads COIN-M files, whose quantity is contracts:
    ``notional = quantity * value``, ``base_qty = notional / price``.
    """

    def __init__(self, dataset: str = "aggTrades", inverse_contract_value: float | None = None):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; supported: {', '.join(DATASETS)}")
        self.widths = _WIDTHS[dataset]
        self.fields = _FIELDS[dataset]
        self.dtypes = _DTYPES[dataset]
        self.inverse_contract_value = inverse_contract_value

    def columns(self) -> dict[int, pl.DataType]:
        return dict(enumerate(self.dtypes))

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        id_col, price_col, qty_col, time_col, maker_col = self.fields
        quantity = field(raw, qty_col, pl.Float64())
        price = field(raw, price_col, pl.Float64())
        base_qty, notional = base_and_notional(quantity, price, self.inverse_contract_value)
        return raw.select(
            to_micros(field(raw, time_col, pl.Int64())).alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            field(raw, id_col, pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            _taker_buy(raw, maker_col).alias("is_taker_buy"),
            *self.fill_ids(raw),
        )

    def fill_ids(self, raw: pl.DataFrame) -> list[pl.Expr]:
        """``first_trade_id``/``last_trade_id``: an aggTrade's underlying trades; a ``trades``
        row is one fill (its own id)."""
        if self.fields == _FIELDS["aggTrades"]:
            first, last = field(raw, 3, pl.Int64()), field(raw, 4, pl.Int64())
        else:
            first = last = field(raw, self.fields[0], pl.Int64())
        return [first.alias("first_trade_id"), last.alias("last_trade_id")]


def read_binance_csv(
    path: Path,
    dataset: str = "aggTrades",
    *,
    name: str | None = None,
    inverse_contract_value: float | None = None,
) -> pl.DataFrame:
    """One Binance archive CSV (plain, gzip or zip) as trades in ``TRADE_SCHEMA``, in source order,
    unfiltered (see :class:`BinanceCsv`)."""
    fmt = BinanceCsv(dataset, inverse_contract_value)
    frames = list(read_trades(path, fmt, name))
    return pl.concat(frames) if frames else empty_trades()


class OneSidedCheck:
    """Per-day trade counts and buys of one ``trades`` file, to refuse the one-sided defect."""

    def __init__(self) -> None:
        self.days: pl.DataFrame | None = None

    def add(self, trades: pl.DataFrame) -> None:
        """Count the next trades of the file."""
        days = trades.group_by(pl.col("exchange_ts").dt.date().alias("day")).agg(
            pl.len().alias("n"), pl.col("is_taker_buy").sum().alias("buys")
        )
        both = days if self.days is None else pl.concat([self.days, days])
        self.days = both.group_by("day").agg(pl.col("n").sum(), pl.col("buys").sum())

    def check(self, name: str) -> None:
        """Refuse the file when a day of it has its trades all on one side (archive defect)."""
        if self.days is None:
            return
        one_sided = (pl.col("buys") == 0) | (pl.col("buys") == pl.col("n"))
        days = self.days.filter((pl.col("n") >= ONE_SIDED_MIN_TRADES) & one_sided).sort("day")
        if days.height:
            listed = ", ".join(str(d) for d in days["day"])
            raise ArchiveDefectError(
                f"{name}: every trade of {listed} is on one side: the known Binance archive defect "
                "(trades dataset: is_buyer_maker true on every row since 2026-07-03). "
                "Use the aggTrades dataset, which keeps the side."
            )


def one_sided_check(options: Any) -> OneSidedCheck | None:
    """The whole-file check of a Binance archive file: the ``trades`` dataset's one-sided days
    (``options`` is the fetch's :class:`~flow_assets.sources.archive.FetchOptions`)."""
    return OneSidedCheck() if options.dataset == "trades" else None


def check_one_sided(trades: pl.DataFrame, name: str) -> None:
    """Refuse a day of the ``trades`` dataset whose trades are all on one side (archive defect)."""
    check = OneSidedCheck()
    check.add(trades)
    check.check(name)


def _fill_id(trades: pl.DataFrame, name: str) -> pl.Expr:
    """The trades' fill id ``name`` where they have one, else the trade id (one fill)."""
    if name in trades.columns:
        return pl.coalesce(name, "trade_id").alias(name)
    return pl.col("trade_id").alias(name)


def binance_csv(trades: pl.DataFrame, dataset: str, *, header: bool, micros: bool) -> bytes:
    """Binance USD-M archive CSV bytes (``aggTrades`` or ``trades``) for normalized trades."""
    maker = pl.when(pl.col("is_taker_buy")).then(pl.lit("false")).otherwise(pl.lit("true"))
    if dataset == "aggTrades":
        frame = trades.select(
            pl.col("trade_id").alias("agg_trade_id"),
            "price",
            pl.col("base_qty").alias("quantity"),
            _fill_id(trades, "first_trade_id"),
            _fill_id(trades, "last_trade_id"),
            epoch(micros).alias("transact_time"),
            maker.alias("is_buyer_maker"),
        )
    else:
        frame = trades.select(
            pl.col("trade_id").alias("id"),
            "price",
            pl.col("base_qty").alias("qty"),
            pl.col("notional").alias("quote_qty"),
            epoch(micros).alias("time"),
            maker.alias("is_buyer_maker"),
        )
    return frame.write_csv(include_header=header).encode()


# --- 1m klines: the exchange's own aggregation of the trades ---------------------------------
#
# ``open_time, open, high, low, close, volume, close_time, quote_volume, count, taker_buy_volume,
# taker_buy_quote_volume, ignore``, with or without a header, times ms or µs. USD-M: volumes in
# the base asset, quote volumes in the quote asset. COIN-M: ``volume`` and ``taker_buy_volume``
# are contracts, ``quote_volume`` and ``taker_buy_quote_volume`` the *base asset* volume (the
# binance-public-data README calls them "Base asset volume" / "Taker buy base asset volume").

KLINE_INTERVAL = "1m"
KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)


def read_klines_csv(data: bytes) -> pl.DataFrame:
    """The 12 kline columns as printed (text), header or not."""
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    frame = pl.read_csv(data, has_header=has_header(first), infer_schema=False)
    if frame.width != len(KLINE_COLUMNS):
        raise MalformedCsvError("klines", 1, f"expected 12 kline columns, found {frame.width}")
    return frame.rename(dict(zip(frame.columns, KLINE_COLUMNS, strict=True)))


def kline_figures(raw: pl.DataFrame, coin_margined: bool) -> pl.DataFrame:
    """The figures of :mod:`flow_assets.metrics.exchange_check` from printed klines: USD-M's
    base and quote volumes with their printed decimals; COIN-M's base volumes (its quote
    columns), each within a rounding unit per underlying trade (the contracts' base value is
    not a finite decimal), its USD (contract) volumes not compared."""
    time = to_micros(pl.col("open_time").str.strip_chars().cast(pl.Int64)).alias("time")
    count = pl.col("count").str.strip_chars().cast(pl.Int64)
    pairs = (
        {"volume": "quote_volume", "taker_buy_volume": "taker_buy_quote_volume"}
        if coin_margined
        else {
            f: f for f in ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
        }
    )
    columns = [time, count.alias("count")]
    for ours, theirs in pairs.items():
        printed = pl.col(theirs).str.strip_chars()
        columns.append(printed.cast(pl.Float64).alias(ours))
        if coin_margined:
            unit = pl.lit(10.0).pow(-decimals(printed).cast(pl.Float64))
            columns.append((unit * count.clip(lower_bound=1)).alias(f"{ours}_tolerance"))
        else:
            columns.append(decimals(printed).alias(f"{ours}_decimals"))
    return raw.select(columns)


def _klines_file(
    session: requests.Session, url: str, workdir: Path
) -> tuple[bytes, dict[str, Any]] | None:
    """The CSV bytes of one klines zip, its checksum verified; None when not published."""
    try:
        checksum = http.get_text(session, url + ".CHECKSUM")
    except http.NotFoundError:
        return None
    path = workdir / url.rsplit("/", 1)[1]
    got = http.download_verified(session, url, path, url + ".CHECKSUM", checksum)
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(archive.namelist()[0])
    except (zipfile.BadZipFile, IndexError, OSError) as exc:
        raise CorruptArchiveError(f"corrupt klines zip {path.name}: {exc}") from exc
    finally:
        path.unlink(missing_ok=True)
    source = {"name": path.name, "url": url, "sha256": got.sha256, "checksum_verified": True}
    return data, source


def fetch_klines(
    layout: FuturesLayout,
    base: str,
    session: requests.Session,
    native: str,
    span: tuple[datetime, datetime],
) -> ExchangeFigures:
    """The 1m klines of ``span`` (one month's covered days): the monthly file when the span is
    the whole month and it is out, else the daily files (a day without one is not compared)."""
    start, end = span
    month = start.date().replace(day=1)
    whole = end.date() == next_month(month)
    found: list[tuple[bytes, dict[str, Any]]] = []
    missing: list[date] = []
    with tempfile.TemporaryDirectory(prefix="klines-") as tmp:
        monthly = layout.klines_url(base, native, f"{month:%Y-%m}")
        got = _klines_file(session, monthly, Path(tmp)) if whole else None
        if got is not None:
            found.append(got)
        else:
            last = (end - timedelta(microseconds=1)).date()
            for day in days_between(start.date(), last + timedelta(days=1)):
                day_file = _klines_file(
                    session, layout.klines_url(base, native, f"{day}"), Path(tmp)
                )
                found += [day_file] if day_file else []
                missing += [] if day_file else [day]
    if not found:
        return ExchangeFigures.unavailable(
            f"no 1m klines published yet for {native} {month:%Y-%m} ({monthly}, daily: 404)"
        )
    raw = pl.concat([read_klines_csv(data) for data, _ in found])
    figures = kline_figures(raw, coin_margined=layout.market == "cm")
    return ExchangeFigures(figures, [source for _, source in found], missing)


def _printed(column: str, places: int) -> pl.Expr:
    """A float column printed with ``places`` decimals (as the archive prints exact sums)."""
    return pl.col(column).map_elements(lambda v: f"{v:.{places}f}", return_dtype=pl.String)


def binance_klines_csv(
    trades: pl.DataFrame, *, contracts: pl.Expr | None = None, header: bool = False
) -> bytes:
    """1m klines CSV bytes computed from trades the way Binance does: per minute with trades,
    OHLC, volume sums, ``count`` = the underlying trades (``last - first + 1``, one without fill
    ids). ``contracts`` (each trade's contracts) set: COIN-M (volumes in contracts, quote columns
    in the base)."""
    fills = (pl.col("last_trade_id") - pl.col("first_trade_id") + 1).fill_null(1)
    if "first_trade_id" not in trades.columns:
        fills = pl.lit(1, dtype=pl.Int64)
    buy = pl.col("is_taker_buy")
    size = pl.col("base_qty") if contracts is None else contracts
    quote = pl.col("notional") if contracts is None else pl.col("base_qty")
    minutes = (
        trades.sort("exchange_ts", "trade_id")
        .group_by(pl.col("exchange_ts").dt.truncate("1m").alias("minute"), maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            size.sum().alias("volume"),
            quote.sum().alias("quote_volume"),
            fills.sum().alias("count"),
            size.filter(buy).sum().alias("taker_buy_volume"),
            quote.filter(buy).sum().alias("taker_buy_quote_volume"),
        )
    )
    places = 8 if contracts is None else 0
    frame = minutes.select(
        pl.col("minute").dt.epoch("ms").alias("open_time"),
        *(_printed(c, 2) for c in ("open", "high", "low", "close")),
        _printed("volume", places),
        (pl.col("minute").dt.epoch("ms") + 59_999).alias("close_time"),
        _printed("quote_volume", 8),
        "count",
        _printed("taker_buy_volume", places),
        _printed("taker_buy_quote_volume", 8),
        pl.lit("0").alias("ignore"),
    )
    return frame.write_csv(include_header=header).encode()


def write_klines(
    trades: pl.DataFrame,
    root: Path,
    layout: FuturesLayout,
    native: str,
    *,
    daily: bool = False,
    contracts: pl.Expr | None = None,
) -> list[Path]:
    """The 1m klines zips (+ CHECKSUM) of ``trades`` under ``root``: one per month, or per day."""
    fmt = "%Y-%m-%d" if daily else "%Y-%m"
    keyed = trades.with_columns(pl.col("exchange_ts").dt.strftime(fmt).alias("_period"))
    written: list[Path] = []
    for (period,), part in keyed.group_by("_period", maintain_order=True):
        url = layout.klines_url(str(root), native, str(period))
        data = binance_klines_csv(part.drop("_period"), contracts=contracts)
        path = write_zip(Path(url), Path(url).name.replace(".zip", ".csv"), data)
        written += [path, write_checksum(path)]
    return written
