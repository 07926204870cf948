"""Streaming ingestion: the Parquet file equals whole-file cleaning, however the rows are batched.

The reference is :func:`clean_trades` over the concatenation of every file's raw rows (and, in
the property test, a plain-Python statement of the row policies). Chunks of a few lines, row
groups of 7 rows and sort slices of 5 rows are forced so that many of each are exercised.
"""

from __future__ import annotations

import random
import tempfile
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from itertools import accumulate, pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from flow_assets.metrics.schema import TRADE_SCHEMA
from flow_assets.sources import (
    ArchiveDefectError,
    CorruptArchiveError,
    MalformedCsvError,
    csvstream,
    http,
    ingest,
    ingest_month,
)
from flow_assets.sources import report as report_module
from flow_assets.sources.binance import read_binance_csv
from flow_assets.sources.idset import SeenIds
from flow_assets.sources.mirror import (
    binance_csv,
    okx_csv,
    sample_trades,
    utc,
    write_checksum,
    write_tardis,
    write_zip,
)
from flow_assets.sources.okx import UTC_OFFSET, read_okx_csv
from flow_assets.sources.report import FetchReport, clean_trades, month_bounds
from flow_assets.sources.tardis import ingest_tardis_month, parse_tardis_csv
from flow_assets_tests.archive_fixtures import (
    Mirror,
)
from flow_assets_tests.trade_frames import trades_frame

BTC = "perpetual-BTC-USDT:USDT"
JAN = date(2024, 1, 1)
START, END = month_bounds(JAN)
LATER = date(2024, 6, 1)
MONTHLY = "data/futures/um/monthly/aggTrades/BTCUSDT"
DAILY = "data/futures/um/daily/aggTrades/BTCUSDT"
OKX_DAILY = "cdn/okex/traderecords/trades/daily"
REPORT_FIELDS = ("rows_read", "rows_dropped", "rows_reordered", "defects", "first_trade")


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few lines, row groups of 7 rows, sort slices of 5 rows, 3 open spill files,
    a batch's rows grouped by hour as soon as the hours alternate."""
    monkeypatch.setattr(csvstream, "CHUNK_BYTES", 256)
    monkeypatch.setattr(csvstream, "READ_BYTES", 64)
    monkeypatch.setattr(ingest, "ROW_GROUP_ROWS", 7)
    monkeypatch.setattr(ingest, "SORT_ROWS", 5)
    monkeypatch.setattr(ingest, "MAX_OPEN_SPILLS", 3)
    monkeypatch.setattr(ingest, "MAX_HOUR_RUNS", 1)


def messy(trades: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``trades`` in a disordered source order with defects: blocks and rows out of order, ids
    again on the same day or on another day (other time and price), zero quantities."""
    rng = random.Random(seed)
    rows = trades.to_dicts()
    blocks = [rows[i : i + 25] for i in range(0, len(rows), 25)]
    rng.shuffle(blocks)
    rows = [row for block in blocks for row in block]
    for _ in range(15):
        i, j = rng.randrange(len(rows)), rng.randrange(len(rows))
        rows[i], rows[j] = rows[j], rows[i]
    for _ in range(25):
        i = rng.randrange(len(rows))
        again = dict(rows[i])
        if rng.random() < 0.6:  # the same id on another day, at another price
            again["exchange_ts"] += timedelta(days=rng.choice([-3, -1, 2, 5]), minutes=7)
            again["price"] += 1.5
            again["notional"] = again["price"] * again["base_qty"]
        rows.insert(rng.randrange(len(rows) + 1), again)
    for _ in range(20):
        i = rng.randrange(len(rows))
        rows[i] = {**rows[i], "base_qty": 0.0, "notional": 0.0}
    return pl.DataFrame(rows, schema=TRADE_SCHEMA)


def reference(
    files: list[Path], read: Callable[[Path], pl.DataFrame], start: datetime, end: datetime
) -> tuple[pl.DataFrame, FetchReport]:
    """``clean_trades`` over the concatenated raw rows of ``files``: the whole-file result."""
    report = FetchReport("", "", None)
    raw = pl.concat([read(path) for path in files])
    return clean_trades(raw, report, start, end), report


def assert_same_result(dest: Path, report: FetchReport, expected: pl.DataFrame, ref: FetchReport):
    """The streamed file equals the whole-file trades row for row; the counts are equal."""
    assert_frame_equal(pl.read_parquet(dest), expected, check_exact=True)
    for name in (*REPORT_FIELDS, "last_trade"):
        assert getattr(report, name) == getattr(ref, name), name


def assert_layout(dest: Path) -> None:
    """One sorted file in ``TRADE_SCHEMA``; zstd row groups with statistics, each within a day."""
    assert pl.read_parquet_schema(dest) == pl.Schema(TRADE_SCHEMA)
    meta = pq.ParquetFile(dest).metadata
    previous = None
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        assert 0 < group.num_rows <= ingest.ROW_GROUP_ROWS
        ts = group.column(0)
        assert ts.compression == "ZSTD"
        assert ts.statistics.has_min_max
        low, high = ts.statistics.min, ts.statistics.max
        assert low.date() == high.date()
        assert previous is None or previous <= low
        previous = high
    trades = pl.read_parquet(dest)
    assert trades.equals(trades.sort("exchange_ts", "trade_id"))


def write_binance_file(root: Path, folder: str, name: str, trades: pl.DataFrame) -> Path:
    """A Binance aggTrades zip (with its CHECKSUM) holding ``trades`` in this order."""
    path = write_zip(root / folder / f"{name}.zip", f"{name}.csv", b"")
    data = binance_csv(trades, "aggTrades", header=True, micros=False)
    write_checksum(write_zip(path, f"{name}.csv", data))
    return path


def ingest_binance(mirror: Mirror, dest: Path, **kwargs: object) -> FetchReport:
    return ingest_month(
        "binance-futures",
        BTC,
        JAN,
        dest,
        base_url=mirror.url,
        session=mirror.session,
        today=LATER,
        **kwargs,  # type: ignore[arg-type]
    )


def test_binance_monthly_messy_file(mirror: Mirror, tiny: None, tmp_path: Path, monkeypatch):
    source = messy(sample_trades(utc(2023, 12, 29), utc(2024, 2, 3), 400, seed=11), seed=1)
    path = write_binance_file(mirror.root, MONTHLY, "BTCUSDT-aggTrades-2024-01", source)
    sorted_heights: list[int] = []

    def sort_trades(trades: pl.DataFrame) -> pl.DataFrame:
        sorted_heights.append(trades.height)
        return trades.sort("exchange_ts", "trade_id")

    monkeypatch.setattr(ingest, "sort_trades", sort_trades)
    dest = tmp_path / "jan.parquet"
    report = ingest_binance(mirror, dest)
    expected, ref = reference([path], read_binance_csv, START, END)
    assert_same_result(dest, report, expected, ref)
    assert_layout(dest)
    assert set(report.rows_dropped) == {"zero_quantity", "duplicate_id", "outside_period"}
    assert report.rows_reordered > 0
    assert report.files[0].checksum_verified
    assert (report.complete, report.end, len(report.days_covered)) == (True, END, 31)
    assert 0 < max(sorted_heights) <= ingest.SORT_ROWS  # an unordered day: sorted in slices
    assert not list(tmp_path.glob("*.part"))


def test_binance_daily_files_with_duplicates_across_files(mirror: Mirror, tiny: None, tmp_path):
    source = messy(sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 300, seed=12), seed=2)
    source = source.filter(pl.col("exchange_ts").is_between(START, END, closed="left"))
    day = pl.col("exchange_ts").dt.date()
    paths = [
        write_binance_file(
            mirror.root, DAILY, f"BTCUSDT-aggTrades-{d}", source.filter(day == d).sample(fraction=1)
        )
        for d in (JAN + timedelta(days=n) for n in range(31))
    ]
    dest = tmp_path / "jan.parquet"
    report = ingest_binance(mirror, dest)
    assert len(report.files) == 31
    expected, ref = reference(paths, read_binance_csv, START, END)
    assert_same_result(dest, report, expected, ref)
    assert_layout(dest)
    assert report.rows_dropped["duplicate_id"] > 0


def test_first_occurrence_wins_across_days(mirror: Mirror, tmp_path: Path) -> None:
    """An id repeated in a later day's file is dropped; a zero-quantity first one is not kept."""
    jan3 = int(utc(2024, 1, 3, 10).timestamp() * 1000)
    jan20 = int(utc(2024, 1, 20).timestamp() * 1000)
    header = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
    files = {
        3: [
            f"5,100.0,1.0,5,5,{jan3},true",
            f"6,101.0,1.0,6,6,{jan3 - 3_600_000},false",  # an hour earlier: out of order
            f"7,102.0,0,7,7,{jan3 + 1},true",  # zero quantity
        ],
        20: [
            f"5,200.0,1.0,5,5,{jan20},true",  # id 5 again, another day: dropped
            f"7,103.0,2.0,7,7,{jan20 + 5},true",  # the first id 7 kept
            f"6,101.0,1.0,6,6,{jan3 - 3_600_000},false",  # id 6 again, same time: dropped
        ],
    }
    for n in range(1, 32):
        name = f"BTCUSDT-aggTrades-2024-01-{n:02d}"
        data = "\n".join([header, *files.get(n, []), ""]).encode()
        write_checksum(write_zip(mirror.root / DAILY / f"{name}.zip", f"{name}.csv", data))
    dest = tmp_path / "jan.parquet"
    report = ingest_binance(mirror, dest)
    trades = pl.read_parquet(dest)
    assert trades["trade_id"].to_list() == [6, 5, 7]
    assert trades["price"].to_list() == [101.0, 100.0, 103.0]
    assert report.rows_dropped == {"zero_quantity": 1, "duplicate_id": 2}
    assert report.rows_reordered == 1
    assert report.rows_read == 6


def test_okx_month_from_messy_utc8_files(mirror: Mirror, tiny: None, tmp_path: Path) -> None:
    trades = sample_trades(utc(2023, 12, 31, 16), utc(2024, 2, 1, 16), 350, seed=13)
    source = messy(trades.with_columns(base_qty=pl.col("base_qty").round(2)), seed=3)
    source = source.with_columns(notional=pl.col("price") * pl.col("base_qty"))
    utc8 = (pl.col("exchange_ts") + UTC_OFFSET).dt.date()
    paths = []
    for day in (JAN + timedelta(days=n) for n in range(32)):
        name = f"BTC-USDT-SWAP-trades-{day}"
        data = okx_csv(source.filter(utc8 == day), BTC)
        folder = mirror.root / OKX_DAILY / f"{day:%Y%m%d}"
        paths.append(write_zip(folder / f"{name}.zip", f"{name}.csv", data))
    dest = tmp_path / "jan.parquet"
    report = ingest_month(
        "okx-perps", BTC, JAN, dest, base_url=mirror.url, session=mirror.session, today=LATER
    )
    expected, ref = reference(paths, lambda p: read_okx_csv(p, BTC), START, END)
    assert_same_result(dest, report, expected, ref)
    assert_layout(dest)
    assert report.rows_dropped["outside_period"] > 0  # the UTC+8 files straddle the month
    assert (report.complete, len(report.files)) == (True, 32)


def test_tardis_month(tmp_path: Path, tiny: None) -> None:
    trades = sample_trades(utc(2023, 12, 30), utc(2024, 2, 2), 300, seed=14)
    latency = (pl.col("trade_id") * 997 % 250_000).cast(pl.Duration("us"))
    source = messy(trades.with_columns(arrival_ts=pl.col("exchange_ts") + latency), seed=4)
    path = write_tardis(source, tmp_path / "trades.csv.gz", "binance-futures", "BTCUSDT")
    dest = tmp_path / "jan.parquet"
    lines: list[str] = []
    report = ingest_tardis_month(
        path, JAN, dest, exchange="binance-futures", symbol="BTCUSDT", progress=lines.append
    )
    expected, ref = reference([path], parse_tardis_csv, START, END)
    assert_same_result(dest, report, expected, ref)
    assert_layout(dest)
    assert pl.read_parquet(dest)["arrival_ts"].null_count() == 0
    assert (report.month, report.complete, report.end) == (JAN, True, END)
    assert report.days_covered == sorted(set(expected["exchange_ts"].dt.date().to_list()))
    assert any("trades written" in line for line in lines)


def test_one_late_row_after_an_ordered_start(mirror: Mirror, tiny: None, tmp_path: Path) -> None:
    """Rows written in order so far move to the day spills at the first row out of order."""
    ordered = sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 200, seed=15)
    late = ordered.filter(pl.col("trade_id") == 20).with_columns(
        trade_id=pl.lit(10_000, dtype=pl.Int64)
    )
    path = write_binance_file(
        mirror.root, MONTHLY, "BTCUSDT-aggTrades-2024-01", pl.concat([ordered, late])
    )
    dest = tmp_path / "jan.parquet"
    lines: list[str] = []
    report = ingest_binance(mirror, dest, progress=lines.append)
    expected, ref = reference([path], read_binance_csv, START, END)
    assert_same_result(dest, report, expected, ref)
    assert_layout(dest)
    assert report.rows_reordered == 1
    assert any("out of order" in line for line in lines)


def test_progress_lines(mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "PROGRESS_BYTES", 2_000)
    monkeypatch.setattr(csvstream, "PROGRESS_ROWS", 100)
    monkeypatch.setattr(csvstream, "CHUNK_BYTES", 1_000)
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 500, seed=16)
    write_binance_file(mirror.root, MONTHLY, "BTCUSDT-aggTrades-2024-01", trades)
    lines: list[str] = []
    ingest_binance(mirror, tmp_path / "jan.parquet", progress=lines.append)
    name = "BTCUSDT-aggTrades-2024-01.zip"
    assert any(line.startswith(f"{name}: ") and "MiB downloaded" in line for line in lines)
    assert any(line.startswith(f"{name}: downloaded, ") and " bytes " in line for line in lines)
    assert any(line.startswith(f"{name}: ") and "rows parsed" in line for line in lines)
    assert f"{name}: 500 rows parsed (end of file)" in lines
    days = [line for line in lines if line.endswith("trades written")]
    assert len(days) == 31
    assert days[0] == f"2024-01-01: {trades['exchange_ts'].dt.day().eq(1).sum()} trades written"


def stored_zip(path: Path, member: str, data: bytes) -> Path:
    """A zip whose member is stored uncompressed (so its bytes can be altered in place)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(member, data)
    return path


def test_failures_leave_no_file(mirror: Mirror, tiny: None, tmp_path: Path) -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 300, seed=17)
    name = "BTCUSDT-aggTrades-2024-01"
    path = mirror.root / MONTHLY / f"{name}.zip"
    path.parent.mkdir(parents=True)
    data = binance_csv(trades, "aggTrades", header=True, micros=False)
    dest = tmp_path / "jan.parquet"

    def fails_with(error: type[Exception], body: bytes) -> pytest.ExceptionInfo[Exception]:
        write_checksum(stored_zip(path, f"{name}.csv", body))
        with pytest.raises(error) as caught:
            ingest_binance(mirror, dest)
        assert not dest.exists()
        assert not dest.with_name(dest.name + ".part").exists()
        return caught

    lines = data.split(b"\n")
    bad = b"\n".join([*lines[:250], b"251,100.0,abc,251,251,1706000000000,true", *lines[251:]])
    caught = fails_with(MalformedCsvError, bad)  # after rows were written: the .part is gone
    assert caught.value.line == 251
    assert caught.value.file == f"{name}.zip"
    flipped = bytearray(stored_zip(path, f"{name}.csv", data).read_bytes())
    at = flipped.index(lines[200])
    flipped[at + 2 : at + 3] = b"7" if flipped[at + 2 : at + 3] != b"7" else b"8"
    path.write_bytes(bytes(flipped))
    write_checksum(path)
    with pytest.raises(CorruptArchiveError, match=r"BTCUSDT-aggTrades-2024-01\.zip"):
        ingest_binance(mirror, dest)  # a digit changed: the CSV reads, the CRC does not match
    assert not dest.exists()
    flipped[at + 2 : at + 3] = b"x"
    path.write_bytes(bytes(flipped))
    write_checksum(path)
    with pytest.raises(CorruptArchiveError) as corrupt:  # malformed, but the zip is corrupt
        ingest_binance(mirror, dest)
    assert isinstance(corrupt.value.__cause__, MalformedCsvError)
    assert not dest.exists()


def test_one_sided_trades_refused_while_streaming(mirror: Mirror, tiny: None, tmp_path: Path):
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 2, 1), 300, seed=18)
    name = "BTCUSDT-trades-2024-01"
    data = binance_csv(
        trades.with_columns(is_taker_buy=pl.lit(False)), "trades", header=False, micros=False
    )
    folder = mirror.root / "data/futures/um/monthly/trades/BTCUSDT"
    write_checksum(write_zip(folder / f"{name}.zip", f"{name}.csv", data))
    dest = tmp_path / "jan.parquet"
    with pytest.raises(ArchiveDefectError, match="is_buyer_maker true on every row"):
        ingest_binance(mirror, dest, dataset="trades")
    assert not dest.exists()


def test_a_busy_unordered_hour_is_sorted_minutes_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "SORT_ROWS", 5)
    trades = sample_trades(utc(2024, 1, 9, 13), utc(2024, 1, 9, 14), 90, seed=20)
    source = trades.sample(fraction=1, shuffle=True, seed=3)
    heights: list[int] = []

    def sort_trades(frame: pl.DataFrame) -> pl.DataFrame:
        heights.append(frame.height)
        return frame.sort("exchange_ts", "trade_id")

    monkeypatch.setattr(ingest, "sort_trades", sort_trades)
    report = FetchReport("", "", JAN)
    dest = tmp_path / "jan.parquet"
    with ingest.TradeSink(dest, report, START, END, workdir=tmp_path) as sink:
        for low in range(0, source.height, 8):
            sink.add(source.slice(low, 8))
        sink.commit()
    whole_report = FetchReport("", "", JAN)
    assert_frame_equal(pl.read_parquet(dest), clean_trades(source, whole_report, START, END))
    assert report.rows_reordered == whole_report.rows_reordered > 0
    busiest = trades.group_by(pl.col("exchange_ts").dt.minute()).len()["len"].max()
    assert len(heights) > 1
    assert max(heights) <= max(5, busiest)  # type: ignore[type-var]
    assert_layout(dest)


def test_seen_ids_match_a_set() -> None:
    rng = random.Random(19)
    seen, reference_set = SeenIds(), set()
    for step in range(200):
        spread = rng.choice([50, 10_000, 2**40])
        ids = list({rng.randrange(-spread, spread) for _ in range(rng.randrange(1, 60))})
        ids = sorted(ids) if step % 3 else ids
        new = seen.add(np.array(ids, dtype=np.int64))
        assert new.tolist() == [i not in reference_set for i in ids]
        reference_set.update(ids)


TIMES = [
    utc(2023, 12, 31, 23),
    utc(2024, 1, 1),
    utc(2024, 1, 1, 1),
    utc(2024, 1, 1, 1, 10),
    utc(2024, 1, 1, 1, 30),
    utc(2024, 1, 2, 6),
    utc(2024, 1, 3, 12),
    utc(2024, 1, 31, 23, 59),
    utc(2024, 2, 1),
]
ROW = st.tuples(st.integers(1, 5), st.integers(0, len(TIMES) - 1), st.booleans())


def policies_by_hand(rows: list[dict], start: datetime, end: datetime) -> tuple[list, dict]:
    """The row policies stated plainly: filters, first id in source order, descents, sort."""
    nonzero = [r for r in rows if r["base_qty"] > 0]
    inside = [r for r in nonzero if start <= r["exchange_ts"] < end]
    seen: set[int] = set()
    kept = []
    for row in inside:
        if row["trade_id"] not in seen:
            seen.add(row["trade_id"])
            kept.append(row)
    keys = [(r["exchange_ts"], r["trade_id"]) for r in kept]
    counts = {
        "rows_read": len(rows),
        "zero_quantity": len(rows) - len(nonzero),
        "outside_period": len(nonzero) - len(inside),
        "duplicate_id": len(inside) - len(kept),
        "rows_reordered": sum(b < a for a, b in pairwise(keys)),
    }
    return sorted(keys), counts


@settings(max_examples=100, deadline=None)
@given(
    drawn=st.lists(ROW, max_size=30),
    sizes=st.lists(st.integers(1, 6), max_size=10),
    row_group=st.integers(1, 4),
    slice_rows=st.integers(1, 4),
    max_runs=st.sampled_from([0, 2, 64]),
    hour_runs=st.sampled_from([0, 256]),
)
def test_batches_never_change_the_result(
    drawn: list[tuple[int, int, bool]],
    sizes: list[int],
    row_group: int,
    slice_rows: int,
    max_runs: int,
    hour_runs: int,
) -> None:
    """Shuffled, repeated and zeroed trades fed in random batches give the whole-frame result."""
    rows = [
        {
            "exchange_ts": TIMES[at],
            "arrival_ts": None,
            "trade_id": trade_id,
            "price": 100.0 + trade_id + at / 10,
            "base_qty": 0.0 if zero else 1.0 + trade_id / 10,
            "notional": 0.0 if zero else (100.0 + trade_id + at / 10) * (1.0 + trade_id / 10),
            "is_taker_buy": trade_id % 2 == 0,
        }
        for trade_id, at, zero in drawn
    ]
    source = pl.DataFrame(rows, schema=TRADE_SCHEMA)
    edges = sorted({0, len(rows), *(c for c in accumulate(sizes) if c < len(rows))})
    report = FetchReport("", "", JAN)
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as tmp:
        patch.setattr(ingest, "ROW_GROUP_ROWS", row_group)
        patch.setattr(ingest, "SORT_ROWS", slice_rows)
        patch.setattr(ingest, "MAX_OPEN_SPILLS", 1)
        patch.setattr(report_module, "MAX_RUNS", max_runs)  # ids hashed or run by run
        patch.setattr(ingest, "MAX_HOUR_RUNS", hour_runs)  # spilled grouped by hour or as come
        dest = Path(tmp) / "trades.parquet"
        with ingest.TradeSink(dest, report, START, END, workdir=Path(tmp)) as sink:
            for low, high in pairwise(edges):
                sink.add(source.slice(low, high - low))
            sink.add(source.clear())
            days = sink.commit()
        streamed = pl.read_parquet(dest)
        assert_layout(dest)
    whole_report = FetchReport("", "", JAN)
    whole = clean_trades(source, whole_report, START, END)
    assert_frame_equal(streamed, whole, check_exact=True)
    for name in (*REPORT_FIELDS, "last_trade"):
        assert getattr(report, name) == getattr(whole_report, name), name
    keys, counts = policies_by_hand(rows, START, END)
    assert list(zip(streamed["exchange_ts"], streamed["trade_id"], strict=True)) == keys
    assert report.rows_read == counts.pop("rows_read")
    assert report.rows_reordered == counts.pop("rows_reordered")
    assert report.rows_dropped == {k: v for k, v in counts.items() if v}
    assert days == sorted({ts.date() for ts, _ in keys})


def _file(*rows: tuple[int, int]) -> pl.DataFrame:
    """Rows ``(second of 2024-03-01 10:00, trade_id)`` in the order given."""
    return trades_frame([(utc(2024, 3, 1, 10, 0, s), i, 100.0, 1.0, True) for s, i in rows])


def _reordered(files: list[list[pl.DataFrame]], *, newest_first: bool) -> tuple[int, list[str]]:
    """``rows_reordered`` and defects after ``files`` (each a list of batches) in order."""
    report = FetchReport("x", BTC, None)
    policies = report_module.RowPolicies(report, newest_first=newest_first)
    for batches in files:
        policies.next_file()
        for batch in batches:
            policies.apply(batch)
    policies.finish()
    return report.rows_reordered, report.defects


def test_newest_first_files_count_only_rows_out_of_that_order() -> None:
    """Two files in exact reverse order (split across batches, equal times with descending ids)
    are normal; a row newer than the one before it in its file, or older than an earlier
    file's newest trade, is counted; an oldest-first venue counts descents as before."""
    day1 = [_file((9, 6), (9, 5), (7, 4)), _file((3, 3), (3, 2), (1, 1))]
    day2 = [_file((30, 12), (20, 11), (15, 10))]
    assert _reordered([day1, day2], newest_first=True) == (0, [])
    assert _reordered([day1, day2], newest_first=False)[0] == 7  # every descent of the files
    swapped = [_file((9, 6), (7, 4), (9, 5)), _file((3, 3), (3, 2), (1, 1))]  # (9, 5) > (7, 4)
    count, defects = _reordered([swapped, day2], newest_first=True)
    assert count == 1
    assert defects == ["1 rows out of the venue's newest-first file order; sorted"]
    overlapping = [_file((30, 12), (8, 11), (2, 10))]  # 8 s and 2 s: before day1's newest, 9 s
    assert _reordered([day1, overlapping], newest_first=True)[0] == 2
    ascending = [_file((1, 1), (3, 2), (3, 3), (7, 4))]  # an oldest-first file
    assert _reordered([ascending], newest_first=True)[0] == 3
