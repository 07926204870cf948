"""``binance-futures-cm``: Binance COIN-M perpetuals (inverse, margined in the base coin).

* Atlas: ``<BASE>USD_PERP`` <-> ``perpetual-<BASE>-USD:<BASE>`` (e.g. ``BTCUSD_PERP`` ->
  ``perpetual-BTC-USD:BTC``); the quarterly ``BTCUSD_260626`` are futures, not listed here.
* Archive: ``{base}/data/futures/cm/{monthly|daily}/{aggTrades|trades}/{SYM}/{SYM}-{dataset}-
  {period}.zip`` with a ``.zip.CHECKSUM`` beside each, the same CSV as USD-M
  (:class:`~flow_assets.venues.binance_common.BinanceCsv`), UTC days, integer trade ids; a finished
  month without a monthly file reads its daily files. Base ``FLOW_ASSETS_BINANCE_CM_URL``, else
  ``https://data.binance.vision`` (the USD-M host). The archive sensor lists its folders on the
  same S3 bucket as USD-M (prefix ``data/futures/cm/...``; endpoint
  ``FLOW_ASSETS_BINANCE_CM_LISTING_URL``, else a configured root that is not the public one,
  else the bucket's public endpoint; :class:`~flow_assets.sources.probing.S3Listing`). The
  ``trades`` dataset's one-sided defect (since 2026-07-01 on COIN-M) is refused as on USD-M.
* Quantities are contracts of ``contractSize`` USD (100 for ``BTCUSD_PERP``, 10 for most
  others): ``notional = quantity * contractSize``, ``base_qty = notional / price``, with the
  contract size in force at each trade (the catalog's history; the seed table
  ``contracts.csv`` without one).
* Catalog: ``GET {base}/dapi/v1/exchangeInfo`` (one answer, no pagination; base
  ``FLOW_ASSETS_BINANCE_CM_API_URL``, else ``https://dapi.binance.com``): symbols with
  ``contractType == "PERPETUAL"``, ``contractSize``, ``onboardDate``, ``deliveryDate`` (the
  2100 date while no delisting is planned) and ``contractStatus``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import requests

from flow_assets import symbology
from flow_assets.catalog.model import CatalogShapeError, atlas_id, from_ms, instruments_frame
from flow_assets.metrics.exchange_check import ExchangeFigures
from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.contracts import ContractValues, specs_history
from flow_assets.sources.csvstream import field, to_micros
from flow_assets.sources.errors import MalformedCsvError
from flow_assets.sources.mirror import write_checksum, write_zip
from flow_assets.sources.probing import S3Listing
from flow_assets.symbology import Instrument, SymbolError, perpetual
from flow_assets.venues.base import CatalogReader, ExchangeAggregation, Venue
from flow_assets.venues.binance_common import (
    DATASETS,
    LISTING_URL,
    BinanceCsv,
    FuturesLayout,
    _taker_buy,
    binance_csv,
    binance_exchange_info,
    binance_symbol,
    delisted,
    document_at,
    fetch_exchange_info,
    fetch_klines,
    one_sided_check,
    write_klines,
)

NAME = "binance-futures-cm"
ARCHIVE_URL = "https://data.binance.vision"
ARCHIVE_ENV = "FLOW_ASSETS_BINANCE_CM_URL"
LISTING_ENV = "FLOW_ASSETS_BINANCE_CM_LISTING_URL"
API_URL = "https://dapi.binance.com"
API_ENV = "FLOW_ASSETS_BINANCE_CM_API_URL"
API_PATH = "/dapi/v1/exchangeInfo"
_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+)USD_PERP$")
HEADERS = {
    "aggTrades": ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id",
                  "transact_time", "is_buyer_maker"),
    "trades": ("id", "price", "qty", "base_qty", "time", "is_buyer_maker"),
}  # fmt: skip
HELP = (
    f"{NAME} supports inverse perpetuals 'perpetual-<BASE>-USD:<BASE>' <-> '<BASE>USD_PERP' "
    "(e.g. BTCUSD_PERP)"
)


def to_native(inst: Instrument) -> str | None:
    """``BTCUSD_PERP`` for ``perpetual-BTC-USD:BTC``; None outside the grammar."""
    if inst.kind == "perpetual" and inst.is_inverse and inst.quote == "USD":
        return f"{inst.base}USD_PERP"
    return None


def from_native(native: str) -> Instrument | None:
    """The inverse perpetual of a COIN-M id (any letter case)."""
    match = _NATIVE.match(native.upper())
    return Instrument("perpetual", match["base"], "USD", match["base"]) if match else None


# --- archive --------------------------------------------------------------------------------


LAYOUT = FuturesLayout("cm")
file_url, daily_url, monthly_url = LAYOUT.file_url, LAYOUT.daily_url, LAYOUT.monthly_url


class CoinMCsv(BinanceCsv):
    """A COIN-M archive CSV of the Atlas ``symbol``: quantities are contracts, converted with
    the contract size in force at each trade (``contract_values``; None: the seed table)."""

    def __init__(
        self, symbol: str, dataset: str = "aggTrades", contract_values: pl.DataFrame | None = None
    ) -> None:
        super().__init__(dataset)
        self.dataset = dataset
        native = symbology.to_native(NAME, symbol)
        values = specs_history(NAME, symbol) if contract_values is None else contract_values
        self.values = ContractValues(native, values)
        self.name = native

    def start(self, header: str | None, first_row: str, name: str) -> None:
        """Refuse a header that is not the dataset's (naming the file)."""
        self.name = name
        names = [h.strip().lstrip("\ufeff") for h in (header or "").split(",")]
        if header is not None and names != list(HEADERS[self.dataset]):
            expected = ",".join(HEADERS[self.dataset])
            raise MalformedCsvError(
                name, 1, f"unknown COIN-M header {header!r}; expected {expected}"
            )

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        id_col, price_col, qty_col, time_col, maker_col = self.fields
        raw = raw.with_columns(to_micros(field(raw, time_col, pl.Int64())).alias("_ts"))
        raw = raw.with_columns(self.values.expr(pl.col("_ts")).alias("_ct_val"))
        self.values.check(raw["_ts"], raw["_ct_val"], self.name)
        notional = field(raw, qty_col, pl.Float64()) * pl.col("_ct_val")
        price = field(raw, price_col, pl.Float64())
        return raw.select(
            pl.col("_ts").alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            field(raw, id_col, pl.Int64()).alias("trade_id"),
            price.alias("price"),
            (notional / price).alias("base_qty"),
            notional.alias("notional"),
            _taker_buy(raw, maker_col).alias("is_taker_buy"),
            *self.fill_ids(raw),
        )


def _csv_format(symbol: str, options: FetchOptions) -> CoinMCsv:
    return CoinMCsv(symbol, options.dataset or DATASETS[0], options.contract_values)


ARCHIVE = Exchange(
    name=NAME,
    default_url=ARCHIVE_URL,
    url_env=ARCHIVE_ENV,
    daily_url=daily_url,
    monthly_url=monthly_url,
    checksum_url=lambda url: url + ".CHECKSUM",
    csv_format=_csv_format,
    datasets=DATASETS,
    file_check=one_sided_check,
    sizes_in_contracts=True,
    probe=S3Listing(LISTING_URL, LISTING_ENV),  # the USD-M bucket, under data/futures/cm/
)


def write_archive(
    trades: pl.DataFrame,
    root: Path,
    symbol: str,
    *,
    dataset: str = "aggTrades",
    monthly: bool = False,
    daily: bool = True,
    header: bool = True,
    klines: bool = False,
) -> list[Path]:
    """COIN-M files (zip + CHECKSUM) under ``root`` for every day (and/or month) traded; the
    quantities are ``notional / contract size`` (the seed table's size in force). With
    ``klines`` the 1m klines of the same days and/or months too."""
    native = symbology.to_native(NAME, symbol)
    values = ContractValues(native, specs_history(NAME, symbol))
    contracts = trades.with_columns(  # quantity: contracts; trades' 4th column: base_qty
        base_qty=(pl.col("notional") / values.expr(pl.col("exchange_ts"))).round(6),
        notional=pl.col("base_qty"),
    )
    written: list[Path] = []
    groups = [("monthly", "%Y-%m")] * monthly + [("daily", "%Y-%m-%d")] * daily
    for frequency, fmt in groups:
        keyed = contracts.with_columns(pl.col("exchange_ts").dt.strftime(fmt).alias("_period"))
        for (period,), part in keyed.group_by("_period", maintain_order=True):
            name = f"{native}-{dataset}-{period}"
            folder = root / "data/futures/cm" / frequency / dataset / native
            data = binance_csv(part.drop("_period"), dataset, header=header, micros=False)
            data = data.replace(b"quote_qty", b"base_qty", 1)  # COIN-M names it so
            path = write_zip(folder / f"{name}.zip", f"{name}.csv", data)
            written += [path, write_checksum(path)]
    in_contracts = (pl.col("notional") / values.expr(pl.col("exchange_ts"))).round(6)
    for daily_files in [False] * (monthly and klines) + [True] * (daily and klines):
        written += write_klines(trades, root, LAYOUT, native, daily=daily_files,
                                contracts=in_contracts)  # fmt: skip
    return written


def read_figures(
    base: str, session: requests.Session, native: str, span: tuple[datetime, datetime]
) -> ExchangeFigures:
    """The month's 1m klines from the COIN-M archive (see :func:`fetch_klines`)."""
    return fetch_klines(LAYOUT, base, session, native, span)


# --- catalog --------------------------------------------------------------------------------


def _row(item: dict[str, Any]) -> dict[str, Any]:
    where = f"binance dapi exchangeInfo symbol {item.get('symbol')!r}"
    for key in ("symbol", "baseAsset", "quoteAsset", "marginAsset", "contractSize"):
        if key not in item:
            raise CatalogShapeError(f"{where}: missing field {key!r}")
    native, base, quote = str(item["symbol"]), str(item["baseAsset"]), str(item["quoteAsset"])
    try:
        inst = perpetual(base, quote, str(item["marginAsset"]))
        symbol = atlas_id(NAME, native, inst)
    except SymbolError:
        symbol = None
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": str(item["marginAsset"]),
        "kind": "inverse",  # quantities are contracts of contractSize USD
        "ct_val": float(item["contractSize"]),
        "ct_val_ccy": quote,
        "listed": from_ms(item.get("onboardDate"), where),
        "delisted": delisted(item.get("deliveryDate"), where),
        "status": str(item.get("contractStatus", "")),
    }


def parse_catalog(document: object) -> pl.DataFrame:
    """The perpetuals (``contractType == "PERPETUAL"``) of a ``/dapi/v1/exchangeInfo`` answer."""
    if not isinstance(document, dict) or not isinstance(document.get("symbols"), list):
        raise CatalogShapeError("binance dapi exchangeInfo: expected an object with 'symbols'")
    items = [i for i in document["symbols"] if isinstance(i, dict)]
    if len(items) != len(document["symbols"]):
        raise CatalogShapeError("binance dapi exchangeInfo: a symbol is not an object")
    return instruments_frame([_row(i) for i in items if i.get("contractType") == "PERPETUAL"])


def fetch_catalog(base: str, session: requests.Session) -> pl.DataFrame:
    """Every COIN-M perpetual now (one request)."""
    return fetch_exchange_info(base, API_PATH, session, parse_catalog)


def cm_symbol(
    base: str,
    *,
    onboard: datetime,
    contract_size: int,
    status: str = "TRADING",
    delivery: datetime | None = None,
    contract_type: str = "PERPETUAL",
    suffix: str = "PERP",
) -> dict[str, Any]:
    """One ``symbols`` entry of the COIN-M exchangeInfo (its own fields over USD-M's)."""
    item = binance_symbol(
        f"{base}USD_{suffix}", base, "USD", onboard=onboard, margin=base,
        delivery=delivery, contract_type=contract_type,
    )  # fmt: skip
    item.pop("status")
    item["pair"] = f"{base}USD"
    item.update(contractStatus=status, contractSize=contract_size, equalQtyPrecision=4)
    return item


_SAMPLE_BASES = ["BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "LINK", "DOT", "LTC",
                 "BCH", "AVAX", "UNI", "ATOM", "ETC", "FIL", "XLM", "EOS", "AAVE", "NEAR", "APT",
                 "SUI", "OP", "ARB", "1000SHIB"]  # fmt: skip


def sample() -> dict[str, Any]:
    """A realistic COIN-M exchangeInfo: ~26 perpetuals, a quarterly future, a delisted one."""
    start = datetime(2020, 8, 10, tzinfo=UTC)
    symbols = [
        cm_symbol(b, onboard=start + timedelta(days=53 * n), contract_size=10 + 90 * (b == "BTC"))
        for n, b in enumerate(_SAMPLE_BASES)
    ]
    symbols.append(
        cm_symbol("BTC", onboard=start, contract_size=100, contract_type="CURRENT_QUARTER",
                  suffix="261225", delivery=datetime(2026, 12, 25, 8, tzinfo=UTC))
    )  # fmt: skip
    symbols.append(
        cm_symbol("FTM", onboard=start, contract_size=10, status="SETTLING",
                  delivery=datetime(2025, 1, 13, 9, tzinfo=UTC))
    )  # fmt: skip
    document = binance_exchange_info(symbols, datetime(2026, 10, 1, tzinfo=UTC))
    document["futuresType"] = "COIN_MARGINED"
    return document


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=ARCHIVE,
    catalog=CatalogReader(API_URL, API_ENV, fetch_catalog, document_at(API_PATH), sample),
    write_archive=write_archive,
    ids_case_insensitive=True,
    exchange_figures=ExchangeAggregation("1m", "archive", read_figures, "1m klines (archive)"),
)
