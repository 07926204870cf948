"""Binance USD-M futures archive (``data.binance.vision``): aggTrades (default) or trades.

Layout: ``{base}/data/futures/um/{monthly|daily}/{dataset}/{SYM}/{SYM}-{dataset}-{period}.zip``
with a ``.zip.CHECKSUM`` beside each file (``<sha256>  <zip name>``). The base is ``base_url``,
else ``$FLOW_ASSETS_BINANCE_URL``, else ``https://data.binance.vision``. The archive is the S3
bucket ``data.binance.vision``; its regional endpoint (:data:`LISTING_URL`, or
``$FLOW_ASSETS_BINANCE_LISTING_URL`` through the sensor's resource) answers S3 ListObjectsV2
listings by prefix, which the archive sensor reads instead of a request per file
(:class:`~flow_assets.sources.probing.S3Listing`).

Which files: a finished month uses its monthly file when published, else its daily files (UTC
days); the running month uses the daily files up to yesterday. The month plan, checksum checks,
coverage and streaming are those of every exchange (:mod:`flow_assets.sources.archive`); this
module gives the layout and the CSV (:data:`BINANCE`).

CSV: aggTrades ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
is_buyer_maker`` (spot adds ``is_best_match``), trades ``id,price,qty,quote_qty,time,
is_buyer_maker``. A header row may be present or not (futures files before 2022 have none);
times are ms or µs, decided per value by magnitude (>= 1e14 is µs); booleans ``true``/``True``.
Normalized: ``trade_id`` = agg_trade_id or id, ``base_qty`` = quantity, ``notional`` =
price * quantity, ``is_taker_buy`` = not is_buyer_maker, ``arrival_ts`` null. Row policies
(zero quantity, duplicate ids, order) are those of :mod:`flow_assets.sources.report`.

Known defect: in the ``trades`` dataset ``is_buyer_maker`` is true on every row since 2026-07-03.
A day with at least ``ONE_SIDED_MIN_TRADES`` trades all on one side is refused with
:class:`ArchiveDefectError`, never turned into bars; aggTrades keep the side.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.csvstream import (
    CsvFormat,
    base_and_notional,
    field,
    read_trades,
    text,
)
from flow_assets.sources.errors import ArchiveDefectError
from flow_assets.sources.probing import S3Listing
from flow_assets.sources.report import empty_trades

EXCHANGE = "binance-futures"
DEFAULT_URL = "https://data.binance.vision"
# The archive is the S3 bucket ``data.binance.vision``: its host serves files, the bucket's
# regional endpoint answers ListObjectsV2 listings (what the archive's browsable index reads).
LISTING_URL = "https://s3-ap-northeast-1.amazonaws.com/data.binance.vision"
URL_ENV = "FLOW_ASSETS_BINANCE_URL"
LISTING_ENV = "FLOW_ASSETS_BINANCE_LISTING_URL"
DATASETS = ("aggTrades", "trades")
ONE_SIDED_MIN_TRADES = 10
MICROS_THRESHOLD = 10**14  # 1e14 ms is the year 5138; 1e14 µs is 1973

# Positions of (id, price, quantity, time, is_buyer_maker) in each dataset's rows.
_FIELDS = {"aggTrades": (0, 1, 2, 5, 6), "trades": (0, 1, 2, 4, 5)}
_WIDTHS = {"aggTrades": (7, 8), "trades": (6, 7)}
# The dtype of every field (the last, spot's is_best_match, included) read first.
_I, _F, _B = pl.Int64(), pl.Float64(), pl.Boolean()
_DTYPES = {"aggTrades": (_I, _F, _F, _I, _I, _I, _B, _B), "trades": (_I, _F, _F, _F, _I, _B, _B)}


def file_url(base: str, native: str, dataset: str, period: str) -> str:
    """URL of one archive zip; ``period`` is ``YYYY-MM`` (monthly) or ``YYYY-MM-DD`` (daily)."""
    frequency = "monthly" if len(period) == 7 else "daily"
    return f"{base}/data/futures/um/{frequency}/{dataset}/{native}/{native}-{dataset}-{period}.zip"


def daily_url(base: str, native: str, dataset: str, day: date) -> str:
    """URL of the file of the UTC ``day``."""
    return file_url(base, native, dataset, f"{day:%Y-%m-%d}")


def monthly_url(base: str, native: str, dataset: str, month: date) -> str:
    """URL of the file of the whole UTC ``month``."""
    return file_url(base, native, dataset, f"{month:%Y-%m}")


def to_micros(column: pl.Expr) -> pl.Expr:
    """Epoch ms or µs (by magnitude) as a UTC datetime in µs."""
    return (
        pl.when(column >= MICROS_THRESHOLD).then(column).otherwise(column * 1000).cast(UTC_MICROS)
    )


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
        )


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


def check_one_sided(trades: pl.DataFrame, name: str) -> None:
    """Refuse a day of the ``trades`` dataset whose trades are all on one side (archive defect)."""
    check = OneSidedCheck()
    check.add(trades)
    check.check(name)


def _csv_format(symbol: str, options: FetchOptions) -> BinanceCsv:
    """USD-M quantities are in the base asset: there are no contract values to apply."""
    if options.contract_values is not None:
        raise ValueError(f"{EXCHANGE} sizes are not contracts; contract_values does not apply")
    return BinanceCsv(options.dataset)


def _one_sided_check(options: FetchOptions) -> OneSidedCheck | None:
    return OneSidedCheck() if options.dataset == "trades" else None


BINANCE = Exchange(
    name=EXCHANGE,
    default_url=DEFAULT_URL,
    url_env=URL_ENV,
    daily_url=daily_url,
    monthly_url=monthly_url,
    checksum_url=lambda url: url + ".CHECKSUM",
    csv_format=_csv_format,
    datasets=DATASETS,
    file_check=_one_sided_check,
    probe=S3Listing(LISTING_URL, LISTING_ENV),
)
