"""Local archive mirrors: exchange-exact files written from normalized trades, served over HTTP.

Each venue's ``write_archive`` (in its module under :mod:`flow_assets.venues`) turns a
``TRADE_SCHEMA`` frame into the files the exchange publishes (same paths, zip names, CSV columns
and formats), so the sources can be exercised end to end without the internet; here are the
generic pieces they build on (:func:`write_zip`, :func:`write_checksum`, :func:`epoch`), the
Tardis-style CSV writer and sample trades. :class:`ArchiveServer` serves a directory on
``127.0.0.1`` and can inject faults.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import time
import zipfile
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import polars as pl

from flow_assets.loopback import Fault, LoopbackServer
from flow_assets.metrics.schema import TRADE_SCHEMA


def epoch(micros: bool) -> pl.Expr:
    """``exchange_ts`` as epoch µs (``micros``) or ms, as archive CSVs write it."""
    unit = "us" if micros else "ms"
    return pl.col("exchange_ts").dt.epoch(unit)


def write_zip(path: Path, member: str, data: bytes) -> Path:
    """A zip holding one deflated member, plus nothing else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
    return path


def write_checksum(path: Path) -> Path:
    """``<path>.CHECKSUM`` in sha256sum format: ``<hex>  <name>\\n``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = path.with_name(path.name + ".CHECKSUM")
    target.write_text(f"{digest}  {path.name}\n")
    return target


def write_tardis(trades: pl.DataFrame, path: Path, exchange: str, symbol: str) -> Path:
    """A Tardis-style CSV (µs; gzip when ``path`` ends in ``.gz``)."""
    frame = trades.select(
        pl.lit(exchange).alias("exchange"),
        pl.lit(symbol).alias("symbol"),
        epoch(True).alias("timestamp"),
        pl.col("arrival_ts").dt.epoch("us").alias("local_timestamp"),
        pl.col("trade_id").alias("id"),
        pl.when(pl.col("is_taker_buy")).then(pl.lit("buy")).otherwise(pl.lit("sell")).alias("side"),
        "price",
        pl.col("base_qty").alias("amount"),
    )
    data = frame.write_csv().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


class ArchiveServer(LoopbackServer):
    """The files under ``root`` served on 127.0.0.1 (free port); a context manager.

    ``inject(path, *faults)`` queues faults for a URL path (relative to the root); ``log`` lists
    ``(method, path, status)`` of every request served.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        super().__init__()

    def requests_for(self, path: str) -> list[tuple[str, str, int]]:
        """The logged requests of one URL path."""
        key = "/" + path.lstrip("/")
        return [entry for entry in self.log if entry[1] == key]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                path = unquote(urlsplit(self.path).path)
                server.log.append((self.command, path, status))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()

            def _serve(self, send_body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                fault = server._next_fault(path)
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status:
                    headers = {"Content-Length": "0"}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = f"{fault.retry_after:g}"
                    self._answer(fault.status, b"", headers)
                    return
                file = (server.root / path.lstrip("/")).resolve()
                if file.is_dir():  # a folder answers with its index, as static hosts do
                    file = file / "index.html"
                if server.root.resolve() not in file.parents or not file.is_file():
                    self._answer(404, b"", {"Content-Length": "0"})
                    return
                body = fault.body if fault and fault.body is not None else file.read_bytes()
                stat = file.stat()
                headers = {
                    "Content-Length": str(len(body)),
                    "Content-Type": "application/octet-stream",
                    "ETag": '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"',
                    "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
                }
                if fault and fault.truncate is not None:
                    headers["Connection"] = "close"
                self._answer(200, body, headers)
                if not send_body:
                    return
                if fault and fault.truncate is not None:
                    self.wfile.write(body[: fault.truncate])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve(send_body=True)

            def do_HEAD(self) -> None:
                self._serve(send_body=False)

        return Handler


def utc(year: int, month: int, day: int, *rest: int) -> datetime:
    """A UTC datetime (a convenience for building trades)."""
    return datetime(year, month, day, *rest, tzinfo=UTC)


def sample_trades(
    start: datetime, stop: datetime, count: int, *, seed: int = 0, first_id: int = 1
) -> pl.DataFrame:
    """``count`` linear trades spread over ``[start, stop)`` at whole milliseconds, ids ascending.

    Prices and quantities have few decimals so they survive any CSV round trip exactly.
    """
    rng = random.Random(seed)
    span_ms = int((stop - start).total_seconds() * 1000)
    offsets = sorted(rng.randrange(span_ms) for _ in range(count))
    prices = [round(20000 + rng.randrange(-5000, 5000) / 10, 1) for _ in range(count)]
    qtys = [rng.randrange(1, 5000) / 1000 for _ in range(count)]
    frame = pl.DataFrame(
        {
            "exchange_ts": [start + timedelta(milliseconds=o) for o in offsets],
            "arrival_ts": [None] * count,
            "trade_id": list(range(first_id, first_id + count)),
            "price": prices,
            "base_qty": qtys,
            "is_taker_buy": [rng.random() < 0.5 for _ in range(count)],
        },
        schema_overrides={"arrival_ts": pl.Datetime("us", "UTC")},
    )
    frame = frame.with_columns(
        pl.col("exchange_ts").cast(pl.Datetime("us", "UTC")),
        (pl.col("price") * pl.col("base_qty")).alias("notional"),
    )
    return frame.select(list(TRADE_SCHEMA))


__all__ = [
    "ArchiveServer",
    "Fault",
    "epoch",
    "sample_trades",
    "write_checksum",
    "write_tardis",
    "write_zip",
]
