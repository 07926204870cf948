"""How many history-candles requests OKX contract dating makes: a first run and a daily run.

Serves, on the local catalog mirror, the sample OKX listing (~230 swaps, listed 2019-2026 at
the sample's deterministic times) with one daily candle per day since each listing up to
``--today``, and a contract-value change on every ``--change-every``-th swap (its day's ``1H``
and ``1m`` candles served too). Runs :func:`flow_assets.venues.okx_candles.date_contracts`
once from nothing (the first run: from listing) and once more a day later (the daily run),
counting the requests the mirror answered; the wall time at OKX's limit (20 requests per 2 s)
is requests × 0.1 s. Prints JSON.

    .venv/bin/python benchmarks/bench_okx_candle_requests.py
"""

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flow_assets.catalog.contract_dating import empty_state  # noqa: E402
from flow_assets.catalog.mirror import CatalogServer  # noqa: E402
from flow_assets.sources.http import make_session  # noqa: E402
from flow_assets.venues import okx_candles  # noqa: E402
from flow_assets.venues.okx_perps import parse_catalog, sample  # noqa: E402

COLUMNS = ("time", "o", "h", "l", "c", "vol", "vol_ccy", "vol_ccy_quote")


def _bars(start: datetime, end: datetime, step: timedelta, value_at) -> pl.DataFrame:
    times = pl.datetime_range(start, end, step, closed="left", eager=True, time_zone="UTC")
    values = [value_at(t) for t in times]
    return pl.DataFrame(
        {"time": times, "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "vol": 10.0,
         "vol_ccy": [10.0 * v for v in values], "vol_ccy_quote": [10.0 * v for v in values]}
    ).select(COLUMNS)  # fmt: skip


def candles(listings: pl.DataFrame, today: datetime, every: int) -> dict[str, dict]:
    """Daily candles from listing to ``today``; every ``every``-th swap changes value once."""
    served = {}
    for n, row in enumerate(listings.iter_rows(named=True)):
        start = row["listed"].replace(hour=0, minute=0, second=0, microsecond=0)
        value = row["ct_val"]
        change = start + (today - start) / 2 if n % every == 0 else None
        change = change.replace(second=0, microsecond=0) if change else None

        def value_at(t, change=change, value=value):
            return value * 10 if change and t < change else value

        bars = {"1Dutc": _bars(start, today, timedelta(days=1), value_at)}
        if change:
            day = change.replace(hour=0, minute=0)
            hour = change.replace(minute=0)
            bars["1H"] = _bars(day, day + timedelta(days=1), timedelta(hours=1), value_at)
            bars["1m"] = _bars(hour, hour + timedelta(hours=1), timedelta(minutes=1), value_at)
        served[row["native"]] = bars
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--today", default="2026-12-01")
    parser.add_argument("--change-every", type=int, default=10)
    args = parser.parse_args()
    today = datetime.fromisoformat(args.today).replace(tzinfo=UTC)
    document = sample()
    listings = parse_catalog(document).filter(pl.col("delisted").is_null())
    served = candles(listings, today, args.change_every)
    session = make_session(retries=1, timeout=(5.0, 30.0))
    with CatalogServer({"okx-perps": document | {"_candles": served}}) as server:
        first = okx_candles.date_contracts(server.url, session, listings, empty_state(), pace=0)
        for bars in served.values():  # one more day of candles
            last = bars["1Dutc"].tail(1)
            bars["1Dutc"] = pl.concat([bars["1Dutc"], last.with_columns(
                pl.col("time") + timedelta(days=1))])  # fmt: skip
        daily = okx_candles.date_contracts(server.url, session, listings, first.state, pace=0)
    changes = sum(len(line.segments) - 1 for line in first.timelines.values() if line.segments)
    print(json.dumps({
        "swaps": listings.height,
        "changes_found": changes,
        "first_run_requests": first.requests,
        "first_run_seconds_at_okx_limit": round(first.requests * okx_candles.PACE, 1),
        "daily_run_requests": daily.requests,
        "daily_run_seconds_at_okx_limit": round(daily.requests * okx_candles.PACE, 1),
        "unavailable": first.unavailable + daily.unavailable,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
