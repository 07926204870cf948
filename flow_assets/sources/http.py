"""HTTP for archives: one session per source with retries, streaming downloads, sha256 checks.

Retries: connection errors, 429 and 5xx are retried with exponential backoff
(``backoff * 2**n``, capped at ``backoff_max``); a ``Retry-After`` header is honoured but capped
at ``max_retry_after`` seconds. A body cut short (the server closes before ``Content-Length``
bytes) is retried too. A 404 is not retried: it is reported as :class:`NotFoundError` for the caller
to classify (not published yet, or missing).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flow_assets.sources.errors import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DownloadError,
    SourceError,
)

RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK = 1 << 20
PROGRESS_BYTES = 64 << 20

Progress = Callable[[str], None]


class NotFoundError(SourceError):
    """The server answered 404 (classified by the caller)."""

    def __init__(self, url: str) -> None:
        super().__init__(f"404 Not Found: {url}")
        self.url = url


class _TruncatedError(DownloadError):
    """Fewer body bytes than the Content-Length announced."""


class _CappedRetry(Retry):
    """urllib3 retry that honours Retry-After up to ``max_retry_after`` seconds."""

    max_retry_after: float = 30.0

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_retry_after)


class ArchiveSession(requests.Session):
    """A ``requests.Session`` with retries mounted and default (connect, read) timeouts."""

    def __init__(
        self,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 60.0,
        timeout: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        super().__init__()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        retry_class = type("CappedRetry", (_CappedRetry,), {"max_retry_after": max_retry_after})
        retry = retry_class(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = "flow-assets/0.1 (+archive fetcher)"

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(**options: float | int | tuple[float, float]) -> ArchiveSession:
    """A fresh session for one source (see :class:`ArchiveSession` for the options)."""
    return ArchiveSession(**options)  # type: ignore[arg-type]


def _attempts(session: requests.Session) -> int:
    return int(getattr(session, "retries", 3)) + 1


def _sleep(session: requests.Session, attempt: int) -> None:
    backoff = float(getattr(session, "backoff", 0.5))
    time.sleep(min(backoff * 2**attempt, float(getattr(session, "backoff_max", 30.0))))


def _check_status(response: requests.Response, url: str) -> None:
    if response.status_code == 404:
        raise NotFoundError(url)
    if response.status_code != 200:
        raise DownloadError(f"HTTP {response.status_code} for {url} (after retries)")


def get_text(session: requests.Session, url: str, *, fresh: bool = False) -> str:
    """A small text file (a CHECKSUM); raises :class:`NotFoundError` on 404."""
    headers = {"Cache-Control": "no-cache"} if fresh else {}
    try:
        response = session.get(url, headers=headers)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot fetch {url}: {exc}") from exc
    _check_status(response, url)
    return response.text


def head(session: requests.Session, url: str) -> requests.Response:
    """Headers of a file; raises :class:`NotFoundError` on 404."""
    try:
        response = session.head(url, allow_redirects=True)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot fetch {url}: {exc}") from exc
    _check_status(response, url)
    return response


@dataclass(frozen=True)
class Download:
    """A file downloaded completely to ``path``, with its sha256 (hex) and size in bytes."""

    url: str
    path: Path
    sha256: str
    size: int


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def download(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    fresh: bool = False,
    progress: Progress | None = None,
) -> Download:
    """Stream ``url`` to ``dest`` (via a ``.part`` file), hashing on the way.

    Retries bodies cut short; raises :class:`NotFoundError` on 404 and :class:`DownloadError`
    when the server keeps failing. ``dest`` only ever holds a complete body. ``progress`` hears
    the bytes received every ``PROGRESS_BYTES`` and the total at the end.
    """
    headers = {"Cache-Control": "no-cache"} if fresh else {}
    partial = dest.with_name(dest.name + ".part")
    attempts = _attempts(session)
    last_error: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            _sleep(session, attempt - 1)
        digest = hashlib.sha256()
        size = 0
        try:
            with session.get(url, stream=True, headers=headers) as response:
                _check_status(response, url)
                expected = response.headers.get("Content-Length")
                with partial.open("wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if (
                            progress
                            and size // PROGRESS_BYTES > (size - len(chunk)) // PROGRESS_BYTES
                        ):
                            progress(f"{dest.name}: {_mib(size)} downloaded")
            if expected is not None and int(expected) != size:
                raise _TruncatedError(f"truncated body: {size} of {expected} bytes from {url}")
        except (requests.RequestException, _TruncatedError) as exc:
            last_error = exc
            partial.unlink(missing_ok=True)
            continue
        os.replace(partial, dest)
        if progress:
            progress(f"{dest.name}: downloaded, {size:,} bytes ({_mib(size)})")
        return Download(url, dest, digest.hexdigest(), size)
    raise DownloadError(f"giving up on {url} after {attempts} attempts: {last_error}")


def parse_checksum(text: str, name: str, url: str) -> str:
    """The sha256 in a ``sha256sum``-format CHECKSUM file (``<hex>  <name>``) for ``name``."""
    parts = text.split()
    if len(parts) < 1 or len(parts[0]) != 64 or (len(parts) > 1 and parts[1].lstrip("*") != name):
        raise ChecksumMismatchError(f"unreadable CHECKSUM file {url}: {text[:200]!r}")
    try:
        int(parts[0], 16)
    except ValueError as exc:
        raise ChecksumMismatchError(f"unreadable CHECKSUM file {url}: {text[:200]!r}") from exc
    return parts[0].lower()


def download_verified(
    session: requests.Session,
    url: str,
    dest: Path,
    checksum_url: str,
    checksum_text: str | None = None,
    progress: Progress | None = None,
) -> Download:
    """Download ``url`` and check it against ``checksum_url``; one fresh retry on a mismatch.

    ``checksum_text`` is the CHECKSUM content when the caller already fetched it.
    """
    for fresh in (False, True):
        if checksum_text is None or fresh:
            checksum_text = get_text(session, checksum_url, fresh=fresh)
        expected = parse_checksum(checksum_text, dest.name, checksum_url)
        got = download(session, url, dest, fresh=fresh, progress=progress)
        if got.sha256 == expected:
            return got
        dest.unlink(missing_ok=True)
    raise ChecksumMismatchError(
        f"sha256 of {url} is {got.sha256}, CHECKSUM says {expected} (also after a fresh retry)"
    )


def unzip_single(zip_path: Path, dest_dir: Path) -> Path:
    """Extract the one member of an archive zip to ``dest_dir`` by streaming (CRC checked).

    Raises :class:`CorruptArchiveError` for a zip that cannot be read or has no single member.
    """
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = [m.filename for m in members]
                raise CorruptArchiveError(
                    f"{zip_path.name}: expected one CSV member, found {names}"
                )
            target = dest_dir / Path(members[0].filename).name
            with archive.open(members[0]) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CorruptArchiveError(f"corrupt zip {zip_path.name}: {exc}") from exc
    return target
