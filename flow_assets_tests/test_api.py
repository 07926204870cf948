"""The HTTP API on a real server (uvicorn on a free loopback port), talked to over HTTP.

The product's own client (``aperiodic``) and ours read through it on local storage and on S3
(moto's server); every error code, link expiry and tampering, path traversal in every
parameter, revocation, tiers, rate limits and the access log are checked from the outside.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import aperiodic
import boto3
import polars as pl
import pytest
import requests
from botocore.config import Config
from polars.testing import assert_frame_equal

from flow_assets import cli
from flow_assets.api import routes
from flow_assets.api.app import create_app
from flow_assets.api.keys import PRIME_INTERVALS, TIERS, KeyStore
from flow_assets.api.server import ServerThread
from flow_assets.api.settings import ApiSettings, parse_preview
from flow_assets.api.signing import Signer
from flow_assets.client import ApiError, get_metrics
from flow_assets.metrics import ALL_INTERVALS, flow_bars
from flow_assets.publish import Staging, flow_file
from flow_assets.sources.mirror import sample_trades
from flow_assets.store import TIMESTAMPS, ObjectStore, open_store
from flow_assets.venues import NAMES
from flow_assets_tests.s3_fixtures import month_bars

BINANCE, OKX = "binance-futures", "okx-perps"
BTC, ETH, OKX_BTC = "perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT", "perpetual-BTC-USD:BTC"
JAN, FEB, MAR = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
SECRET = b"test-secret-" + b"0" * 32


# --------------------------------------------------------------------------- fixtures


def publish(
    store: ObjectStore, exchange: str, symbol: str, month: date, files: dict[str, pl.DataFrame]
) -> None:
    """Publish one flow month holding ``files`` (``{timestamp}/{interval}`` -> bars)."""
    staging = Staging(store, "flow", exchange, symbol, month)
    with tempfile.TemporaryDirectory() as workdir:
        for name, frame in files.items():
            staging.write_parquet(name, frame, Path(workdir))
    staging.commit(
        {
            "complete": month < FEB,
            "covered_until": f"{month:%Y-%m}-20T00:00:00+00:00",
            "reconciled": True if month < FEB else None,  # February: no exchange figures yet
        }
    )


def btc_bars(month: date, interval: str) -> pl.DataFrame:
    """Bars computed by the engine from sample trades of ``month``."""
    start = datetime(month.year, month.month, 1)
    stop = datetime(month.year, month.month + 1, 1)
    return flow_bars(sample_trades(start, stop, 1500, seed=month.month), interval, start, stop)


def fill(store: ObjectStore) -> None:
    """BTC Jan+Feb (1h, 1d and a 30s file), ETH Jan (exchange and true), OKX Feb; BTC March
    staged but never committed."""
    for month in (JAN, FEB):
        files = {flow_file("exchange", i): btc_bars(month, i) for i in ("1h", "1d")}
        files[flow_file("exchange", "30s")] = month_bars(month, "1d")  # content is not the point
        publish(store, BINANCE, BTC, month, files)
    eth = {flow_file(ts, "1h"): month_bars(JAN, "1h") for ts in ("exchange", "true")}
    publish(store, BINANCE, ETH, JAN, eth)
    publish(store, OKX, OKX_BTC, FEB, {flow_file("exchange", "1d"): month_bars(FEB, "1d")})
    staged = Staging(store, "flow", BINANCE, BTC, MAR)
    staged.write_parquet(
        flow_file("exchange", "1h"), month_bars(MAR, "1h"), Path(tempfile.mkdtemp())
    )


@dataclass(frozen=True)
class Api:
    """A running server: its base URL (``.../api/v1``), settings, store and keys by name."""

    server: ServerThread
    settings: ApiSettings
    store: ObjectStore
    keys: dict[str, str]

    @property
    def base(self) -> str:
        return f"{self.server.url}/api/v1"

    def get(self, path: str, key: str | None = "alice", **params: Any) -> requests.Response:
        headers = {"X-API-KEY": self.keys.get(key, key)} if key else {}
        return requests.get(f"{self.base}{path}", params=params, headers=headers, timeout=10)


def make_keys(location: str) -> dict[str, str]:
    store = KeyStore(location)
    keys = {
        "alice": store.create("alice", "basic")[1],
        "pat": store.create("pat", "prime")[1],
        "bob": store.create("bob")[1],
        "slow": store.create("slow", rate=1.0, burst=3)[1],
        "DEMO-KEY": "DEMO-KEY",
    }
    store.revoke("bob")
    return keys


def settings_for(store_url: str, keys_location: str, **changes: Any) -> ApiSettings:
    base = ApiSettings(
        storage_url=store_url,
        secret=SECRET,
        keys_location=keys_location,
        rate_per_second=1000.0,
        burst=1000,
        cache_seconds=0.0,
        preview=parse_preview(f"{BINANCE}/{BTC}/2024-01"),
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    store = open_store(str(root / "store"))
    fill(store)
    keys = make_keys(str(root / "keys"))
    settings = settings_for(store.url, str(root / "keys"))
    with ServerThread(create_app(settings)) as server:
        yield Api(server, settings, store, keys)


def query(
    symbol: str = BTC, start: date = date(2024, 1, 30), end: date = date(2024, 2, 2), **kw: Any
) -> dict:
    params = {
        "timestamp": "exchange",
        "interval": "1h",
        "exchange": BINANCE,
        "symbol": symbol,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
    }
    return params | kw


def theirs(api_url: str, key: str | None, **kw: Any) -> pl.DataFrame:
    """``aperiodic.get_metrics`` against our server, unchanged (only its public base_url)."""
    params = query(**kw)
    params["start_date"] = date.fromisoformat(params["start_date"])
    params["end_date"] = date.fromisoformat(params["end_date"])
    return aperiodic.get_metrics(
        key, metric="flow", base_url=api_url, show_progress=False, **params
    )


def ours(store_url: str, **kw: Any) -> pl.DataFrame:
    params = query(**kw)
    return get_metrics(
        "flow",
        exchange=params["exchange"],
        symbol=params["symbol"],
        interval=params["interval"],
        timestamp=params["timestamp"],
        start_date=date.fromisoformat(params["start_date"]),
        end_date=date.fromisoformat(params["end_date"]),
        storage_url=store_url,
    )


# --------------------------------------------------------------------------- the clients


def test_aperiodic_get_metrics_reads_what_the_store_holds(api: Api) -> None:
    frame = theirs(api.base, api.keys["alice"])
    assert frame.height == 4 * 24
    assert frame["time"][0] == datetime(2024, 1, 30)
    assert_frame_equal(frame, ours(api.store.url))
    true_bars = theirs(
        api.base, api.keys["alice"], symbol=ETH, timestamp="true", end=date(2024, 1, 31)
    )
    assert_frame_equal(
        true_bars, ours(api.store.url, symbol=ETH, timestamp="true", end=date(2024, 1, 31))
    )


def test_one_entry_per_published_month_in_order_with_five_minute_links(api: Api) -> None:
    response = api.get("/data/flow", **query(start=date(2023, 12, 1), end=date(2024, 3, 31)))
    assert response.status_code == 200
    files = response.json()["files"]
    assert [(f["year"], f["month"]) for f in files] == [(2024, 1), (2024, 2)]  # March: staged only
    assert set(files[0]) == {"year", "month", "url"}
    token = files[0]["url"].rsplit("/", 1)[1]
    expires = Signer(SECRET).verify(token).expires
    assert 299 <= expires - time.time() <= 301
    assert requests.get(files[0]["url"], timeout=10).status_code == 200  # no key needed


def test_aperiodic_reads_the_url_from_APERIODIC_API_URL(api: Api) -> None:  # noqa: N802
    """The client in a fresh process, configured only by its environment variable."""
    code = (
        "import aperiodic, datetime as dt, json, os\n"
        "key = os.environ['KEY']\n"
        "df = aperiodic.get_metrics(key, metric='flow', timestamp='exchange', interval='1d',\n"
        f"    exchange='{BINANCE}', symbol='{BTC}', start_date=dt.date(2024, 1, 1),\n"
        "    end_date=dt.date(2024, 2, 29), show_progress=False)\n"
        f"print(json.dumps([df.height, aperiodic.get_symbols(key, '{BINANCE}')]))\n"
    )
    env = os.environ | {"APERIODIC_API_URL": api.base, "KEY": api.keys["alice"]}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [31 + 29, [BTC, ETH]]


def test_aperiodic_get_symbols(api: Api) -> None:
    assert aperiodic.get_symbols(api.keys["alice"], BINANCE, base_url=api.base) == [BTC, ETH]
    assert aperiodic.get_symbols(api.keys["alice"], OKX, base_url=api.base) == [OKX_BTC]
    body = api.get("/metadata/symbols", exchange=OKX).json()
    assert body == {"symbols": [OKX_BTC], "exchange": OKX, "bucket": "flow"}


def test_our_client_through_the_api_returns_the_direct_read(api: Api) -> None:
    kwargs = {"exchange": BINANCE, "symbol": BTC, "interval": "1d"}
    days = {"start_date": JAN, "end_date": date(2024, 2, 29)}
    direct = get_metrics(**kwargs, **days, storage_url=api.store.url)
    via_api = get_metrics(
        **kwargs, **days, api_key=api.keys["alice"], api_url=api.base, max_workers=2
    )
    assert_frame_equal(via_api, direct)
    with pytest.raises(LookupError, match=r"2024-03 \(nothing published\)"):
        get_metrics(
            **kwargs, start_date=FEB, end_date=MAR, api_key=api.keys["alice"], api_url=api.base
        )
    with pytest.raises(ApiError, match="401: Authorization Required") as caught:
        get_metrics(**kwargs, **days, api_key="fa_wrong", api_url=api.base)
    assert caught.value.code == "unauthorized"
    with pytest.raises(ApiError, match="403: Interval 15s requires Prime"):
        get_metrics(
            **(kwargs | {"interval": "15s"}), **days, api_key=api.keys["alice"], api_url=api.base
        )


def test_aperiodic_on_s3_through_presigned_urls(
    s3_env: str,
    tmp_path: Path,
) -> None:
    store = open_store(s3_env)
    for month in (JAN, FEB):
        publish(store, BINANCE, BTC, month, {flow_file("exchange", "1h"): btc_bars(month, "1h")})
    keys = make_keys(f"{s3_env}/api")  # the key file beside the store
    settings = settings_for(s3_env, f"{s3_env}/api")
    with ServerThread(create_app(settings)) as server:
        base = f"{server.url}/api/v1"
        frame = theirs(base, keys["alice"])
        assert_frame_equal(frame, ours(s3_env))
        listing = requests.get(
            f"{base}/data/flow", params=query(), headers={"X-API-KEY": keys["alice"]}, timeout=10
        )
        urls = [f["url"] for f in listing.json()["files"]]
    assert all(
        u.startswith(os.environ["AWS_ENDPOINT_URL"]) and "X-Amz-Expires=300" in u for u in urls
    )
    assert all("/flow-assets/flow/binance-futures/" in u for u in urls)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "key", "params", "status", "code"),
    [
        ("/data/flow", None, query(), 401, "unauthorized"),
        ("/data/flow", "fa_unknown", query(), 401, "unauthorized"),
        ("/data/flow", "x" * 5000, query(), 401, "unauthorized"),
        ("/data/flow", "bob", query(), 403, "key_revoked"),
        ("/data/flow", "alice", query(interval="1s"), 403, "tier_required"),
        ("/data/flow", "DEMO-KEY", query(), 403, "preview_only"),
        ("/data/vtwap", "alice", query(), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(interval="2h"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(timestamp="arrival"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(exchange="bybit"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(symbol="BTCUSDT"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(symbol="perpetual-BTC-USDT"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(symbol="spot-BTC-USDT:USDT"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(start_date="2024-02-30"), 400, "invalid_parameter"),
        ("/data/flow", "alice", query(start_date="20240101"), 400, "invalid_parameter"),
        ("/data/flow", "alice", {"interval": "1h"}, 400, "invalid_parameter"),
        ("/data/flow", "alice", query(start=FEB, end=JAN), 400, "invalid_range"),
        (
            "/data/flow",
            "alice",
            query(start=date(2022, 12, 31), end=date(2024, 1, 1)),
            400,
            "range_too_long",
        ),
        (
            "/data/flow",
            "alice",
            query(start=date(2020, 1, 1), end=date(2020, 2, 1)),
            404,
            "not_found",
        ),
        ("/data/flow", "alice", query(timestamp="true"), 404, "not_found"),
        ("/data/flow", "alice", query(symbol="perpetual-SOL-USDT:USDT"), 404, "not_found"),
        ("/data/preview/flow", "DEMO-KEY", query(), 400, "not_in_preview"),
        (
            "/data/preview/flow",
            "DEMO-KEY",
            query(start=JAN, end=JAN, interval="15s"),
            400,
            "not_in_preview",
        ),
        ("/data/preview/flow", None, query(start=JAN, end=JAN), 401, "unauthorized"),
        ("/metadata/symbols", "alice", {"exchange": "bybit"}, 400, "invalid_parameter"),
        ("/metadata/symbols", None, {"exchange": BINANCE}, 401, "unauthorized"),
        ("/metadata/catalog", "bob", {}, 403, "key_revoked"),
        ("/nothing/here", "alice", {}, 404, "not_found"),
    ],
)
def test_error_codes(
    api: Api, path: str, key: str | None, params: dict, status: int, code: str
) -> None:
    response = api.get(path, key, **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "details", "code"}
    assert body["code"] == code
    assert isinstance(body["details"], list)


def test_aperiodic_maps_our_errors(api: Api) -> None:
    cases = [
        ("fa_unknown", {}, 401, "Authorization Required", None),
        (api.keys["bob"], {}, 403, "API key revoked", "key_revoked"),
        (
            api.keys["alice"],
            {"interval": "30s"},
            403,
            "Interval 30s requires Prime",
            "tier_required",
        ),
        (
            api.keys["alice"],
            {"start": date(2020, 1, 1), "end": date(2020, 1, 2)},
            404,
            "Not Found",
            None,
        ),
        (
            api.keys["alice"],
            {"start": FEB, "end": JAN},
            400,
            "end_date is before start_date",
            "invalid_range",
        ),
    ]
    for key, kw, status, message, code in cases:
        with pytest.raises(aperiodic.APIError) as caught:
            theirs(api.base, key, **kw)
        assert (caught.value.status_code, caught.value.message, caught.value.code) == (
            status,
            message,
            code,
        )


def test_preview_for_the_demo_key(api: Api) -> None:
    kw = {"start": JAN, "end": date(2024, 1, 31), "interval": "1d"}
    preview = aperiodic.get_metrics(
        metric="flow",
        base_url=api.base,
        show_progress=False,
        preview=True,
        timestamp="exchange",
        interval="1d",
        exchange=BINANCE,
        symbol=BTC,
        start_date=JAN,
        end_date=date(2024, 1, 31),
    )
    assert_frame_equal(preview, ours(api.store.url, **kw))
    with pytest.raises(aperiodic.APIError, match="Not part of the preview") as caught:
        aperiodic.get_metrics(
            metric="flow",
            base_url=api.base,
            show_progress=False,
            preview=True,
            timestamp="exchange",
            interval="1d",
            exchange=BINANCE,
            symbol=BTC,
            start_date=JAN,
            end_date=FEB,
        )
    assert caught.value.code == "not_in_preview"
    assert api.get("/metadata/symbols", "DEMO-KEY", exchange=BINANCE).status_code == 200


def test_unexpected_failures_are_bare_json(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.put_bytes(f"flow/{BINANCE}/{BTC}/2024-01/manifest.json", b'{"format": 1}')  # corrupt
    keys = make_keys(str(tmp_path / "keys"))
    unreachable = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    corrupt = settings_for(store.url, str(tmp_path / "keys"))
    down = settings_for("s3://nowhere/prefix", str(tmp_path / "keys"))
    with (
        ServerThread(create_app(corrupt)) as server,
        ServerThread(create_app(down, s3_client=unreachable)) as s3_down,
    ):
        headers = {"X-API-KEY": keys["alice"]}
        broken = requests.get(
            f"{server.url}/api/v1/data/flow", params=query(), headers=headers, timeout=10
        )
        outage = requests.get(
            f"{s3_down.url}/api/v1/data/flow", params=query(), headers=headers, timeout=10
        )
    assert broken.status_code == 500
    assert broken.json() == {"error": "Internal Server Error", "details": [], "code": "internal"}
    assert outage.status_code == 503
    assert outage.json()["code"] == "store_unavailable"
    assert outage.headers["Retry-After"] == "5"
    for response in (broken, outage):
        assert "Traceback" not in response.text
        assert "File " not in response.text


# --------------------------------------------------------------------------- links


def _file_urls(api: Api, **kw: Any) -> list[str]:
    response = api.get("/data/flow", **query(**kw))
    assert response.status_code == 200, response.text
    return [f["url"] for f in response.json()["files"]]


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_links_expire_and_cannot_be_tampered_with(api: Api, tmp_path: Path) -> None:
    clock = [time.time()]
    app = create_app(api.settings)
    app.state.api.signer = Signer(SECRET, clock=lambda: clock[0])
    with ServerThread(app) as server:
        listed = requests.get(
            f"{server.url}/api/v1/data/flow",
            params=query(),
            headers={"X-API-KEY": api.keys["alice"]},
            timeout=10,
        )
        jan, feb = (f["url"] for f in listed.json()["files"])
        clock[0] += 299
        assert requests.get(jan, timeout=10).status_code == 200
        token = jan.rsplit("/", 1)[1]
        payload, mac = token.split(".")
        other_payload = feb.rsplit("/", 1)[1].split(".")[0]
        for forged in (
            _flip(token, 5),
            _flip(token, len(token) - 3),
            f"{other_payload}.{mac}",
            payload,
            token[:-1],
        ):
            refused = requests.get(f"{server.url}/api/v1/files/{forged}", timeout=10)
            assert refused.status_code == 403
            assert refused.json()["code"] == "link_invalid"
        clock[0] += 2
        expired = requests.get(jan, timeout=10)
        assert (expired.status_code, expired.json()["code"]) == (403, "link_expired")
        with pytest.raises(aperiodic.DownloadError) as caught:  # the client gives up at once
            aperiodic_download(jan)
        assert caught.value.status_code == 403


def aperiodic_download(url: str) -> bytes:
    import asyncio  # noqa: PLC0415

    from aperiodic.client import download_parquet_bytes  # noqa: PLC0415

    async def run() -> bytes:
        return (
            await download_parquet_bytes(
                url, {}, year=2024, month=1, semaphore=asyncio.Semaphore(1)
            )
        )[2]

    return asyncio.run(run())


def test_links_on_local_storage_name_only_published_files(api: Api) -> None:
    url = _file_urls(api)[0]
    body = requests.get(url, timeout=10)
    assert body.headers["content-type"] == "application/vnd.apache.parquet"
    assert pl.read_parquet(body.content).height == 31 * 24
    assert "Cache-Control" in body.headers


# --------------------------------------------------------------------------- traversal


def raw_get(api: Api, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side normalization or re-encoding)."""
    connection = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


HOSTILE = [
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc",
    "..%5C..%5Cwindows",
    "%00",
    "perpetual-BTC-USDT%3AUSDT%00",
    "perpetual-BTC-USDT%3AUSDT%2F..%2F..%2Fx",
    "%C0%AE%C0%AE%2F",
    "flow%2Fbinance-futures",
    "x" * 4000,
]
PARAMS = ["timestamp", "interval", "exchange", "symbol", "start_date", "end_date"]


def _check_refused(status: int, body: bytes, allowed: set[int]) -> None:
    assert status in allowed, body
    assert b"root:" not in body
    assert b"Traceback" not in body
    if status != 400 or body.startswith(b"{"):
        assert set(json.loads(body)) == {"error", "details", "code"}


@pytest.mark.parametrize("value", HOSTILE)
def test_path_traversal_in_every_parameter(api: Api, value: str) -> None:
    headers = {"X-API-KEY": api.keys["pat"]}
    valid = {k: quote(v, safe="") for k, v in query().items()}
    for name in PARAMS:
        target = "/api/v1/data/flow?" + "&".join(
            f"{k}={value if k == name else v}" for k, v in valid.items()
        )
        _check_refused(*raw_get(api, target, headers), {400})
    _check_refused(*raw_get(api, f"/api/v1/metadata/symbols?exchange={value}", headers), {400})
    _check_refused(
        *raw_get(api, f"/api/v1/data/{value}?{target.split('?')[1]}", headers), {400, 404}
    )
    _check_refused(*raw_get(api, f"/api/v1/data/preview/{value}", headers), {400, 404})
    _check_refused(*raw_get(api, f"/api/v1/files/{value}"), {403, 404})
    _check_refused(*raw_get(api, "/api/v1/metadata/catalog", {"X-API-KEY": value}), {401})


def test_over_long_requests_are_refused_without_a_server_error(api: Api) -> None:
    status, _ = raw_get(
        api, "/api/v1/data/flow?symbol=" + "A" * 100_000, {"X-API-KEY": api.keys["pat"]}
    )
    assert status in {400, 414, 431}
    status, _ = raw_get(api, "/api/v1/metadata/catalog", {"X-API-KEY": "k" * 100_000})
    assert status in {400, 401, 431}


# --------------------------------------------------------------------------- keys, tiers, limits


def test_revoked_keys_are_refused_at_once(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOW_ASSETS_KEYS", api.settings.keys_location)
    assert cli.main(["keys", "create", "--name", "henry"]) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    assert api.get("/metadata/catalog", key).status_code == 200
    assert cli.main(["keys", "revoke", "henry"]) == 0
    refused = api.get("/metadata/catalog", key)
    assert (refused.status_code, refused.json()["code"]) == (403, "key_revoked")
    with pytest.raises(aperiodic.APIError, match="API key revoked"):
        theirs(api.base, key)


def test_tiers(api: Api) -> None:
    for interval in ("1s", "15s", "30s"):
        refused = api.get("/data/flow", "alice", **query(interval=interval))
        assert refused.status_code == 403
        assert refused.json()["error"] == f"Interval {interval} requires Prime"
    assert api.get("/data/flow", "pat", **query(interval="30s")).status_code == 200
    assert (
        api.get("/data/flow", "pat", **query(interval="1s")).status_code == 404
    )  # allowed, absent


def test_a_key_over_its_rate_gets_429_and_aperiodic_waits(api: Api) -> None:
    statuses = [api.get("/metadata/catalog", "slow") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].headers["Retry-After"] == "1"
    assert statuses[-1].json()["code"] == "rate_limited"
    assert api.get("/metadata/catalog", "alice").status_code == 200  # others are not slowed
    started = time.monotonic()
    assert aperiodic.get_symbols(api.keys["slow"], BINANCE, base_url=api.base) == [BTC, ETH]
    assert time.monotonic() - started < 5


def test_default_limit_stops_a_burst_of_hundreds(api: Api, tmp_path: Path) -> None:
    env = {
        "FLOW_ASSETS_STORAGE_URL": api.store.url,
        "FLOW_ASSETS_KEYS": api.settings.keys_location,
        "FLOW_ASSETS_API_SECRET": "z" * 32,
    }
    settings = ApiSettings.from_env(env)
    with ServerThread(create_app(settings)) as server, requests.Session() as session:
        url = f"{server.url}/api/v1/data/flow"
        headers = {"X-API-KEY": api.keys["alice"]}

        def one(_: int) -> requests.Response:
            return session.get(url, params=query(), headers=headers, timeout=10)

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(one, range(300)))
        elapsed = time.monotonic() - started
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 429}
    assert 60 <= codes.count(200) <= 60 + 10 * elapsed + 1
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1


# --------------------------------------------------------------------------- documents and logs


def test_catalog(api: Api) -> None:
    (metric,) = api.get("/metadata/catalog").json()["metrics"]
    assert {k: metric[k] for k in ("id", "category")} == {"id": "flow", "category": "trades"}
    assert metric["fields"][0] == {"name": "time", "type": "datetime[us]"}
    assert len(metric["fields"]) == 37
    coverage = {(c["exchange"], c["symbol"]): c for c in metric["coverage"]}
    assert list(coverage) == [(BINANCE, BTC), (BINANCE, ETH), (OKX, OKX_BTC)]
    btc = coverage[(BINANCE, BTC)]
    assert (btc["intervals"], btc["timestamps"]) == (["30s", "1h", "1d"], ["exchange"])
    assert (btc["first_month"], btc["last_month"]) == ("2024-01", "2024-02")  # March: staged only
    assert btc["last_month_complete"] is False
    assert btc["covered_until"] == "2024-02-20T00:00:00+00:00"
    assert btc["reconciled"] == {"2024-01": True, "2024-02": None}
    assert coverage[(BINANCE, ETH)]["timestamps"] == ["exchange", "true"]


def test_the_openapi_vocabularies_are_the_pipelines() -> None:
    assert get_args(routes.Interval) == ALL_INTERVALS
    assert get_args(routes.Timestamp) == TIMESTAMPS
    assert get_args(routes.Exchange) == NAMES
    assert set(TIERS["prime"]) - set(TIERS["basic"]) == set(PRIME_INTERVALS) == {"1s", "15s", "30s"}


def test_openapi_document_is_served(api: Api) -> None:
    document = requests.get(f"{api.base}/openapi.json", timeout=10).json()
    assert set(document["paths"]) == {
        "/api/v1/data/{metric}",
        "/api/v1/data/preview/{metric}",
        "/api/v1/metadata/symbols",
        "/api/v1/metadata/catalog",
        "/api/v1/files/{token}",
    }
    data = document["paths"]["/api/v1/data/{metric}"]["get"]
    assert set(data["responses"]) == {"200", "400", "401", "403", "404", "429", "503"}
    assert "Retry-After" in data["responses"]["429"]["headers"]
    assert document["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-KEY"
    codes = {}
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    examples = response["content"]["application/json"]["examples"]
                    for name, example in examples.items():
                        assert example["value"]["code"] == name, (status, name)
                    codes.setdefault(status, set()).update(examples)
    assert codes["400"] == {
        "invalid_parameter",
        "invalid_range",
        "range_too_long",
        "not_in_preview",
    }
    assert {"key_revoked", "tier_required", "preview_only", "link_expired"} <= codes["403"]
    assert codes["503"] == {"store_unavailable", "key_store_unavailable"}


def test_docs_page_needs_no_cdn(api: Api) -> None:
    """/docs loads Swagger UI from this server (the fastapi-offline package's files)."""
    page = requests.get(f"{api.base}/docs", timeout=10)
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert sources, page.text
    assert all(s.startswith("/api/v1/docs-assets/") for s in sources), sources
    assert "http://" not in page.text, page.text
    assert "https://" not in page.text, page.text
    for source in sources:
        asset = requests.get(f"{api.base.removesuffix('/api/v1')}{source}", timeout=10)
        assert asset.status_code == 200, source
        assert len(asset.content) > 500, source


def test_access_log_names_the_key_never_the_key(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flow_assets.api.access"):
        url = _file_urls(api)[0]
        requests.get(url, timeout=10)
        api.get("/metadata/catalog", "fa_not-a-key")
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "flow_assets.api.access"]
    assert any(
        "/api/v1/data/flow?" in line and "status=200 key=alice latency_ms=" in line
        for line in lines
    )
    assert any("/api/v1/files/" in line and "status=200 key=-" in line for line in lines)
    assert any("status=401 key=-" in line for line in lines)
    text = "\n".join(lines)
    assert api.keys["alice"] not in text
    assert "fa_not-a-key" not in text
    assert url.rsplit("/", 1)[1] not in text  # a link's token is a credential too


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flow_assets_serve_command(api: Api) -> None:
    port = _free_port()
    env = os.environ | {
        "FLOW_ASSETS_STORAGE_URL": api.store.url,
        "FLOW_ASSETS_KEYS": api.settings.keys_location,
        "FLOW_ASSETS_API_SECRET": "w" * 32,
    }
    command = [str(Path(sys.executable).with_name("flow-assets")), "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                files = requests.get(
                    f"http://127.0.0.1:{port}/api/v1/data/flow",
                    params=query(),
                    headers={"X-API-KEY": api.keys["alice"]},
                    timeout=5,
                ).json()["files"]
                break
            except requests.ConnectionError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert files[0]["url"].startswith(f"http://127.0.0.1:{port}/api/v1/files/")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells it
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Finished server process" in stderr
    assert "status=200 key=alice" in stderr
    assert api.keys["alice"] not in stderr
