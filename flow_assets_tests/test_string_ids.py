"""String trade ids (UUIDs): exact duplicate detection per UTC day, bounded memory, and the
month-wide check for an id kept on two days."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from flow_assets.sources.errors import ArchiveDefectError
from flow_assets.sources.idset import MAX_DAYS_IN_MEMORY, StringIds, uuid_text
from flow_assets.sources.mirror import sample_trades, utc
from flow_assets.sources.report import KEY_COLUMNS, FetchReport, clean_trades


def _keys(ids: list[uuid.UUID]) -> tuple[np.ndarray, np.ndarray]:
    hi = np.array([u.int >> 64 for u in ids], dtype=np.uint64)
    lo = np.array([u.int & (2**64 - 1) for u in ids], dtype=np.uint64)
    return hi, lo


def test_keys_are_exact_per_day_with_days_spilled_to_disk(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    days = {d: [uuid.UUID(int=int(x)) for x in rng.integers(0, 2**62, 500)] for d in range(6)}
    ids = StringIds(tmp_path)
    for day, keys in days.items():
        assert ids.add(day, *_keys(keys)).all()
        assert len(ids.days) <= MAX_DAYS_IN_MEMORY
    # day 0 waits on disk; its keys are known again when rows of it come back
    again = [*days[0][:10], uuid.UUID(int=7)]
    assert ids.add(0, *_keys(again)).tolist() == [False] * 10 + [True]
    assert ids.add(1, *_keys(days[0][:3])).tolist() == [True] * 3  # another day: new there
    count, examples = ids.repeated_across_days()
    assert count == 3
    assert {key for key, _ in examples} == {str(u) for u in days[0][:3]}
    assert all(found == [0, 1] for _, found in examples)


def test_keys_sharing_their_high_half_are_told_apart(tmp_path: Path) -> None:
    ids = StringIds(tmp_path)
    first = [uuid.UUID(int=(5 << 64) | n) for n in range(4)]
    assert ids.add(0, *_keys(first)).all()
    probe = [uuid.UUID(int=(5 << 64) | n) for n in (3, 9, 0)]
    assert ids.add(0, *_keys(probe)).tolist() == [False, True, False]
    assert uuid_text(5, 9) == str(uuid.UUID(int=(5 << 64) | 9))


def _with_keys(trades: pl.DataFrame, ids: list[uuid.UUID]) -> pl.DataFrame:
    hi, lo = _keys(ids)
    return trades.with_columns(
        pl.Series(KEY_COLUMNS[0], hi, dtype=pl.UInt64),
        pl.Series(KEY_COLUMNS[1], lo, dtype=pl.UInt64),
    )


def test_duplicate_rows_keep_the_first_and_the_keys_are_dropped() -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 1, 3), 40, seed=1)
    ids = [uuid.uuid4() for _ in range(40)]
    doubled = pl.concat([_with_keys(trades, ids), _with_keys(trades[5:9], ids[5:9])])
    report = FetchReport("bybit-perps", "perpetual-BTC-USDT:USDT", None)
    kept = clean_trades(doubled, report)
    assert report.rows_dropped == {"duplicate_id": 4}
    assert kept.columns == trades.columns
    assert kept.equals(trades)


def test_an_id_on_two_days_refuses_the_period_naming_it() -> None:
    trades = sample_trades(utc(2024, 1, 1), utc(2024, 1, 2), 10, seed=2)
    later = trades[:1].with_columns(pl.col("exchange_ts") + timedelta(days=2))
    ids = [uuid.uuid4() for _ in range(10)]
    report = FetchReport("bybit-perps", "perpetual-BTC-USDT:USDT", None)
    frame = pl.concat([_with_keys(trades, ids), _with_keys(later, ids[:1])])
    with pytest.raises(ArchiveDefectError, match=str(ids[0])):
        clean_trades(frame, report)
