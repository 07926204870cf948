"""Archive CSVs read as a stream: line-aligned chunks parsed one at a time into trades.

An archive file (a zip's single member, a gzip, or plain text) is decompressed in a background
thread, at most ``READ_AHEAD`` chunks of about ``CHUNK_BYTES`` ahead, and cut at line ends so that
every chunk starts on a non-blank line. Each chunk is parsed with the columns typed directly by the
CSV reader; a chunk that does not parse that way is parsed again with every field as text (the
reference reading: fields stripped, then cast), which either gives the same trades or raises
:class:`MalformedCsvError` with the file and the line.

A :class:`CsvFormat` says how one archive's columns become ``TRADE_SCHEMA`` trades. The first line
is a header when none of its fields is a number; the first data line fixes the number of fields.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import polars as pl

from flow_assets.metrics.schema import UTC_MICROS
from flow_assets.sources.errors import CorruptArchiveError, MalformedCsvError

CHUNK_BYTES = 32 << 20
READ_BYTES = 8 << 20
READ_AHEAD = 2
PROGRESS_ROWS = 10_000_000
T = TypeVar("T")
MICROS_THRESHOLD = 10**14  # 1e14 ms is the year 5138; 1e14 µs is 1973


class CsvFormat:
    """How the CSV of one archive maps to trades (subclasses fill in the columns)."""

    widths: tuple[int, ...] = ()
    required: tuple[str, ...] = (
        "exchange_ts",
        "trade_id",
        "price",
        "base_qty",
        "notional",
        "is_taker_buy",
    )
    invalid_reason = "invalid row"
    row_numbers = False  # convert gets ``_row``: the row's place among the file's data rows

    def start(self, header: str | None, first_row: str, name: str) -> None:
        """Look at the header line (None when absent) and the first data line before reading."""

    def columns(self) -> dict[int, pl.DataType]:
        """The dtype each field position is read as first (others: ``pl.String``); a chunk
        with a field that does not parse so is read again as text."""
        raise NotImplementedError

    def convert(self, raw: pl.DataFrame) -> pl.DataFrame:
        """Trades in ``TRADE_SCHEMA`` from fields ``c0..cN``, plus ``_valid`` when rows can be
        wrong in ways other than a bad field (``invalid_reason`` says how)."""
        raise NotImplementedError


def field(raw: pl.DataFrame, index: int, dtype: pl.DataType) -> pl.Expr:
    """Field ``index`` as ``dtype``: text is stripped and cast (null when it does not parse)."""
    name = f"c{index}"
    if raw.schema[name] == pl.String:
        return pl.col(name).str.strip_chars().cast(dtype, strict=False)
    return pl.col(name).cast(dtype)


def text(index: int) -> pl.Expr:
    """Field ``index`` as stripped text."""
    return pl.col(f"c{index}").str.strip_chars()


def to_micros(column: pl.Expr) -> pl.Expr:
    """Epoch ms or µs (by magnitude) as a UTC datetime in µs."""
    return (
        pl.when(column >= MICROS_THRESHOLD).then(column).otherwise(column * 1000).cast(UTC_MICROS)
    )


def no_fill_ids() -> list[pl.Expr]:
    """``first_trade_id``/``last_trade_id`` null: the source's records are single fills."""
    return [pl.lit(None, dtype=pl.Int64()).alias(n) for n in ("first_trade_id", "last_trade_id")]


def taker_buy(side: pl.Expr) -> pl.Expr:
    """True for a ``buy`` taker side, False for ``sell`` (any case), else null."""
    side = side.str.to_lowercase()
    return pl.when(side == "buy").then(True).when(side == "sell").then(False)


def base_and_notional(
    quantity: pl.Expr, price: pl.Expr, inverse_contract_value: float | None
) -> tuple[pl.Expr, pl.Expr]:
    """``(base_qty, notional)`` of a trade: a linear quantity is in the base asset; an inverse
    one counts contracts of ``inverse_contract_value`` USD each."""
    if inverse_contract_value is None:
        return quantity, price * quantity
    notional = quantity * inverse_contract_value
    return notional / price, notional


def is_number(value: str) -> bool:
    """Whether ``value`` reads as a number."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def has_header(first_line: str) -> bool:
    """A header row is a first line without a single numeric field."""
    return bool(first_line) and not any(is_number(f) for f in first_line.split(","))


def read_ahead(items: Iterator[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """The items of ``items`` produced in a background thread, at most ``depth`` ahead.

    Errors of the producer are raised here; closing this generator stops and joins the thread.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=produce, name="archive-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _cut(block: bytes) -> int:
    """Index just after the last newline of ``block`` that a non-blank line follows (-1: none)."""
    body = len(block)
    while body and block[body - 1] in b"\r\n":
        body -= 1
    newline = block.rfind(b"\n", 0, body)
    return newline + 1 if newline >= 0 else -1


def line_chunks(read: Callable[[int], bytes], chunk_bytes: int | None = None) -> Iterator[bytes]:
    """Chunks of whole lines of about ``chunk_bytes`` from ``read`` (called for at most
    ``READ_BYTES`` at a time), each but the first starting on a non-blank line; the first has
    two lines when the file has them (the header and the first data line)."""
    size = chunk_bytes or CHUNK_BYTES
    pieces: list[bytes] = []
    held, first = 0, True
    while True:
        block = read(min(READ_BYTES, size))
        if block:
            pieces.append(block)
            held += len(block)
            if held < size:
                continue
        elif not pieces:
            return
        if not block:
            yield b"".join(pieces)
            return
        cut = -1 if first else _cut(pieces[-1])
        if cut > 0:  # cut inside the last block: one copy
            last = pieces.pop()
            chunk, rest = b"".join([*pieces, memoryview(last)[:cut]]), last[cut:]
        else:
            data = b"".join(pieces)
            cut = _cut(data)
            if cut <= 0 or (first and data.count(b"\n", 0, cut) < 2):
                pieces, held = [data], len(data)  # a line longer than a chunk: read on
                continue
            chunk, rest = data[:cut], data[cut:]
        yield chunk
        first = False
        pieces, held = ([rest] if rest else []), len(rest)


def _locate_ragged(data: bytes, line: int, width: int) -> tuple[int | None, str]:
    """The first line of ``data`` (whose first line is number ``line``) whose field count
    differs from ``width`` (only on errors)."""
    lines = data.decode("utf-8", "replace").split("\n")
    for offset, text_line in enumerate(lines):
        if not text_line.strip():
            if offset < len(lines) - 1:
                return line + offset, f"empty line, expected {width} fields"
            continue
        count = text_line.count(",") + 1
        if count != width:
            return line + offset, f"{count} fields, expected {width}: {text_line.strip()[:80]!r}"
    return None, "unreadable CSV"


def _bad_row(typed: pl.DataFrame, required: tuple[str, ...]) -> int | None:
    """The first row with a missing required field or a non-positive price or negative size."""
    bad = pl.any_horizontal([pl.col(c).is_null() for c in required])
    bad = bad | (pl.col("price") <= 0) | (pl.col("base_qty") < 0)
    rows = typed.select(bad.arg_true().first()).item()
    return None if rows is None else int(rows)


class _Parser:
    """Parses the chunks of one file with ``fmt``, numbering rows and lines as the file does."""

    def __init__(self, fmt: CsvFormat, name: str, width: int, skip: int) -> None:
        self.fmt, self.name, self.width, self.skip = fmt, name, width, skip
        self.rows = 0  # data rows parsed before the current chunk
        dtypes = fmt.columns()
        self.schema = {f"c{i}": dtypes.get(i, pl.String()) for i in range(width)}
        self.last = f"c{width - 1}"

    def parse(self, data: bytes) -> pl.DataFrame:
        """The trades of ``data`` (whole data lines of the file, the next ones), in source order."""
        typed = self._typed(data)
        if typed is None:
            typed = self._reference(data)
        self.rows += typed.height
        return typed.drop("_valid", strict=False)

    def _numbered(self, raw: pl.DataFrame) -> pl.DataFrame:
        """``raw`` with ``_row`` (from 0 at the file's first data row) if the format wants it."""
        if not self.fmt.row_numbers:
            return raw
        return raw.with_row_index("_row", offset=self.rows).with_columns(
            pl.col("_row").cast(pl.Int64)
        )

    def _typed(self, data: bytes) -> pl.DataFrame | None:
        """The chunk read with typed columns; None when anything is off (then read as text):
        a field that does not parse or is missing (a short line leaves the last one null)."""
        try:
            raw = self._numbered(pl.read_csv(data, has_header=False, schema=self.schema))
            typed = self.fmt.convert(raw)
        except Exception:  # whatever it is, the reading as text decides
            return None
        if raw[self.last].has_nulls() or _bad_row(typed, self.fmt.required) is not None:
            return None
        if "_valid" in typed.columns and not typed["_valid"].all():
            return None
        return typed

    def _reference(self, data: bytes) -> pl.DataFrame:
        """The chunk read with every field as text; raises :class:`MalformedCsvError`.

        Lines are numbered from the rows before: earlier chunks parsed, so had no blank line.
        """
        names = [f"c{i}" for i in range(self.width)]
        line = self.skip + self.rows + 1
        try:
            raw = pl.read_csv(data, has_header=False, infer_schema=False, new_columns=names)
        except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
            at, reason = _locate_ragged(data, line, self.width)
            raise MalformedCsvError(self.name, at, f"{reason} ({type(exc).__name__})") from exc
        typed = self.fmt.convert(self._numbered(raw))
        row = _bad_row(typed, self.fmt.required)
        if row is not None:
            values = ",".join(str(v) for v in raw.row(row) if v is not None)
            raise MalformedCsvError(self.name, line + row, f"bad field in {values[:80]!r}")
        if "_valid" in typed.columns and not typed["_valid"].all():
            row = int(typed["_valid"].not_().arg_true()[0])
            raise MalformedCsvError(self.name, line + row, self.fmt.invalid_reason)
        return typed


def parse_chunks(
    chunks: Iterator[bytes],
    fmt: CsvFormat,
    name: str,
    progress: Callable[[str], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """Trades of a CSV given as line chunks, one frame per chunk, in source order."""
    first = next(chunks, None)
    data = first if first is not None else b""
    end = data.find(b"\n")
    head = (data if end < 0 else data[:end]).decode("utf-8", "replace")
    skip = 1 if has_header(head.strip()) else 0
    start = 0
    if skip:
        start = end + 1 if end >= 0 else len(data)
    stop = data.find(b"\n", start)
    row = data[start : stop if stop >= 0 else len(data)].decode("utf-8", "replace").strip()
    if not row and not data[start:].strip():
        fmt.start(head if skip else None, "", name)
        return
    fmt.start(head if skip else None, row, name)  # an unknown header is named before widths
    width = row.count(",") + 1
    if width not in fmt.widths:
        raise MalformedCsvError(name, skip + 1, f"{width} fields, expected one of {fmt.widths}")
    parser = _Parser(fmt, name, width, skip)
    reported = 0
    yield parser.parse(data[start:] if skip else data)
    for chunk in chunks:
        yield parser.parse(chunk)
        if progress is not None and parser.rows - reported >= PROGRESS_ROWS:
            reported = parser.rows
            progress(f"{name}: {parser.rows:,} rows parsed")
    if progress is not None:
        progress(f"{name}: {parser.rows:,} rows parsed (end of file)")


class ArchiveCsv:
    """The CSV inside an archive file, opened for streaming; a context manager.

    ``kind`` is ``zip`` (one member), ``gzip``, or ``auto`` (a zip or a gzip when the first bytes
    say so, else plain text). Read and decompression errors become :class:`CorruptArchiveError`.
    """

    def __init__(self, path: Path, name: str, kind: str = "zip") -> None:
        self.path, self.name, self.kind = path, name, kind
        self._handles: list[IO[bytes] | zipfile.ZipFile] = []
        self._stream: IO[bytes] | None = None
        self._what = "zip" if kind == "zip" else "gzip"

    def __enter__(self) -> Self:
        with self.path.open("rb") as probe:
            magic = probe.read(4)
        try:
            self._stream = self._open(magic)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            self.close()
            raise CorruptArchiveError(f"corrupt {self._what} {self.name}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, magic: bytes) -> IO[bytes]:
        if self.kind == "gzip" and magic[:2] != b"\x1f\x8b":
            raise CorruptArchiveError(f"corrupt gzip {self.name}: not a gzip file")
        if self.kind == "zip" or magic == b"PK\x03\x04":
            self._what = "zip"
            archive = zipfile.ZipFile(self.path)
            self._handles.append(archive)
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise CorruptArchiveError(f"{self.name}: expected one CSV member, found {names}")
            return self._keep(archive.open(members[0]))
        plain = self._keep(self.path.open("rb"))
        if magic[:2] != b"\x1f\x8b":
            self._what = "file"
            return plain
        return self._keep(gzip.GzipFile(fileobj=plain, mode="rb"))

    def _keep(self, handle: IO[bytes]) -> IO[bytes]:
        self._handles.append(handle)
        return handle

    def read(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes (b"" at the end)."""
        assert self._stream is not None
        try:
            return self._stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise CorruptArchiveError(f"corrupt {self._what} {self.name}: {exc}") from exc

    def verify(self) -> None:
        """Read to the end (the zip's CRC is checked there); raises if the archive is corrupt."""
        while self.read(READ_BYTES):
            pass

    def trades(
        self, fmt: CsvFormat, progress: Callable[[str], None] | None = None
    ) -> Iterator[pl.DataFrame]:
        """The trades of the CSV, chunk by chunk in source order.

        A malformed line in an archive that is also corrupt raises :class:`CorruptArchiveError`
        (as reading the whole archive first would).
        """
        chunks = read_ahead(line_chunks(self.read))
        try:
            yield from parse_chunks(chunks, fmt, self.name, progress)
        except MalformedCsvError as exc:
            chunks.close()
            try:
                self.verify()
            except CorruptArchiveError as corrupt:
                raise corrupt from exc
            raise
        finally:
            chunks.close()

    def close(self) -> None:
        """Close every handle opened."""
        while self._handles:
            self._handles.pop().close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trades(
    path: Path,
    fmt: CsvFormat,
    name: str | None = None,
    kind: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """The trades of one archive file (see :class:`ArchiveCsv`), chunk by chunk."""
    with ArchiveCsv(path, name or path.name, kind) as archive:
        yield from archive.trades(fmt, progress)
