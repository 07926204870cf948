"""API keys: random, shown once, stored only as SHA-256 digests, compared in constant time.

The key file is one JSON document::

    {"format": 1, "keys": [{"name": "alice", "digest": "sha256:<64 hex>", "tier": "basic",
                            "created_at": "...", "revoked_at": null, "rate": null, "burst": null}]}

A key is ``fa_`` + 43 URL-safe characters (256 random bits), so a plain SHA-256 is enough: the
digest of a key that random cannot be reversed or guessed, and the file holds nothing that
authenticates by itself. Names are unique for good (a revoked name stays, so it keeps answering
"revoked" rather than "unknown"). The file lives at a local path (written atomically, mode 0600)
or on S3 beside the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.store import MissingObjectError, ObjectStore, open_store

KEY_PREFIX = "fa_"
FORMAT = 1
DEFAULT_FILE_NAME = "api-keys.json"
PRIME_INTERVALS: tuple[str, ...] = ("1s", "15s", "30s")
TIERS: dict[str, tuple[str, ...]] = {
    "basic": tuple(i for i in ALL_INTERVALS if i not in PRIME_INTERVALS),
    "prime": ALL_INTERVALS,
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyStoreError(ValueError):
    """A key operation was refused (bad name, duplicate, unknown name, unreadable file)."""


def digest_of(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>`` of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    """Return ``name`` if it is 1-64 letters, digits, ``.``, ``_``, ``-`` (first alphanumeric)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise KeyStoreError(
            f"invalid key name {name!r}: 1-64 letters, digits, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: its name, digest, tier, dates and optional own rate limit."""

    name: str
    digest: str
    tier: str = "basic"
    created_at: str = ""
    revoked_at: str | None = None
    rate: float | None = None  # requests per second; None = the server's default
    burst: int | None = None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked (it then gets 403 everywhere)."""
        return self.revoked_at is not None

    def allows_interval(self, interval: str) -> bool:
        """Whether this key's tier includes bars of ``interval``."""
        return interval in TIERS.get(self.tier, ())


@dataclass(frozen=True)
class KeyRing:
    """A snapshot of the key file, for authenticating requests."""

    records: tuple[KeyRecord, ...] = ()

    def authenticate(self, presented: str) -> KeyRecord | None:
        """The record whose digest matches ``presented`` (revoked or not), else None.

        Every record is compared, with :func:`hmac.compare_digest`, whatever matched earlier, so
        the time taken says nothing about which digests are close to the presented key's.
        """
        wanted = digest_of(presented)
        found = None
        for record in self.records:
            if hmac.compare_digest(record.digest, wanted):
                found = record
        return found

    def by_name(self, name: str) -> KeyRecord | None:
        """The record named ``name``, if any."""
        return next((r for r in self.records if r.name == name), None)


class _Blob(Protocol):
    def read(self) -> bytes | None: ...
    def write(self, data: bytes) -> None: ...


class _LocalBlob:
    """A local file replaced atomically, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:  # mkstemp's mode is 0600
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _StoreBlob:
    """One object of an :class:`ObjectStore` (the key file beside an S3 store)."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store, self.key = store, key

    def read(self) -> bytes | None:
        try:
            return self.store.get_bytes(self.key)
        except MissingObjectError:
            return None

    def write(self, data: bytes) -> None:
        self.store.put_bytes(self.key, data)


def _blob(location: str, s3_client: object = None) -> _Blob:
    """The key file at ``location``: a ``.json`` path, or a folder / prefix holding one."""
    if location.startswith("s3://"):
        folder, name = location.rstrip("/"), DEFAULT_FILE_NAME
        if folder.endswith(".json"):
            folder, _, name = folder.rpartition("/")
        return _StoreBlob(open_store(folder, s3_client=s3_client), name)
    path = Path(location.removeprefix("file://")).expanduser()
    if path.suffix != ".json" or path.is_dir():
        path = path / DEFAULT_FILE_NAME
    return _LocalBlob(path)


class KeyStore:
    """The key file at ``location`` (see :func:`flow_assets.api.settings.keys_location`)."""

    def __init__(self, location: str, s3_client: object = None) -> None:
        self.location = location
        self._blob = _blob(location, s3_client)

    def load(self) -> KeyRing:
        """Every key in the file (an empty ring when there is no file yet)."""
        data = self._blob.read()
        if data is None:
            return KeyRing()
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT:
                raise KeyStoreError(f"unsupported key file format {document.get('format')!r}")
            return KeyRing(tuple(KeyRecord(**item) for item in document["keys"]))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise KeyStoreError(f"unreadable key file {self.location}: {error}") from None

    def _save(self, ring: KeyRing) -> None:
        document = {"format": FORMAT, "keys": [asdict(r) for r in ring.records]}
        self._blob.write(json.dumps(document, indent=1).encode())

    def create(
        self, name: str, tier: str = "basic", rate: float | None = None, burst: int | None = None
    ) -> tuple[KeyRecord, str]:
        """Add a key; returns its record and the key itself (the only time it exists in clear)."""
        check_name(name)
        if tier not in TIERS:
            raise KeyStoreError(f"unknown tier {tier!r}; supported: {', '.join(TIERS)}")
        ring = self.load()
        if ring.by_name(name) is not None:
            raise KeyStoreError(f"a key named {name!r} exists already (names are never reused)")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(
            name=name,
            digest=digest_of(key),
            tier=tier,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            rate=rate,
            burst=burst,
        )
        self._save(KeyRing((*ring.records, record)))
        return record, key

    def revoke(self, name: str) -> KeyRecord:
        """Mark the key ``name`` revoked (idempotent); returns its record."""
        ring = self.load()
        record = ring.by_name(name)
        if record is None:
            raise KeyStoreError(f"no key named {name!r}")
        if record.revoked:
            return record
        revoked = replace(record, revoked_at=datetime.now(UTC).isoformat(timespec="seconds"))
        self._save(KeyRing(tuple(revoked if r is record else r for r in ring.records)))
        return revoked
