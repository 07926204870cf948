"""Local archive mirrors: exchange-exact files written from normalized trades, served over HTTP.

Each venue's ``write_archive`` (in its module under :mod:`flow_assets.venues`) turns a
``TRADE_SCHEMA`` frame into the files the exchange publishes (same paths, zip names, CSV columns
and formats), so the sources can be exercised end to end without the internet; here are the
generic pieces they build on (:func:`write_zip`, :func:`write_checksum`, :func:`epoch`), the
Tardis-style CSV writer and sample trades. :class:`ArchiveServer` serves a directory on
``127.0.0.1`` and can inject faults.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
import time
import zipfile
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import polars as pl

from flow_assets.loopback import Fault, LoopbackServer
from flow_assets.metrics.schema import FILL_ID_COLUMNS, TRADE_SCHEMA


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


S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
S3_MAX_KEYS = 1000


def _etag(body: bytes) -> str:
    """An S3 ETag of a single-part object: the quoted MD5 of its bytes."""
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


def _s3_time(mtime: float) -> str:
    """A time as S3 listings write it, e.g. ``2024-02-01T05:23:41.000Z``."""
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def autoindex(folder: Path, path: str) -> bytes:
    """The HTML index nginx's ``autoindex`` answers for a folder: a link per entry, then its
    modification time (``01-Oct-2019 08:31``, UTC) and exact size (``-`` for a folder)."""
    rows = ['<a href="../">../</a>']
    for entry in sorted(folder.iterdir()):
        stat, name = entry.stat(), entry.name + "/" * entry.is_dir()
        when = datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%d-%b-%Y %H:%M")
        size = "-" if entry.is_dir() else str(stat.st_size)
        link = f'<a href="{quote(name)}">{escape(name)}</a>'
        rows.append(f"{link}{' ' * max(51 - len(name), 1)}{when} {size:>19}")
    title = f"Index of {escape(path)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<h1>{title}</h1>"
        f"<hr><pre>{chr(10).join(rows)}\r\n</pre><hr></body>\r\n</html>\r\n"
    ).encode()


class ArchiveServer(LoopbackServer):
    """The files under ``root`` served on 127.0.0.1 (free port); a context manager.

    Like the S3 bucket behind Binance's archive, ``GET /?list-type=2&prefix=...`` answers an S3
    ListObjectsV2 listing (``start-after``, ``continuation-token``, ``max-keys`` up to
    ``page_size``; no ``delimiter``/CommonPrefixes) in S3's XML, with the ETag (MD5) a GET of each
    file answers. Like the nginx behind Bybit's archive, a folder answers its HTML index
    (:func:`autoindex`: each file's date and exact size), made when asked.
    ``inject(path, *faults)`` queues faults for a URL path (relative to the root; ``/`` for
    listings); ``log`` lists ``(method, path, status)`` of every request served (a listing's
    path is ``/?`` and its query).
    """

    def __init__(self, root: Path, page_size: int = S3_MAX_KEYS) -> None:
        self.root = Path(root)
        self.page_size = page_size
        super().__init__()

    def listing(self, query: str) -> bytes:
        """The ListObjectsV2 answer (one page) for a listing's query string."""
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        prefix = params.get("prefix", "")
        token = params.get("continuation-token")
        after = base64.urlsafe_b64decode(token).decode() if token else params.get("start-after", "")
        limit = min(int(params.get("max-keys", S3_MAX_KEYS)), self.page_size)
        keys = [k for k in self._keys_under(prefix) if k > after]
        page, more = keys[:limit], len(keys) > limit
        contents = "".join(self._contents(key) for key in page)
        extra = f"<ContinuationToken>{escape(token)}</ContinuationToken>" if token else ""
        if more:
            following = base64.urlsafe_b64encode(page[-1].encode()).decode()
            extra += f"<NextContinuationToken>{following}</NextContinuationToken>"
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_XMLNS}">'
            f"<Name>{escape(self.root.name)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"<IsTruncated>{str(more).lower()}</IsTruncated>{extra}{contents}</ListBucketResult>"
        ).encode()

    def _keys_under(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def _contents(self, key: str) -> str:
        file = self.root / key
        stat = file.stat()
        return (
            f"<Contents><Key>{escape(key)}</Key>"
            f"<LastModified>{_s3_time(stat.st_mtime)}</LastModified>"
            f"<ETag>{escape(_etag(file.read_bytes()))}</ETag><Size>{stat.st_size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )

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
                url = urlsplit(self.path)
                path = unquote(url.path)
                if "list-type=2" in url.query.split("&"):
                    path = f"{path}?{url.query}"
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
                query = urlsplit(self.path).query
                if path == "/" and "list-type=2" in query.split("&"):
                    body = server.listing(query)
                    headers = {"Content-Length": str(len(body)), "Content-Type": "application/xml"}
                    self._answer(200, body, headers)
                    if send_body:
                        self.wfile.write(body)
                    return
                file = (server.root / path.lstrip("/")).resolve()
                inside = file == server.root.resolve() or server.root.resolve() in file.parents
                if inside and file.is_dir():  # a folder answers with its index, as nginx does
                    body = autoindex(file, path)
                    headers = {"Content-Length": str(len(body)), "Content-Type": "text/html"}
                    self._answer(200, body, headers)
                    if send_body:
                        self.wfile.write(body)
                    return
                if server.root.resolve() not in file.parents or not file.is_file():
                    self._answer(404, b"", {"Content-Length": "0"})
                    return
                body = fault.body if fault and fault.body is not None else file.read_bytes()
                stat = file.stat()
                headers = {
                    "Content-Length": str(len(body)),
                    "Content-Type": "application/octet-stream",
                    "ETag": _etag(body),
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
    return frame.with_columns(
        pl.lit(None, dtype=pl.Int64).alias(name) for name in FILL_ID_COLUMNS
    ).select(list(TRADE_SCHEMA))


__all__ = [
    "ArchiveServer",
    "Fault",
    "epoch",
    "sample_trades",
    "write_checksum",
    "write_tardis",
    "write_zip",
]
