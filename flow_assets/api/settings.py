"""The API server's configuration, read from the environment in one place at startup.

Every knob of the server is a field of :class:`ApiSettings`; :meth:`ApiSettings.from_env` is the
only code that reads ``os.environ`` for it. Variables:

* ``FLOW_ASSETS_STORAGE_URL``: the store to serve (folder, ``file://`` or ``s3://bucket/prefix``;
  default ``<repo>/data/store``);
* ``FLOW_ASSETS_API_SECRET``: the HMAC secret of local file links (at least 32 characters); unset
  means a random secret for this process only, with a warning (links then die with the process;
  an S3 store needs no secret: its URLs are presigned with the AWS credentials);
* ``FLOW_ASSETS_KEYS``: where the API keys are kept (a ``.json`` file, or a folder / ``s3://``
  prefix holding ``api-keys.json``; default ``<repo>/data/api-keys.json``);
* ``FLOW_ASSETS_API_RATE`` / ``FLOW_ASSETS_API_BURST``: per-key token bucket, requests per second
  and bucket size (default 10/s, burst 60);
* ``FLOW_ASSETS_API_MAX_DAYS``: the most days ``start_date`` .. ``end_date`` may span, both
  counted (366);
* ``FLOW_ASSETS_API_LINK_TTL``: seconds a download URL stays valid (300);
* ``FLOW_ASSETS_API_PREVIEW``: the preview whitelist, comma-separated
  ``EXCHANGE/SYMBOL/YYYY-MM[..YYYY-MM]`` (default: Binance BTC-USDT, January 2024);
* ``FLOW_ASSETS_API_PUBLIC_URL``: the URL clients reach the server at, for local file links
  (default: the URL of each request, right unless a proxy rewrites it);
* ``FLOW_ASSETS_API_CACHE_SECONDS``: how long key files, symbol lists and the catalog are reused
  before being read again (2 s), so a revoked key stops working within that time.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flow_assets.store import DEFAULT_LOCAL_ROOT, STORAGE_URL_ENV
from flow_assets.symbology import SymbolError, parse_symbol
from flow_assets.venues import NAMES

log = logging.getLogger("flow_assets.api")

SECRET_ENV = "FLOW_ASSETS_API_SECRET"
KEYS_ENV = "FLOW_ASSETS_KEYS"
DEFAULT_KEYS = DEFAULT_LOCAL_ROOT.parent / "api-keys.json"
MIN_SECRET_LENGTH = 32
DEFAULT_PREVIEW = "binance-futures/perpetual-BTC-USDT:USDT/2024-01"
_MONTH_RE = re.compile(r"\d{4}-\d{2}")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class PreviewEntry:
    """Months of one instrument that the demo key may read: ``first`` .. ``last`` (1st days)."""

    exchange: str
    symbol: str
    first: date
    last: date

    def allows(self, exchange: str, symbol: str, start: date, end: date) -> bool:
        """Whether the whole range ``start`` .. ``end`` of this instrument is whitelisted."""
        last_day = date(self.last.year + self.last.month // 12, self.last.month % 12 + 1, 1)
        return (
            (exchange, symbol) == (self.exchange, self.symbol)
            and self.first <= start
            and end < last_day
        )


def _month(text: str, variable: str) -> date:
    if not _MONTH_RE.fullmatch(text):
        raise SettingsError(f"{variable}: {text!r} is not a month YYYY-MM")
    try:
        return date.fromisoformat(f"{text}-01")
    except ValueError:
        raise SettingsError(f"{variable}: {text!r} is not a month YYYY-MM") from None


def parse_preview(text: str, variable: str = "FLOW_ASSETS_API_PREVIEW") -> tuple[PreviewEntry, ...]:
    """Parse ``EXCHANGE/SYMBOL/YYYY-MM[..YYYY-MM]`` entries separated by commas."""
    entries = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        parts = raw.split("/")
        if len(parts) != 3:
            raise SettingsError(f"{variable}: {raw!r} is not EXCHANGE/SYMBOL/YYYY-MM[..YYYY-MM]")
        exchange, symbol, months = parts
        if exchange not in NAMES:
            raise SettingsError(f"{variable}: unknown exchange {exchange!r}")
        try:
            parse_symbol(symbol)
        except SymbolError as error:
            raise SettingsError(f"{variable}: {error}") from None
        first_text, _, last_text = months.partition("..")
        first = _month(first_text, variable)
        last = _month(last_text, variable) if last_text else first
        if last < first:
            raise SettingsError(f"{variable}: {months!r} ends before it starts")
        entries.append(PreviewEntry(exchange, symbol, first, last))
    return tuple(entries)


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}: {text!r} is not a number") from None
    if not value >= minimum:  # also refuses NaN
        raise SettingsError(f"{name}: {text!r} must be at least {minimum}")
    return value


def _secret(env: Mapping[str, str], signs_links: bool) -> tuple[bytes, bool]:
    """The signing secret and whether it was generated for this process (with a warning when
    links are signed with it, i.e. on a local store)."""
    text = env.get(SECRET_ENV, "")
    if not text:
        if not signs_links:
            return secrets.token_bytes(32), True
        log.warning(
            "%s is not set: using a random secret for this process only; "
            "download links stop working when the server restarts",
            SECRET_ENV,
        )
        return secrets.token_bytes(32), True
    if len(text) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return text.encode(), False


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API server needs; build it with :meth:`from_env` or directly in tests."""

    storage_url: str
    secret: bytes
    keys_location: str
    rate_per_second: float = 10.0
    burst: int = 60
    max_range_days: int = 366
    link_ttl_seconds: int = 300
    preview: tuple[PreviewEntry, ...] = ()
    public_url: str | None = None
    cache_seconds: float = 2.0
    secret_is_ephemeral: bool = False

    def __repr__(self) -> str:  # never print the secret
        return (
            f"ApiSettings(storage_url={self.storage_url!r}, keys_location={self.keys_location!r}, "
            f"rate={self.rate_per_second}/s burst={self.burst}, max_days={self.max_range_days}, "
            f"link_ttl={self.link_ttl_seconds}s, preview={len(self.preview)} entries)"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        storage_url = env.get(STORAGE_URL_ENV, "").strip() or str(DEFAULT_LOCAL_ROOT)
        secret, ephemeral = _secret(env, signs_links=not storage_url.startswith("s3://"))
        public_url = env.get("FLOW_ASSETS_API_PUBLIC_URL", "").strip().rstrip("/") or None
        return cls(
            storage_url=storage_url,
            secret=secret,
            keys_location=keys_location(env),
            rate_per_second=_number(env, "FLOW_ASSETS_API_RATE", 10.0, 0.001),
            burst=int(_number(env, "FLOW_ASSETS_API_BURST", 60, 1)),
            max_range_days=int(_number(env, "FLOW_ASSETS_API_MAX_DAYS", 366, 1)),
            link_ttl_seconds=int(_number(env, "FLOW_ASSETS_API_LINK_TTL", 300, 1)),
            preview=parse_preview(env.get("FLOW_ASSETS_API_PREVIEW", DEFAULT_PREVIEW)),
            public_url=public_url,
            cache_seconds=_number(env, "FLOW_ASSETS_API_CACHE_SECONDS", 2.0, 0.0),
            secret_is_ephemeral=ephemeral,
        )


def keys_location(env: Mapping[str, str] | None = None) -> str:
    """Where the key file is: ``FLOW_ASSETS_KEYS`` or ``<repo>/data/api-keys.json``."""
    env = os.environ if env is None else env
    return env.get(KEYS_ENV, "").strip() or str(Path(DEFAULT_KEYS))
