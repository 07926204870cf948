"""OKX perpetual swaps archive: daily trade files on UTC+8 days, sizes in contracts.

Layout: ``{base}/cdn/okex/traderecords/trades/daily/{YYYYMMDD}/{INST}-trades-{YYYY-MM-DD}.zip``;
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
exist decides the month's end). Row policies are those of :mod:`flow_assets.sources.report`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.archive import Exchange, FetchOptions
from flow_assets.sources.binance import to_micros
from flow_assets.sources.contracts import ContractValues, specs_history
from flow_assets.sources.csvstream import CsvFormat, field, read_trades, taker_buy, text
from flow_assets.sources.errors import MalformedCsvError
from flow_assets.sources.probing import DayFrontier
from flow_assets.sources.report import empty_trades
from flow_assets.symbology import parse_symbol, to_native

__all__ = ["ContractValues", "OkxCsv", "contract_values_from_specs", "read_okx_csv"]

EXCHANGE = "okx-perps"
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
    return specs_history(EXCHANGE, symbol)


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
        self.native = to_native(EXCHANGE, symbol)
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
        ts = to_micros(field(raw, at["created_time"], pl.Int64()))
        raw = raw.with_columns(ts.alias("_ts"))
        raw = raw.with_columns(self.values.expr(pl.col("_ts")).alias("_ct_val"))
        self.values.check(raw["_ts"], raw["_ct_val"], self.name)
        ts, ct_val = pl.col("_ts"), pl.col("_ct_val")
        size = field(raw, at["size"], pl.Float64())
        price = field(raw, at["price"], pl.Float64())
        if self.inverse:
            notional = size * ct_val
            base_qty = notional / price
        else:
            base_qty = size * ct_val
            notional = price * base_qty
        return raw.select(
            ts.alias("exchange_ts"),
            pl.lit(None, dtype=UTC_MICROS).alias("arrival_ts"),
            field(raw, at["trade_id"], pl.Int64()).alias("trade_id"),
            price.alias("price"),
            base_qty.alias("base_qty"),
            notional.alias("notional"),
            taker_buy(text(at["side"])).alias("is_taker_buy"),
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
    name=EXCHANGE,
    default_url=DEFAULT_URL,
    url_env=URL_ENV,
    daily_url=daily_url,
    csv_format=_csv_format,
    day_offset=UTC_OFFSET,
    version_tag="okx",
    sizes_in_contracts=True,
    probe=DayFrontier(),  # no listing, no index: HEADs of the day files not seen yet
)
