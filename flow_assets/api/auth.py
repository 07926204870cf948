"""Who is calling: the ``X-API-KEY`` header checked against the key file, then the rate limit.

Missing or unknown keys get 401 (as the product does), revoked keys 403, and every caller, known
or not, takes a token from its bucket first (unknown callers share one bucket per address), so a
flood of bad keys is throttled like any other. The demo key ``DEMO-KEY`` is known to every
client; it reads the preview and the metadata, nothing else. Keys are never logged: the access
log names the key's name.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from flow_assets.api.errors import ApiError
from flow_assets.api.keys import TIERS, KeyRing, KeyStore, KeyStoreError
from flow_assets.api.ratelimit import RateLimiter

DEMO_KEY = "DEMO-KEY"
MAX_KEY_LENGTH = 256
api_key_header = APIKeyHeader(
    name="X-API-KEY", auto_error=False, description="Your API key (`DEMO-KEY` for the preview)"
)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: key name (for logs and limits), tier, and whether it is the demo."""

    name: str
    tier: str
    demo: bool = False

    def allows_interval(self, interval: str) -> bool:
        """Whether the caller's tier includes bars of ``interval``."""
        return interval in TIERS.get(self.tier, ())


class KeyCache:
    """The key file, read again once it is older than ``max_age`` seconds."""

    def __init__(self, store: KeyStore, max_age: float) -> None:
        self.store, self.max_age = store, max_age
        self._ring: KeyRing | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    def stale(self) -> bool:
        """Whether the next :meth:`ring` call reads the file."""
        return self._ring is None or time.monotonic() - self._loaded >= self.max_age

    def ring(self) -> KeyRing:
        """The current keys (blocking I/O when stale: call from a worker thread)."""
        with self._lock:
            if self.stale():
                try:
                    self._ring = self.store.load()
                except KeyStoreError as error:
                    raise ApiError(503, "Key store unreadable", "key_store_unavailable") from error
                self._loaded = time.monotonic()
            assert self._ring is not None
            return self._ring


def _throttle(request: Request, bucket: str, rate: float | None, burst: int | None) -> None:
    limiter: RateLimiter = request.app.state.api.limiter
    wait = limiter.acquire(bucket, rate, burst)
    if wait:
        raise ApiError(
            429,
            "Too Many Requests",
            "rate_limited",
            [f"rate limit exceeded; retry in {wait} s"],
            headers={"Retry-After": str(wait)},
        )


def _client_bucket(request: Request, prefix: str) -> str:
    host = request.client.host if request.client else "unknown"
    return f"{prefix}:{host}"


async def authenticate(request: Request, key: str | None = Security(api_key_header)) -> Caller:
    """The caller behind ``X-API-KEY``, rate limited; 401/403/429 otherwise."""
    cache: KeyCache = request.app.state.api.keys
    if key == DEMO_KEY:
        request.state.key_name = "demo"
        _throttle(request, _client_bucket(request, "demo"), None, None)
        return Caller("demo", "basic", demo=True)
    record = None
    if key and len(key) <= MAX_KEY_LENGTH:
        ring = cache.ring() if not cache.stale() else await run_in_threadpool(cache.ring)
        record = ring.authenticate(key)
    if record is None:
        request.state.key_name = "-"
        _throttle(request, _client_bucket(request, "anonymous"), None, None)
        reason = "missing X-API-KEY header" if not key else "unknown API key"
        raise ApiError(401, "Authorization Required", "unauthorized", [reason])
    request.state.key_name = record.name
    _throttle(request, f"key:{record.name}", record.rate, record.burst)
    if record.revoked:
        raise ApiError(403, "API key revoked", "key_revoked", [f"revoked at {record.revoked_at}"])
    return Caller(record.name, record.tier)


def require_full_key(caller: Caller) -> None:
    """Refuse the demo key outside the preview and metadata."""
    if caller.demo:
        raise ApiError(
            403,
            "The demo key reads only the preview",
            "preview_only",
            ["use /data/preview/{metric} (aperiodic: preview=True) or an API key of your own"],
        )
