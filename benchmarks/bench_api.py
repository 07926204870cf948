"""Load check of the HTTP API: requests/s and latency of ``GET /api/v1/data/flow`` on loopback.

Publishes ``--months`` months of 1h bars of one instrument into a temporary local store, creates
one key, starts ``flow-assets serve`` in its own process (rate limit lifted, access log on, as in
production, written to a file), then runs ``--clients`` concurrent clients (bare asyncio
HTTP/1.1, one keep-alive connection each) that each request the whole range in a loop for
``--seconds``, after ``--warmup`` seconds that are not counted. Each answer lists ``--months``
signed links, so every request reads that many manifests and signs that many URLs. Prints
requests/s, latency percentiles and any non-200 answers.

    .venv/bin/python benchmarks/bench_api.py                  # 50 clients, 12 months, 10 s
    .venv/bin/python benchmarks/bench_api.py --clients 10 --seconds 3 --months 1   # quick check

Server and load generator share the machine (and any other load on it): run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.api.keys import KeyStore  # noqa: E402
from flow_assets.publish import Staging, flow_file  # noqa: E402
from flow_assets.store import open_store  # noqa: E402
from flow_assets_tests.s3_fixtures import month_bars  # noqa: E402

EXCHANGE, SYMBOL = "binance-futures", "perpetual-BTC-USDT:USDT"


def publish_months(store_dir: Path, count: int) -> list[date]:
    """``count`` published months of 1h bars from January 2024 on."""
    store = open_store(str(store_dir))
    months = [date(2024 + i // 12, i % 12 + 1, 1) for i in range(count)]
    for month in months:
        staging = Staging(store, "flow", EXCHANGE, SYMBOL, month)
        staging.write_parquet(
            flow_file("exchange", "1h"), month_bars(month, "1h"), store_dir.parent
        )
        staging.commit({"complete": True, "covered_until": f"{month:%Y-%m}-28T00:00:00+00:00"})
    return months


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(work: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "FLOW_ASSETS_STORAGE_URL": str(work / "store"),
        "FLOW_ASSETS_KEYS": str(work / "keys"),
        "FLOW_ASSETS_API_SECRET": "b" * 32,
        "FLOW_ASSETS_API_RATE": "1000000000",
        "FLOW_ASSETS_API_BURST": "1000000000",
    }
    command = [str(Path(sys.executable).with_name("flow-assets")), "serve", "--port", str(port)]
    log = (work / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start; see {work / 'server.log'}")


async def client(
    port: int, request: bytes, stop_at: float, count_from: float
) -> tuple[list[float], dict[int, int]]:
    """One keep-alive connection sending ``request`` until ``stop_at``; the latencies (s) and
    statuses of the answers started after ``count_from``. A bare HTTP/1.1 client, so that the
    load generator spends as little CPU as possible."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    try:
        while (started := time.perf_counter()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if started >= count_from:
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
    return latencies, statuses


async def load(
    port: int, key: str, params: dict, clients: int, seconds: float, warmup: float
) -> dict:
    """``clients`` connections requesting ``/api/v1/data/flow?params`` for ``seconds``."""
    target = f"/api/v1/data/flow?{urlencode(params)}"
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-KEY: {key}\r\n\r\n"
    ).encode()
    count_from = time.perf_counter() + warmup
    stop_at = count_from + seconds
    results = await asyncio.gather(
        *(client(port, request, stop_at, count_from) for _ in range(clients))
    )
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses: dict[int, int] = {}
    for _, counts in results:
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": quantiles[49] * 1000,
        "p90_ms": quantiles[89] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "max_ms": latencies[-1] * 1000,
        "statuses": statuses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        months = publish_months(work / "store", args.months)
        _, key = KeyStore(str(work / "keys")).create("bench", "prime")
        port = free_port()
        server = start_server(work, port)
        try:
            params = {
                "timestamp": "exchange",
                "interval": "1h",
                "exchange": EXCHANGE,
                "symbol": SYMBOL,
                "start_date": months[0].isoformat(),
                "end_date": date(months[-1].year, months[-1].month, 28).isoformat(),
            }
            result = asyncio.run(load(port, key, params, args.clients, args.seconds, args.warmup))
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(
        f"GET /api/v1/data/flow ({args.months} months per answer), {args.clients} concurrent "
        f"clients, {args.seconds:.0f} s on loopback; {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}"
    )
    print(
        f"  {result['requests']} requests: {result['rps']:.0f} requests/s; latency p50 "
        f"{result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"max {result['max_ms']:.1f} ms; statuses {result['statuses']}"
    )
    return 0 if set(result["statuses"]) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
