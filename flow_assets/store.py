"""Object storage for the pipeline's files: a local folder or an S3 bucket, no Dagster.

An *object* is one immutable-looking file under a *key* (a ``/``-separated relative path).
Keys are built only by :func:`flow_key` and :func:`trades_key`, which validate every part, and
every store method checks the key again, so no input can address anything outside the store.

Layout:

* ``flow/{timestamp}/{exchange}/{interval}/{symbol}/{YYYY-MM}.parquet``: one calendar month
  (UTC) of flow bars for one instrument, timestamp source and interval.
* ``trades/{exchange}/{symbol}/{YYYY-MM}.parquet``: one month of normalized trades.
* ``summary/{name}/{YYYY-MM}.parquet``: one month of a downstream summary.

Writes are all-or-nothing: a reader sees the old object or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow.parquet as pq

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.metrics.schema import TIMESTAMP_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterator

STORAGE_URL_ENV = "FLOW_ASSETS_STORAGE_URL"
DEFAULT_LOCAL_ROOT = Path(__file__).resolve().parent.parent / "data" / "store"

TIMESTAMPS: tuple[str, ...] = tuple(TIMESTAMP_COLUMNS)  # ("exchange", "true")
MAX_NAME_LENGTH = 64
# An exchange or symbol name: starts with a letter or digit, then letters, digits, - : . _
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:._]{0," + str(MAX_NAME_LENGTH - 1) + "}")
# One component of any key (also file names such as 2026-01.parquet).
_COMPONENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:._]{0,127}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_ARROW_SCHEMA_KEY = "ARROW:schema"


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


def flow_key(timestamp: str, exchange: str, interval: str, symbol: str, month: date) -> str:
    """Key of one month of flow bars for one instrument, timestamp source and interval.

    ``flow/{timestamp}/{exchange}/{interval}/{symbol}/{YYYY-MM}.parquet``
    """
    if timestamp not in TIMESTAMPS:
        raise ValueError(f"unknown timestamp {timestamp!r}; supported: {', '.join(TIMESTAMPS)}")
    if interval not in ALL_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; supported: {', '.join(ALL_INTERVALS)}")
    ex = _check_name("exchange", exchange)
    sym = _check_name("symbol", symbol)
    return f"flow/{timestamp}/{ex}/{interval}/{sym}/{_check_month(month)}.parquet"


def trades_key(exchange: str, symbol: str, month: date) -> str:
    """Key of one month of normalized trades: ``trades/{exchange}/{symbol}/{YYYY-MM}.parquet``."""
    ex = _check_name("exchange", exchange)
    sym = _check_name("symbol", symbol)
    return f"trades/{ex}/{sym}/{_check_month(month)}.parquet"


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


def parquet_bytes(frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise ``frame`` to Parquet in memory (zstd, column statistics, footer metadata)."""
    table = frame.to_arrow()
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"Parquet metadata must be str -> str, got {k!r}: {v!r}")
            if k == _ARROW_SCHEMA_KEY:
                raise ValueError(f"metadata key {k!r} is reserved")
        merged: dict[Any, Any] = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


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

    def write_parquet(
        self, key: str, frame: pl.DataFrame, metadata: dict[str, str] | None = None
    ) -> WrittenObject:
        """Write ``frame`` as one Parquet object; serialised fully before anything is stored."""
        check_key(key)
        data = parquet_bytes(frame, metadata)
        self.put_bytes(key, data)
        return WrittenObject(
            key=key, uri=self.uri(key), size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )

    def read_parquet(self, key: str) -> pl.DataFrame:
        """The Parquet object under ``key`` as a polars frame."""
        return pl.read_parquet(io.BytesIO(self.get_bytes(key)))

    def scan_parquet(self, key: str) -> pl.LazyFrame:
        """A lazy scan of the Parquet object under ``key`` (read piece by piece, not whole)."""
        if not self.exists(key):
            raise MissingObjectError(key, self.url)
        return pl.scan_parquet(self.uri(key), storage_options=self._polars_options())

    def _polars_options(self) -> dict[str, str] | None:
        """Options for polars' own object-store reader (None for local files)."""
        return None

    def read_parquet_metadata(self, key: str) -> dict[str, str]:
        """The key/value metadata stored in the footer of the Parquet object under ``key``.

        Only the footer is read (ranged reads on S3), not the whole object.
        """
        if not self.exists(key):
            raise MissingObjectError(key, self.url)
        found = pl.read_parquet_metadata(self.uri(key), storage_options=self._polars_options())
        return {k: v for k, v in found.items() if k != _ARROW_SCHEMA_KEY}

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

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would hide it from other readers
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS or any S3-compatible server) under an optional prefix.

    Credentials, region and endpoint come from the standard AWS_* environment variables
    (``AWS_ENDPOINT_URL`` for a non-AWS server). Each write is a single ``PutObject``, which S3
    applies atomically.
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

            client = boto3.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
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

    def _polars_options(self) -> dict[str, str]:
        """The AWS_* environment as polars/object_store options (endpoint, region, plain http)."""
        options = {
            "aws_region": os.environ.get("AWS_DEFAULT_REGION")
            or os.environ.get("AWS_REGION")
            or "us-east-1"
        }
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                options["aws_allow_http"] = "true"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(name):
                options[name.lower()] = os.environ[name]
        return options


def open_store(url: str | None = None) -> ObjectStore:
    """The store at ``url``: a folder path, a ``file://`` URL or ``s3://bucket/prefix``.

    ``None`` means the ``FLOW_ASSETS_STORAGE_URL`` environment variable, else ``<repo>/data/store``.
    """
    if url is None:
        url = os.environ.get(STORAGE_URL_ENV) or str(DEFAULT_LOCAL_ROOT)
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"storage URL must be a non-empty string, got {url!r}")
    url = url.strip()
    if url.startswith("s3://"):
        parsed = urlparse(url)
        return S3Store(parsed.netloc, parsed.path)
    if url.startswith("file://"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL with a remote host is not supported: {url!r}")
        return LocalStore(unquote(parsed.path))
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", url):
        raise ValueError(f"unsupported storage URL {url!r}; use a folder path, file:// or s3://")
    return LocalStore(url)
