"""Object storage for the pipeline's files: a local folder or an S3 bucket, no Dagster.

An *object* is one immutable-looking file under a *key* (a ``/``-separated relative path).
Keys are built only by :func:`unit_prefix` and :func:`summary_key`, which validate every part, and
every store method checks the key again, so no input can address anything outside the store.

Layout (the instrument-months are published as units, see :mod:`flow_assets.publish`):

* ``{kind}/{exchange}/{symbol}/{YYYY-MM}/manifest.json``: the published version of one
  instrument-month of ``trades`` (normalized trades) or ``flow`` (bars of every interval and
  timestamp source, and the rolling state the next month starts from);
* ``{kind}/{exchange}/{symbol}/{YYYY-MM}/{version}/...parquet``: the immutable files of a version;
* ``summary/{name}/{YYYY-MM}.parquet``: one month of a downstream summary.

Writes of single objects are all-or-nothing: a reader sees the old object or the new one, never
a partial one (a temp file and a rename locally; one ``PutObject`` or a completed multipart upload
on S3, which S3 makes visible whole).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from flow_assets.metrics.schema import TIMESTAMP_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

STORAGE_URL_ENV = "FLOW_ASSETS_STORAGE_URL"
DEFAULT_LOCAL_ROOT = Path(__file__).resolve().parent.parent / "data" / "store"

TIMESTAMPS: tuple[str, ...] = tuple(TIMESTAMP_COLUMNS)  # ("exchange", "true")
UNIT_KINDS = ("trades", "flow")
MAX_NAME_LENGTH = 64
# An exchange or symbol name: starts with a letter or digit, then letters, digits, - : . _
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:._]{0," + str(MAX_NAME_LENGTH - 1) + "}")
# One component of any key (also file names such as 2026-01.parquet).
_COMPONENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:._]{0,127}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_ARROW_SCHEMA_KEY = "ARROW:schema"
MULTIPART_BYTES = 64 << 20  # S3 uploads above this go in 64 MiB parts (one PUT caps at 5 GB)


class StoreError(Exception):
    """A storage operation failed."""


class MissingObjectError(StoreError, LookupError):
    """The object asked for does not exist (not materialized yet)."""

    def __init__(self, key: str, url: str = "", message: str | None = None) -> None:
        where = f" in {url}" if url else ""
        super().__init__(message or f"no object at key {key!r}{where}")
        self.key = key


@dataclass(frozen=True)
class WrittenObject:
    """What was stored: the key, its full URI, its size in bytes and the SHA-256 of the bytes."""

    key: str
    uri: str
    size: int
    sha256: str


# --------------------------------------------------------------------------- keys


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a string, got {type(value).__name__}")
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid {kind} {value!r}: must be 1-{MAX_NAME_LENGTH} characters of letters, "
            "digits, '-', ':', '.', '_', start with a letter or digit, and contain no '..'"
        )
    return value


def _check_month(month: object) -> str:
    if not isinstance(month, date):
        raise ValueError(f"month must be a datetime.date, got {month!r}")
    return f"{month.year:04d}-{month.month:02d}"


def unit_prefix(kind: str, exchange: str, symbol: str, month: date) -> str:
    """Folder of one published instrument-month: ``{kind}/{exchange}/{symbol}/{YYYY-MM}``."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown kind {kind!r}; supported: {', '.join(UNIT_KINDS)}")
    ex = _check_name("exchange", exchange)
    sym = _check_name("symbol", symbol)
    return f"{kind}/{ex}/{sym}/{_check_month(month)}"


EXCHANGE_CHECKS = "checks/exchange"


def exchange_check_key(exchange: str, symbol: str, month: date) -> str:
    """Key of one instrument-month's verdict against the exchange's own figures (written
    whether it passed or not): ``checks/exchange/{exchange}/{symbol}/{YYYY-MM}.json``."""
    ex, sym = _check_name("exchange", exchange), _check_name("symbol", symbol)
    return f"{EXCHANGE_CHECKS}/{ex}/{sym}/{_check_month(month)}.json"


def summary_key(name: str, month: date) -> str:
    """Key of one month of a downstream summary: ``summary/{name}/{YYYY-MM}.parquet``."""
    return f"summary/{_check_name('summary', name)}/{_check_month(month)}.parquet"


def check_key(key: object) -> str:
    """Return ``key`` if it is a safe relative key (every ``/`` part a plain name), else raise."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid key {key!r}: must be a non-empty string")
    parts = key.split("/")
    for part in parts:
        if not _COMPONENT_RE.fullmatch(part) or ".." in part:
            raise ValueError(
                f"invalid key {key!r}: part {part!r} is not a plain name "
                "(letters, digits, '-', ':', '.', '_'; no '..', no empty parts, no leading '/')"
            )
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, optionally ending with ``/``."""
    if prefix == "":
        return prefix
    check_key(prefix.removesuffix("/"))
    return prefix


# --------------------------------------------------------------------------- parquet


def _with_metadata(table: pa.Table, metadata: dict[str, str] | None) -> pa.Table:
    if not metadata:
        return table
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"Parquet metadata must be str -> str, got {k!r}: {v!r}")
        if k == _ARROW_SCHEMA_KEY:
            raise ValueError(f"metadata key {k!r} is reserved")
    merged: dict[Any, Any] = dict(table.schema.metadata or {})
    merged.update({k.encode(): v.encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def write_parquet_file(
    frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``frame`` to ``path`` as Parquet (zstd, column statistics, footer metadata)."""
    table = _with_metadata(frame.to_arrow(), metadata)
    pq.write_table(table, path, compression="zstd", write_statistics=True)


class ParquetParts:
    """A Parquet file written a row group at a time, as :func:`write_parquet_file` writes a
    frame (zstd, column statistics); a context manager that finishes the file."""

    def __init__(self, path: Path, schema: dict[str, pl.DataType]) -> None:
        self.path = path
        self.schema = pl.DataFrame(schema=schema).to_arrow().schema
        self.writer = pq.ParquetWriter(
            str(path), self.schema, compression="zstd", write_statistics=True
        )

    def write(self, frame: pl.DataFrame) -> None:
        """Append ``frame`` (the file's columns, in order) as one row group."""
        if frame.height:
            self.writer.write_table(frame.to_arrow().cast(self.schema), row_group_size=frame.height)

    def close(self) -> None:
        """Finish the file."""
        self.writer.close()

    def __enter__(self) -> ParquetParts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_digest(path: Path) -> tuple[int, str]:
    """Size in bytes and SHA-256 (hex) of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- stores


class ObjectStore(ABC):
    """A flat namespace of objects addressed by validated keys."""

    url: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`MissingObjectError` if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with ``prefix``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (no error if it is already gone)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Full location of ``key``: a local path or an ``s3://`` URI."""

    def delete_unfinished(self, prefix: str, keep: Callable[[str], bool]) -> list[str]:
        """Remove what writes killed before they finished left under ``prefix`` (keys for
        which ``keep`` is false); the keys removed. None here: an S3 object exists only once
        its upload completed."""
        return []

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key`` atomically (streamed, never read whole)."""

    @abstractmethod
    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file holding the object under ``key``, for the duration of the block."""

    def presigned_url(self, key: str, expires_in: int) -> str:
        """A plain-GET URL of ``key`` valid for ``expires_in`` seconds (S3 only)."""
        raise NotImplementedError(f"{type(self).__name__} cannot presign URLs")

    def write_parquet(
        self, key: str, frame: pl.DataFrame, metadata: dict[str, str] | None = None
    ) -> WrittenObject:
        """Write ``frame`` as one Parquet object (through a local temp file)."""
        check_key(key)
        with tempfile.TemporaryDirectory(prefix="flow-assets-") as tmp:
            path = Path(tmp) / "object.parquet"
            write_parquet_file(frame, path, metadata)
            return self.write_file(key, path)

    def write_file(self, key: str, path: Path) -> WrittenObject:
        """Store the file at ``path`` under ``key`` and describe what was stored."""
        size, sha256 = file_digest(path)
        self.put_file(key, path)
        return WrittenObject(key=key, uri=self.uri(key), size=size, sha256=sha256)

    def read_parquet(self, key: str) -> pl.DataFrame:
        """The Parquet object under ``key`` as a polars frame."""
        return pl.read_parquet(io.BytesIO(self.get_bytes(key)))

    def put_json(self, key: str, value: Any) -> None:
        """Store ``value`` as a JSON document (one atomic write)."""
        self.put_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())

    def get_json(self, key: str) -> Any:
        """The JSON document under ``key``; :class:`MissingObjectError` if there is none."""
        return json.loads(self.get_bytes(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStore(ObjectStore):
    """Objects as files under a root folder; writes go to a temp file then ``os.replace``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"key {key!r} resolves outside the store root {self.root}")
        return path

    def _replace_atomically(self, key: str, write: Callable[[BinaryIO], None]) -> None:
        """Write a sibling temp file with ``write``, fsync it, then rename it over ``key``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would hide it from other readers
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._replace_atomically(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path) -> None:
        def copy(fh: BinaryIO) -> None:
            with Path(path).open("rb") as source:
                shutil.copyfileobj(source, fh, 1 << 20)

        self._replace_atomically(key, copy)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise MissingObjectError(key, self.url)
        yield path  # already local: no copy

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MissingObjectError(key, self.url) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _walk(self, start: Path) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root)
            for name in filenames:
                if not name.startswith("."):  # temp files of writes in progress
                    yield (rel / name).as_posix()

    def list_keys(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        head = prefix.rpartition("/")[0]  # deepest folder the prefix names fully
        start = self.root / head if head else self.root
        if not start.is_dir():
            return []
        return sorted(k for k in self._walk(start) if k.startswith(prefix))

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        for folder in path.parents:  # prune the folders left empty, up to the root
            if folder == self.root:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break

    def delete_unfinished(self, prefix: str, keep: Callable[[str], bool]) -> list[str]:
        """The hidden temp files of killed writes (:meth:`_replace_atomically`) under
        ``prefix``, and the folders they leave empty."""
        head = prefix.rpartition("/")[0]
        start = self.root / head if head else self.root
        removed = []
        for dirpath, _, filenames in os.walk(start, topdown=False):
            folder = Path(dirpath)
            for name in filenames:
                key = (folder.relative_to(self.root) / name).as_posix()
                if name.startswith(".") and key.startswith(prefix) and not keep(key):
                    (folder / name).unlink(missing_ok=True)
                    removed.append(key)
            if folder != start:
                with contextlib.suppress(OSError):  # not empty
                    folder.rmdir()
        return removed

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS or any S3-compatible server) under an optional prefix.

    ``client`` is a boto3 S3 client (in Dagster, from ``dagster-aws``'s ``S3Resource``); without
    one, boto3's default chain applies (``AWS_*`` variables, profiles, ``AWS_ENDPOINT_URL``). Every
    read and write goes through that one client.
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        if client is None:
            import boto3  # noqa: PLC0415  (only S3 users pay for the import)
            from botocore.config import Config  # noqa: PLC0415

            # boto3's own credential chain: profiles, SSO, AWS_ENDPOINT_URL, region.
            client = boto3.client("s3", config=Config(retries={"max_attempts": 5}))
        self.client = client

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        """One PUT for small files, a multipart upload (visible only once complete) above."""
        from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

        config = TransferConfig(
            multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES
        )
        self.client.upload_file(str(path), self.bucket, self._full(key), Config=config)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="flow-assets-s3-") as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            try:
                self.client.download_file(self.bucket, self._full(key), str(path))
            except ClientError as exc:
                if self._is_missing(exc):
                    raise MissingObjectError(key, self.url) from None
                raise
            yield path

    def presigned_url(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=expires_in,
        )

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if self._is_missing(exc):
                raise MissingObjectError(key, self.url) from None
            raise
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if self._is_missing(exc):
                return False
            raise
        return True

    def list_keys(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            keys.extend(obj["Key"][len(base) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"


def open_store(url: str | None = None, *, s3_client: Any = None) -> ObjectStore:
    """The store at ``url``: a folder path, a ``file://`` URL or ``s3://bucket/prefix``.

    ``None`` means the ``FLOW_ASSETS_STORAGE_URL`` environment variable, else ``<repo>/data/store``.
    ``s3_client`` is the boto3 client an S3 store uses (default: boto3's own chain).
    """
    if url is None:
        url = os.environ.get(STORAGE_URL_ENV) or str(DEFAULT_LOCAL_ROOT)
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"storage URL must be a non-empty string, got {url!r}")
    url = url.strip()
    if url.startswith("s3://"):
        parsed = urlparse(url)
        return S3Store(parsed.netloc, parsed.path, client=s3_client)
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL with a remote host is not supported: {url!r}")
        return LocalStore(unquote(parsed.path))
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", url):
        raise ValueError(f"unsupported storage URL {url!r}; use a folder path, file:// or s3://")
    return LocalStore(url)
