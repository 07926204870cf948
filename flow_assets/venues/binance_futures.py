"""``binance-futures``: Binance USD-M perpetuals.

* Atlas: ``<BASE><QUOTE>`` (any letter case) <-> ``perpetual-<BASE>-<QUOTE>:<QUOTE>``, linear,
  quoted and margined in USDT, USDC, FDUSD, BUSD or BTC (``ETHBTC``); stablecoins are tried first,
  so a base ending in "BTC" (``WBTCUSDT``) keeps its name.
* Archive: ``data.binance.vision`` ``data/futures/um/{monthly|daily}/{aggTrades|trades}/...``,
  zip + ``.CHECKSUM``, UTC days, integer trade ids, quantities in the base asset (below);
  base ``FLOW_ASSETS_BINANCE_URL``; the CSV is :mod:`flow_assets.venues.binance_common`'s.
* Catalog: ``GET {base}/fapi/v1/exchangeInfo`` (base ``FLOW_ASSETS_BINANCE_API_URL``, else
  ``https://fapi.binance.com``): one answer holds every symbol (no pagination, no parameters;
  request weight 1 against the per-IP limit its ``rateLimits`` state); symbols with
  ``contractType == "PERPETUAL"`` kept, ``baseAsset``, ``quoteAsset``, ``marginAsset``,
  ``onboardDate``, ``deliveryDate`` (:mod:`flow_assets.venues.binance_common`), ``status``;
  sizes are base units (``ct_val`` 1 of the base).

Layout: ``{base}/data/futures/um/{monthly|daily}/{dataset}/{SYM}/{SYM}-{dataset}-{period}.zip``
with a ``.zip.CHECKSUM`` beside each file (``<sha256>  <zip name>``). The base is ``base_url``,
else ``$FLOW_ASSETS_BINANCE_URL``, else ``https://data.binance.vision``. The archive is the S3
bucket ``data.binance.vision``; its regional endpoint (``LISTING_URL`` of
:mod:`flow_assets.venues.binance_common`, or ``$FLOW_ASSETS_BINANCE_LISTING_URL`` through the
sensor's resource) answers S3 ListObjectsV2 listings by prefix, which the archive sensor reads
instead of a request per file (:class:`~flow_assets.sources.probing.S3Listing`).

Which files: a finished month uses its monthly file when published, else its daily files (UTC
days); the running month uses the daily files up to yesterday. The month plan, checksum checks,
coverage and streaming are those of every exchange (:mod:`flow_assets.sources.archive`); this
module gives the layout and the CSV (:data:`BINANCE`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import requests

from flow_assets import symbology
from flow_assets.catalog.model import atlas_id, field, from_ms, instruments_frame, items_of
from flow_assets.catalog.samples import COINS, MULTIPLIED, SNAPSHOT_AT, listed
from flow_assets.metrics.exchange_check import ExchangeFigures
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.mirror import write_checksum, write_zip
from flow_assets.sources.probing import S3Listing
from flow_assets.symbology import Instrument, SymbolError, perpetual
from flow_assets.venues.base import CatalogReader, ExchangeAggregation, Venue
from flow_assets.venues.binance_common import (
    DATASETS,
    LISTING_URL,
    BinanceCsv,
    FuturesLayout,
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

NAME = "binance-futures"
QUOTES: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "BUSD", "BTC")
_NATIVE = re.compile(r"^[A-Z0-9]+$")
HELP = (
    f"{NAME} supports linear perpetuals quoted and settled in {'/'.join(QUOTES)}: "
    "'perpetual-<BASE>-<QUOTE>:<QUOTE>' <-> '<BASE><QUOTE>' (e.g. BTCUSDT, 1000PEPEUSDC)"
)


def to_native(inst: Instrument) -> str | None:
    """``BTCUSDT`` for ``perpetual-BTC-USDT:USDT``; None outside the grammar."""
    if inst.kind == "perpetual" and inst.is_linear and inst.quote in QUOTES:
        return f"{inst.base}{inst.quote}"
    return None


def from_native(native: str) -> Instrument | None:
    """The perpetual of a USD-M id split at a known quote (any letter case)."""
    upper = native.upper()
    if _NATIVE.match(upper):
        for quote in QUOTES:
            base = upper.removesuffix(quote)
            if base != upper and base:
                return Instrument("perpetual", base, quote, quote)
    return None


# --- catalog --------------------------------------------------------------------------------

API_URL = "https://fapi.binance.com"
API_ENV = "FLOW_ASSETS_BINANCE_API_URL"
API_PATH = "/fapi/v1/exchangeInfo"


def _row(item: dict[str, Any]) -> dict[str, Any]:
    native = str(field(item, "symbol", "binance exchangeInfo symbol"))
    where = f"binance exchangeInfo symbol {native}"
    base = str(field(item, "baseAsset", where))
    quote = str(field(item, "quoteAsset", where))
    settle = str(field(item, "marginAsset", where))
    try:
        symbol = atlas_id(NAME, native, perpetual(base, quote, settle))
    except SymbolError:
        symbol = None
    return {
        "exchange": NAME,
        "native": native,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle,
        "kind": "linear",  # USD-M quantities are base units whatever the margin asset
        "ct_val": 1.0,
        "ct_val_ccy": base,
        "listed": from_ms(field(item, "onboardDate", where), where),
        "delisted": delisted(field(item, "deliveryDate", where), where),
        "status": str(field(item, "status", where)),
    }


def parse_catalog(document: object) -> pl.DataFrame:
    """The perpetuals (``contractType == "PERPETUAL"``) of a ``/fapi/v1/exchangeInfo`` answer."""
    items = items_of(document, "symbols", "binance exchangeInfo")
    return instruments_frame([_row(i) for i in items if i.get("contractType") == "PERPETUAL"])


def fetch_catalog(base: str, session: requests.Session) -> pl.DataFrame:
    """Every USD-M perpetual now (one request)."""
    return fetch_exchange_info(base, API_PATH, session, parse_catalog)


_USDC_TWINS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "LINK", "SUI", "1000PEPE",
               "1000BONK", "1000SHIB", "WIF", "AAVE", "ORDI", "TRUMP"]  # fmt: skip
# Symbols on their way out: status and the delivery (delisting) time announced.
_LEAVING = {
    "AGIX": ("SETTLING", datetime(2026, 9, 15, 9, tzinfo=UTC)),
    "OCEAN": ("CLOSE", datetime(2024, 9, 3, 9, 30, tzinfo=UTC)),
}


def sample() -> dict[str, Any]:
    """A realistic exchangeInfo: ~300 USD-M perpetuals (USDC twins, BTC-margined ``ETHBTC``,
    a settling, a closed and a pending symbol) plus one quarterly contract."""
    pairs = [(c, "USDT") for c in dict.fromkeys(COINS + MULTIPLIED + ["BTCDOM"])]
    pairs += [(c, "USDC") for c in _USDC_TWINS] + [("ETH", "BTC"), ("BNB", "BTC")]
    symbols = [
        binance_symbol(f"{base}{quote}", base, quote, onboard=listed(n))
        for n, (base, quote) in enumerate(pairs)
    ]
    symbols.append(
        binance_symbol("BTCUSDT_261225", "BTC", "USDT", onboard=listed(1),
                       delivery=datetime(2026, 12, 25, 8, tzinfo=UTC),
                       contract_type="CURRENT_QUARTER")
    )  # fmt: skip
    for n, (base, (status, delivery)) in enumerate(_LEAVING.items()):
        symbols.append(
            binance_symbol(f"{base}USDT", base, "USDT", onboard=listed(n + 3), status=status,
                           delivery=delivery)
        )  # fmt: skip
    symbols.append(
        binance_symbol("NEWCOINUSDT", "NEWCOIN", "USDT", onboard=SNAPSHOT_AT + timedelta(hours=6),
                       status="PENDING_TRADING")
    )  # fmt: skip
    return binance_exchange_info(symbols, SNAPSHOT_AT)


# --- archive --------------------------------------------------------------------------------

DEFAULT_URL = "https://data.binance.vision"
URL_ENV = "FLOW_ASSETS_BINANCE_URL"
LISTING_ENV = "FLOW_ASSETS_BINANCE_LISTING_URL"


LAYOUT = FuturesLayout("um")
file_url, daily_url, monthly_url = LAYOUT.file_url, LAYOUT.daily_url, LAYOUT.monthly_url


def _csv_format(symbol: str, options: FetchOptions) -> BinanceCsv:
    """USD-M quantities are in the base asset: there are no contract values to apply."""
    if options.contract_values is not None:
        raise ValueError(f"{NAME} sizes are not contracts; contract_values does not apply")
    return BinanceCsv(options.dataset)


BINANCE = Exchange(
    name=NAME,
    default_url=DEFAULT_URL,
    url_env=URL_ENV,
    daily_url=daily_url,
    monthly_url=monthly_url,
    checksum_url=lambda url: url + ".CHECKSUM",
    csv_format=_csv_format,
    datasets=DATASETS,
    file_check=one_sided_check,
    probe=S3Listing(LISTING_URL, LISTING_ENV),
)


def write_binance(
    trades: pl.DataFrame,
    root: Path,
    symbol: str,
    *,
    dataset: str = "aggTrades",
    monthly: bool = True,
    daily: bool = False,
    header: bool = True,
    micros: bool = False,
    klines: bool = False,
) -> list[Path]:
    """Binance USD-M files (zip + CHECKSUM) under ``root`` for every month and/or day traded;
    with ``klines`` the 1m klines of the same months and/or days too."""
    native = symbology.to_native(NAME, symbol)
    written: list[Path] = []
    groups: list[tuple[str, str]] = []
    if monthly:
        groups.append(("monthly", "%Y-%m"))
    if daily:
        groups.append(("daily", "%Y-%m-%d"))
    for frequency, fmt in groups:
        keyed = trades.with_columns(pl.col("exchange_ts").dt.strftime(fmt).alias("_period"))
        for (period,), part in keyed.group_by("_period", maintain_order=True):
            name = f"{native}-{dataset}-{period}"
            folder = root / "data/futures/um" / frequency / dataset / native
            data = binance_csv(part.drop("_period"), dataset, header=header, micros=micros)
            path = write_zip(folder / f"{name}.zip", f"{name}.csv", data)
            written += [path, write_checksum(path)]
    if klines:
        for daily_files in [False] * monthly + [True] * daily:
            written += write_klines(trades, root, LAYOUT, native, daily=daily_files)
    return written


def read_figures(
    base: str, session: requests.Session, native: str, span: tuple[datetime, datetime]
) -> ExchangeFigures:
    """The month's 1m klines from the archive (see :func:`fetch_klines`)."""
    return fetch_klines(LAYOUT, base, session, native, span)


VENUE = Venue(
    name=NAME,
    to_native=to_native,
    from_native=from_native,
    grammar_help=HELP,
    archive=BINANCE,
    catalog=CatalogReader(API_URL, API_ENV, fetch_catalog, document_at(API_PATH), sample),
    write_archive=write_binance,
    ids_case_insensitive=True,
    exchange_figures=ExchangeAggregation("1m", "archive", read_figures, "1m klines (archive)"),
)
