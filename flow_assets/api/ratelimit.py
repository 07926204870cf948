"""Per-caller token buckets: ``rate`` requests per second on average, up to ``burst`` at once.

Each caller (a key name, or ``ip:<address>`` for requests without a valid key) has a bucket of
``burst`` tokens refilled at ``rate`` per second; a request takes one token or is refused with
the seconds until the next token (the ``Retry-After`` of the 429). Buckets live in this process:
with several server processes, each enforces the limit on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 10_000  # beyond this, full (idle) buckets are forgotten


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Thread-safe token buckets keyed by caller; ``clock`` gives monotonic seconds."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, caller: str, rate: float | None = None, burst: int | None = None) -> int:
        """Take a token for ``caller``: 0 if allowed, else whole seconds to wait (>= 1).

        ``rate`` and ``burst`` override the defaults for this caller (a key's own limit).
        """
        rate = rate or self.rate
        burst = burst or self.burst
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._forget_idle(now)
                bucket = self._buckets[caller] = _Bucket(float(burst), now)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely (forgetting them changes nothing)."""
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[caller]
