"""Signed, expiring download links for a local store (what presigned URLs are on S3).

A link is ``{base}/api/v1/files/{token}`` with ``token = b64url(payload) "." b64url(mac)``:

* ``payload`` is ``"{expires}:{key}"``: the Unix second after which the link is dead and the store
  key of one published file (keys never contain a newline; the first ``:`` ends ``expires``);
* ``mac`` is HMAC-SHA256 under the server secret of a domain tag and the payload.

Without the secret a token cannot be made or altered (the MAC covers key and expiry, and is
compared in constant time); a valid token names exactly one store key, which is checked again
(:func:`flow_assets.store.check_key`, a ``flow/`` Parquet file) before anything is opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from flow_assets.store import check_key

_DOMAIN = b"flow-assets/file-link/v1\x00"
MAX_TOKEN_LENGTH = 600
_TOKEN_RE = re.compile(r"([A-Za-z0-9_-]{1,500})\.([A-Za-z0-9_-]{43})")
_PAYLOAD_RE = re.compile(r"(\d{1,12}):(.+)", re.DOTALL)


class LinkError(Exception):
    """A link that must not be served; ``reason`` is ``invalid`` or ``expired``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def servable_key(key: str) -> str:
    """``key`` if a link may name it: a valid store key of a Parquet file under ``flow/``."""
    check_key(key)
    if not (key.startswith("flow/") and key.endswith(".parquet")):
        raise ValueError(f"key {key!r} is not a flow Parquet file")
    return key


@dataclass(frozen=True)
class SignedLink:
    """What a valid token grants: the store key, until ``expires`` (Unix seconds)."""

    key: str
    expires: int


class Signer:
    """Makes and checks tokens under one secret; ``clock`` gives Unix seconds (for tests)."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, _DOMAIN + payload, hashlib.sha256).digest()

    def sign(self, key: str, ttl_seconds: int) -> str:
        """A token for ``key`` valid for at least ``ttl_seconds`` from now (under a second more)."""
        expires = math.ceil(self._clock() + ttl_seconds)
        payload = f"{expires}:{servable_key(key)}".encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def verify(self, token: str) -> SignedLink:
        """The link ``token`` grants; :class:`LinkError` if it is malformed, forged or expired."""
        match = _TOKEN_RE.fullmatch(token) if len(token) <= MAX_TOKEN_LENGTH else None
        if match is None:
            raise LinkError("invalid", "malformed link")
        try:
            payload, mac = _b64decode(match[1]), _b64decode(match[2])
        except (binascii.Error, ValueError):
            raise LinkError("invalid", "malformed link") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError("invalid", "bad signature")
        parsed = _PAYLOAD_RE.fullmatch(payload.decode("utf-8", "replace"))
        if parsed is None:
            raise LinkError("invalid", "malformed link")
        expires, key = int(parsed[1]), parsed[2]
        if self._clock() >= expires:
            raise LinkError("expired", "link expired")
        try:
            servable_key(key)
        except ValueError:
            raise LinkError("invalid", "link names no servable file") from None
        return SignedLink(key, expires)
