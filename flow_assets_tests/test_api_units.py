"""The API's parts without a server: settings, keys and the CLI, signed links, rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import stat
from datetime import date
from pathlib import Path

import pytest

from flow_assets import cli
from flow_assets.api.catalog import Published, TtlCache
from flow_assets.api.keys import KEY_PREFIX, KeyStore, KeyStoreError
from flow_assets.api.ratelimit import RateLimiter
from flow_assets.api.settings import ApiSettings, PreviewEntry, SettingsError, parse_preview
from flow_assets.api.signing import LinkError, Signer
from flow_assets.publish import Staging, flow_file
from flow_assets.store import open_store
from flow_assets_tests.s3_fixtures import month_bars

SECRET = b"s" * 32
KEY = "flow/binance-futures/perpetual-BTC-USDT:USDT/2024-01/v1/exchange/1h.parquet"


class Clock:
    """A settable clock for signers and limiters."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- settings


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    env = {
        "FLOW_ASSETS_STORAGE_URL": str(tmp_path / "store"),
        "FLOW_ASSETS_API_SECRET": "x" * 40,
        "FLOW_ASSETS_KEYS": str(tmp_path / "keys"),
    }
    settings = ApiSettings.from_env(env)
    assert (settings.rate_per_second, settings.burst) == (10.0, 60)
    assert (settings.link_ttl_seconds, settings.max_range_days) == (300, 366)
    assert settings.secret == b"x" * 40
    assert not settings.secret_is_ephemeral
    assert settings.preview == (
        PreviewEntry(
            "binance-futures", "perpetual-BTC-USDT:USDT", date(2024, 1, 1), date(2024, 1, 1)
        ),
    )
    assert "xxxx" not in repr(settings)  # the secret never reaches a log line
    env |= {
        "FLOW_ASSETS_API_RATE": "2.5",
        "FLOW_ASSETS_API_BURST": "7",
        "FLOW_ASSETS_API_PREVIEW": "",
    }
    changed = ApiSettings.from_env(env)
    assert (changed.rate_per_second, changed.burst, changed.preview) == (2.5, 7, ())


def test_missing_secret_is_random_per_process_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flow_assets.api"):
        first = ApiSettings.from_env({"FLOW_ASSETS_KEYS": str(tmp_path)})
        second = ApiSettings.from_env({"FLOW_ASSETS_KEYS": str(tmp_path)})
    assert first.secret_is_ephemeral
    assert len(first.secret) == 32
    assert first.secret != second.secret
    assert "FLOW_ASSETS_API_SECRET is not set" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flow_assets.api"):
        on_s3 = ApiSettings.from_env({"FLOW_ASSETS_STORAGE_URL": "s3://bucket/prefix"})
    assert on_s3.secret_is_ephemeral
    assert not caplog.text  # presigned URLs do not use it


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLOW_ASSETS_API_SECRET", "short", "at least 32 characters"),
        ("FLOW_ASSETS_API_RATE", "fast", "FLOW_ASSETS_API_RATE: 'fast' is not a number"),
        ("FLOW_ASSETS_API_RATE", "nan", "must be at least"),
        ("FLOW_ASSETS_API_BURST", "0", "must be at least 1"),
        ("FLOW_ASSETS_API_PREVIEW", "binance-futures/BTCUSDT/2024-01", "malformed Atlas symbol"),
        ("FLOW_ASSETS_API_PREVIEW", "bybit/perpetual-BTC-USDT:USDT/2024-01", "unknown exchange"),
        (
            "FLOW_ASSETS_API_PREVIEW",
            "binance-futures/perpetual-BTC-USDT:USDT/2024-13",
            "not a month",
        ),
        (
            "FLOW_ASSETS_API_PREVIEW",
            "okx-perps/perpetual-BTC-USD:BTC/2024-03..2024-01",
            "ends before",
        ),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    env = {"FLOW_ASSETS_API_SECRET": "y" * 32, name: value}
    with pytest.raises(SettingsError, match=message):
        ApiSettings.from_env(env)


def test_preview_entries_cover_whole_months() -> None:
    (entry,) = parse_preview("okx-perps/perpetual-BTC-USD:BTC/2024-01..2024-02")
    allows = entry.allows
    assert allows("okx-perps", "perpetual-BTC-USD:BTC", date(2024, 1, 1), date(2024, 2, 29))
    assert not allows("okx-perps", "perpetual-BTC-USD:BTC", date(2023, 12, 31), date(2024, 1, 2))
    assert not allows("okx-perps", "perpetual-BTC-USD:BTC", date(2024, 2, 1), date(2024, 3, 1))
    assert not allows(
        "binance-futures", "perpetual-BTC-USD:BTC", date(2024, 1, 1), date(2024, 1, 2)
    )


# --------------------------------------------------------------------------- keys


def test_keys_are_random_shown_once_and_stored_hashed(tmp_path: Path) -> None:
    store = KeyStore(str(tmp_path / "keys"))
    record, key = store.create("alice", "prime")
    _, other = store.create("bob")
    assert key.startswith(KEY_PREFIX)
    assert len(key) == len(KEY_PREFIX) + 43
    assert key != other
    path = tmp_path / "keys" / "api-keys.json"
    text = path.read_text()
    assert key not in text
    assert key[len(KEY_PREFIX) :] not in text
    assert f"sha256:{hashlib.sha256(key.encode()).hexdigest()}" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring = store.load()
    assert ring.authenticate(key) == record
    assert ring.authenticate(key + "x") is None
    assert ring.authenticate("") is None
    assert record.tier == "prime"
    assert record.allows_interval("1s")
    assert not ring.by_name("bob").allows_interval("1s")  # type: ignore[union-attr]


def test_revocation_and_name_rules(tmp_path: Path) -> None:
    store = KeyStore(str(tmp_path / "my-keys.json"))
    _, key = store.create("carol")
    revoked = store.revoke("carol")
    assert revoked.revoked
    assert store.revoke("carol") == revoked  # idempotent
    assert store.load().authenticate(key).revoked  # type: ignore[union-attr]
    assert (tmp_path / "my-keys.json").is_file()
    with pytest.raises(KeyStoreError, match="exists already"):
        store.create("carol")
    with pytest.raises(KeyStoreError, match="no key named 'dave'"):
        store.revoke("dave")
    for bad in ("", "../x", "a b", "x" * 65, "é"):
        with pytest.raises(KeyStoreError, match="invalid key name"):
            store.create(bad)
    with pytest.raises(KeyStoreError, match="unknown tier 'gold'"):
        store.create("erin", "gold")


def test_unreadable_key_file_is_an_error_not_an_empty_ring(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="unreadable key file"):
        KeyStore(str(path)).load()
    path.write_text(json.dumps({"format": 99, "keys": []}))
    with pytest.raises(KeyStoreError, match="unsupported key file format"):
        KeyStore(str(path)).load()


def test_key_file_beside_an_s3_store(s3_env: str) -> None:
    store = KeyStore(f"{s3_env}/api")
    _, key = store.create("frank")
    assert KeyStore(f"{s3_env}/api/api-keys.json").load().authenticate(key) is not None


def test_cli_keys_create_list_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOW_ASSETS_KEYS", str(tmp_path))
    assert cli.main(["keys", "create", "--name", "grace", "--tier", "prime"]) == 0
    out = capsys.readouterr().out
    key = out.splitlines()[-1]
    assert key.startswith(KEY_PREFIX)
    assert out.count(key) == 1
    assert KeyStore(str(tmp_path)).load().authenticate(key).name == "grace"  # type: ignore[union-attr]
    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "grace" in listing
    assert "prime" in listing
    assert "active" in listing
    assert key not in listing
    assert cli.main(["keys", "revoke", "grace"]) == 0
    assert cli.main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert cli.main(["keys", "create", "--name", "grace"]) == 2
    assert "exists already" in capsys.readouterr().err


# --------------------------------------------------------------------------- signing


def test_signed_links_round_trip_and_expire() -> None:
    clock = Clock()
    signer = Signer(SECRET, clock=clock)
    token = signer.sign(KEY, 300)
    link = signer.verify(token)
    assert link.key == KEY
    assert link.expires == clock.now + 300
    clock.now += 299.9
    assert signer.verify(token).key == KEY
    clock.now += 0.1
    with pytest.raises(LinkError, match="expired") as caught:
        signer.verify(token)
    assert caught.value.reason == "expired"


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1 :]


def test_tampered_or_foreign_tokens_are_refused() -> None:
    signer = Signer(SECRET)
    token = signer.sign(KEY, 300)
    payload, mac = token.split(".")
    other_payload = signer.sign(KEY.replace("2024-01", "2024-02"), 300).split(".")[0]
    forged = [
        _flip(token, 3),  # payload changed
        _flip(token, len(token) - 2),  # signature changed
        f"{other_payload}.{mac}",  # another file under this signature
        Signer(b"t" * 32).sign(KEY, 300),  # another secret
        payload,  # no signature
        f"{payload}.{mac}=",  # padding
        f"{payload}.{mac}.{mac}",
        "",
        "." * 50,
        "a" * 10_000,
    ]
    for token_ in forged:
        with pytest.raises(LinkError) as caught:
            signer.verify(token_)
        assert caught.value.reason == "invalid"


def _token_with_secret(payload: bytes) -> str:
    """A token for any payload, made with the server's secret (as if it leaked)."""
    mac = hmac.new(SECRET, b"flow-assets/file-link/v1\x00" + payload, hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(payload)}.{b64(mac)}"


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "flow/../../etc/passwd.parquet",
        "/etc/passwd",
        "flow/a/b\x00.parquet",
        "flow/x/manifest.json",
        "trades/binance-futures/perpetual-BTC-USDT:USDT/2024-01/v1/trades.parquet",
        "flow//x.parquet",
    ],
)
def test_even_a_validly_signed_link_reaches_only_flow_parquet_keys(key: str) -> None:
    signer = Signer(SECRET)
    with pytest.raises(ValueError, match="key"):
        signer.sign(key, 300)
    with pytest.raises(LinkError, match="no servable file"):
        signer.verify(_token_with_secret(f"9999999999:{key}".encode()))


# --------------------------------------------------------------------------- rate limit


def test_token_bucket_bursts_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=60, clock=clock)
    assert [limiter.acquire("alice") for _ in range(60)] == [0] * 60
    assert limiter.acquire("alice") == 1  # 0.1 s to the next token, rounded up
    assert limiter.acquire("bob") == 0  # buckets are per caller
    clock.now += 0.25
    assert [limiter.acquire("alice") for _ in range(3)] == [0, 0, 1]
    clock.now += 60
    assert sum(limiter.acquire("alice") == 0 for _ in range(100)) == 60  # never above burst


def test_a_key_may_carry_its_own_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=60, clock=clock)
    assert [limiter.acquire("slow", rate=0.5, burst=2) for _ in range(3)] == [0, 0, 2]


# --------------------------------------------------------------------------- published view


def test_ttl_cache_reuses_then_recomputes_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(0.0)
    monkeypatch.setattr("flow_assets.api.catalog.time.monotonic", clock)
    cache = TtlCache(max_age=2.0, max_entries=3)
    calls = []

    def compute(value: int) -> int:
        calls.append(value)
        return value

    assert cache.get("a", lambda: compute(1)) == 1
    assert cache.get("a", lambda: compute(2)) == 1  # reused
    clock.now = 2.0
    assert cache.get("a", lambda: compute(3)) == 3  # expired: computed again
    for key in "bcdefg":
        cache.get(key, lambda: compute(0))
    assert len(cache._values) <= 3


def test_a_republished_month_shows_after_the_cache_age_and_old_links_still_work(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path))
    name = flow_file("exchange", "1d")
    month = date(2024, 1, 1)

    def publish(seed: float) -> None:
        staging = Staging(store, "flow", "binance-futures", "perpetual-BTC-USDT:USDT", month)
        staging.write_parquet(name, month_bars(month, "1d", seed=seed), tmp_path)
        staging.commit({"complete": True, "covered_until": "2024-02-01T00:00:00+00:00"})

    def files(view: Published) -> list[str]:
        found = view.files(
            "binance-futures", "perpetual-BTC-USDT:USDT", "exchange", "1d", month, month
        )
        return [f.key for f in found]

    publish(0.0)
    cached, fresh = Published(store, max_age=60), Published(store, max_age=0)
    (first,) = files(cached)
    publish(1.0)
    (second,) = files(fresh)
    assert second != first
    assert files(cached) == [first]  # within the cache age: the version just replaced ...
    assert store.exists(first)  # ... which publish keeps for readers like this one


def test_the_demo_howto_is_runnable_text() -> None:
    text = cli.api_howto(
        "binance-futures", "perpetual-BTC-USDT:USDT", date(2024, 1, 1), date(2024, 1, 3)
    )
    assert "flow-assets keys create" in text
    assert "flow-assets serve" in text
    assert "APERIODIC_API_URL=http://127.0.0.1:8000/api/v1" in text
    (line,) = [line for line in text.splitlines() if '-c "' in line]
    snippet = line.split('-c "', 1)[1].rstrip('"')
    compile(snippet, "<howto>", "exec")
    assert "start_date=dt.date.fromisoformat('2024-01-01')" in snippet
    serve = next(line for line in text.splitlines() if "flow-assets serve &" in line)
    assert "SERVER=$!" in serve  # the closing line stops the server it started
    assert text.splitlines()[-1].strip().startswith("kill $SERVER")
