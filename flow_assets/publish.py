"""Publishing an instrument-month as one unit: staged versions committed by a manifest.

Layout of one unit (``kind`` is ``trades`` or ``flow``; see :func:`flow_assets.store.unit_prefix`)::

    {kind}/{exchange}/{symbol}/{YYYY-MM}/manifest.json            the commit point
    {kind}/{exchange}/{symbol}/{YYYY-MM}/{version}/{name}.parquet  the files of one version

A writer stages every file under a fresh version folder, then replaces the manifest in one atomic
write. Readers read the manifest first and only the files it names, so they see the previous
version or the new one, never a mix. Files of an attempt that never committed (a killed run) are
named by no manifest, so no reader sees them; the next commit removes them. The version a commit
replaces is kept (a reader that fetched the old manifest a moment ago can still read its files);
older versions are removed.

No I/O beyond the :class:`~flow_assets.store.ObjectStore`, and nothing of Dagster.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.store import (
    TIMESTAMPS,
    MissingObjectError,
    ObjectStore,
    unit_prefix,
    write_parquet_file,
)

MANIFEST = "manifest.json"
FORMAT = 1


class PublishConflictError(RuntimeError):
    """Another attempt at the same unit published in the meantime; this one must not."""


def flow_file(timestamp: str, interval: str) -> str:
    """Name of the bars of one timestamp source and interval inside a flow unit."""
    if timestamp not in TIMESTAMPS:
        raise ValueError(f"unknown timestamp {timestamp!r}; supported: {', '.join(TIMESTAMPS)}")
    if interval not in ALL_INTERVALS:
        raise ValueError(f"unknown interval {interval!r}; supported: {', '.join(ALL_INTERVALS)}")
    return f"{timestamp}/{interval}"


def manifest_key(kind: str, exchange: str, symbol: str, month: date) -> str:
    """Key of the manifest of one unit."""
    return f"{unit_prefix(kind, exchange, symbol, month)}/{MANIFEST}"


@dataclass(frozen=True)
class PublishedFile:
    """One file of a version: its key, rows, size in bytes and SHA-256 (hex)."""

    key: str
    rows: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What is published for one instrument-month: its version, files and metadata."""

    kind: str
    exchange: str
    symbol: str
    month: date
    version: str
    files: dict[str, PublishedFile]
    metadata: dict[str, Any] = field(default_factory=dict)
    published_at: str = ""
    previous_version: str | None = None

    def key_of(self, name: str) -> str:
        """Key of the file ``name``; :class:`MissingObjectError` if this version has none."""
        if name not in self.files:
            raise MissingObjectError(name, message=f"{self.kind} {self.month:%Y-%m} has no {name}")
        return self.files[name].key

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON document."""
        document = asdict(self)
        document["month"] = self.month.isoformat()
        document["format"] = FORMAT
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Manifest:
        """Read a manifest written by :meth:`to_json`."""
        if document.get("format") != FORMAT:
            raise ValueError(f"unsupported manifest format {document.get('format')!r}")
        return cls(
            kind=document["kind"],
            exchange=document["exchange"],
            symbol=document["symbol"],
            month=date.fromisoformat(document["month"]),
            version=document["version"],
            files={name: PublishedFile(**f) for name, f in document["files"].items()},
            metadata=document["metadata"],
            published_at=document["published_at"],
            previous_version=document["previous_version"],
        )


def read_manifest(
    store: ObjectStore, kind: str, exchange: str, symbol: str, month: date
) -> Manifest | None:
    """The published version of a unit, or None when nothing is published."""
    try:
        return Manifest.from_json(store.get_json(manifest_key(kind, exchange, symbol, month)))
    except MissingObjectError:
        return None


def list_manifests(store: ObjectStore, kind: str) -> list[Manifest]:
    """Every published unit of ``kind`` in the store (exchange, symbol, month order)."""
    keys = [k for k in store.list_keys(f"{kind}/") if k.endswith(f"/{MANIFEST}")]
    return [Manifest.from_json(store.get_json(k)) for k in keys]


def _new_version() -> str:
    """A version id unique to one attempt, sortable by time: ``v20260102T030405123456-1a2b3c4d``."""
    return f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def _parquet_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows


class Staging:
    """The files of one new version of a unit, invisible to readers until :meth:`commit`."""

    def __init__(self, store: ObjectStore, kind: str, exchange: str, symbol: str, month: date):
        self.store = store
        self.kind, self.exchange, self.symbol, self.month = kind, exchange, symbol, month
        self.prefix = unit_prefix(kind, exchange, symbol, month)
        self.version = _new_version()
        self.files: dict[str, PublishedFile] = {}

    def put_file(self, name: str, path: Path) -> PublishedFile:
        """Stage the local Parquet file ``path`` as ``name`` of this version."""
        written = self.store.write_file(f"{self.prefix}/{self.version}/{name}.parquet", path)
        staged = PublishedFile(written.key, _parquet_rows(path), written.size, written.sha256)
        self.files[name] = staged
        return staged

    def write_parquet(self, name: str, frame: pl.DataFrame, workdir: Path) -> PublishedFile:
        """Stage ``frame`` as ``name`` (written to a file in ``workdir`` first, then removed)."""
        path = workdir / f"{name.replace('/', '-')}.parquet"
        write_parquet_file(frame, path)
        try:
            return self.put_file(name, path)
        finally:
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove what was staged (nothing was published)."""
        for staged in self.files.values():
            self.store.delete(staged.key)
        self.files.clear()

    def commit(self, metadata: dict[str, Any]) -> Manifest:
        """Publish the staged files together, then remove versions no reader can still need.

        Refused (:class:`PublishConflictError`) when an attempt that started later has already
        published, or when a staged file is gone (a later attempt's commit removed it): two
        overlapping attempts never publish a manifest naming missing files or older data.
        """
        previous = read_manifest(self.store, self.kind, self.exchange, self.symbol, self.month)
        if previous is not None and previous.version > self.version:
            raise PublishConflictError(
                f"{self.prefix}: {previous.version}, staged after this attempt ({self.version}), "
                "is already published"
            )
        lost = [f.key for f in self.files.values() if not self.store.exists(f.key)]
        if lost:
            raise PublishConflictError(
                f"{self.prefix}: staged file(s) {lost} were removed by another attempt's commit"
            )
        manifest = Manifest(
            kind=self.kind,
            exchange=self.exchange,
            symbol=self.symbol,
            month=self.month,
            version=self.version,
            files=dict(self.files),
            metadata=metadata,
            published_at=datetime.now(UTC).isoformat(),
            previous_version=previous.version if previous else None,
        )
        self.store.put_json(f"{self.prefix}/{MANIFEST}", manifest.to_json())
        remove_unreferenced(self.store, self.prefix, {self.version, manifest.previous_version})
        return manifest


def remove_unreferenced(store: ObjectStore, prefix: str, keep: set[str | None]) -> list[str]:
    """Delete the files under ``prefix`` of every version not in ``keep``, and what writes
    killed in such a version left; the keys deleted."""

    def kept(key: str) -> bool:
        version, _, rest = key[len(prefix) + 1 :].partition("/")
        return version == MANIFEST or version in keep or not rest  # rest: inside a version

    removed = []
    for key in store.list_keys(f"{prefix}/"):
        if not kept(key):
            store.delete(key)
            removed.append(key)
    return removed + store.delete_unfinished(f"{prefix}/", kept)
