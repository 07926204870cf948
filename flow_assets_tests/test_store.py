"""The object store: key validation, atomic local writes, and an S3 round trip over a socket."""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets import store as store_mod
from flow_assets.metrics.schema import BAR_SCHEMA
from flow_assets.store import (
    LocalStore,
    MissingObjectError,
    S3Store,
    StoreError,
    check_key,
    flow_key,
    open_store,
    trades_key,
)
from flow_assets_tests.s3_fixtures import month_bars, s3_env, s3_server  # noqa: F401

JAN = date(2026, 1, 1)
SYMBOL = "perpetual-BTC-USDT:USDT"
KEY = flow_key("exchange", "binance-futures", "1d", SYMBOL, JAN)


# --------------------------------------------------------------------------- keys


def test_flow_key_layout() -> None:
    assert (
        flow_key("true", "okx-perps", "15s", "perpetual-BTC-USD:BTC", date(2025, 12, 31))
        == "flow/true/okx-perps/15s/perpetual-BTC-USD:BTC/2025-12.parquet"
    )
    assert trades_key("binance-futures", SYMBOL, datetime(2026, 3, 9, 5)) == (
        "trades/binance-futures/perpetual-BTC-USDT:USDT/2026-03.parquet"
    )


@pytest.mark.parametrize(
    "bad_symbol",
    ["../etc", "..", "a/b", "/abs", "", ".hidden", "a..b", "x" * 65, "a b", "a\\b", "a\x00b"],
)
def test_key_rejects_unsafe_names(bad_symbol: str) -> None:
    with pytest.raises(ValueError, match="invalid symbol"):
        flow_key("exchange", "binance-futures", "1h", bad_symbol, JAN)
    with pytest.raises(ValueError, match="invalid exchange"):
        trades_key(bad_symbol, SYMBOL, JAN)


def test_key_rejects_unknown_interval_timestamp_and_month() -> None:
    with pytest.raises(ValueError, match="unknown interval '2h'; supported: 1s"):
        flow_key("exchange", "binance-futures", "2h", SYMBOL, JAN)
    with pytest.raises(ValueError, match=r"unknown interval '\.\./x'"):
        flow_key("exchange", "binance-futures", "../x", SYMBOL, JAN)
    with pytest.raises(ValueError, match="unknown timestamp 'arrival'"):
        flow_key("arrival", "binance-futures", "1h", SYMBOL, JAN)
    with pytest.raises(ValueError, match=r"month must be a datetime\.date"):
        flow_key("exchange", "binance-futures", "1h", SYMBOL, "2026-01")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "a/", "./a"])
def test_store_methods_reject_unsafe_keys(tmp_path: Path, key: str) -> None:
    local = LocalStore(tmp_path / "root")
    with pytest.raises(ValueError, match="invalid key"):
        check_key(key)
    with pytest.raises(ValueError, match="invalid key"):
        local.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="invalid key"):
        local.get_bytes(key)
    assert not (tmp_path / "x").exists()


def test_local_key_must_resolve_inside_root(tmp_path: Path) -> None:
    """Defence in depth: a symlink inside the root pointing outside is refused."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "flow").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="outside the store root"):
        LocalStore(root).put_bytes(KEY, b"x")


# --------------------------------------------------------------------------- local


def test_local_write_is_atomic_and_idempotent(tmp_path: Path) -> None:
    local = open_store(str(tmp_path))
    frame = month_bars(JAN, "1d")
    first = local.write_parquet(KEY, frame, {"source": "test", "k": "5"})
    second = local.write_parquet(KEY, frame, {"source": "test", "k": "5"})
    assert first == second
    path = Path(first.uri)
    assert path.is_file()
    assert first.size == path.stat().st_size
    assert first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # no temp files left next to the object, and the listing only has the object
    assert os.listdir(path.parent) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644
    assert local.list_keys() == [KEY]
    assert local.list_keys("flow/exchange/binance-f") == [KEY]
    assert local.list_keys("trades/") == []
    assert_frame_equal(local.read_parquet(KEY), frame)
    assert local.read_parquet_metadata(KEY) == {"source": "test", "k": "5"}


def test_failed_serialisation_keeps_old_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalStore(tmp_path)
    old = month_bars(JAN, "1d")
    written = local.write_parquet(KEY, old)

    def broken_write(table: object, sink: object, **kwargs: object) -> None:
        sink.write(b"PAR1 partial")  # type: ignore[attr-defined]
        raise OSError("disk on fire")

    monkeypatch.setattr(store_mod.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk on fire"):
        local.write_parquet(KEY, month_bars(JAN, "1d", seed=7.0))
    monkeypatch.undo()
    assert_frame_equal(local.read_parquet(KEY), old)
    assert hashlib.sha256(local.get_bytes(KEY)).hexdigest() == written.sha256
    assert os.listdir(Path(written.uri).parent) == [Path(written.uri).name]


def test_failed_put_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalStore(tmp_path)
    local.put_bytes(KEY, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("replace failed")

    monkeypatch.setattr(store_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="replace failed"):
        local.put_bytes(KEY, b"new")
    monkeypatch.undo()
    assert local.get_bytes(KEY) == b"old"
    assert os.listdir(Path(local.uri(KEY)).parent) == ["2026-01.parquet"]


def test_missing_object_and_delete(tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    assert not local.exists(KEY)
    with pytest.raises(MissingObjectError, match=r"2026-01\.parquet") as info:
        local.get_bytes(KEY)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, LookupError)
    assert info.value.key == KEY
    local.put_bytes(KEY, b"x")
    assert local.exists(KEY)
    local.delete(KEY)
    local.delete(KEY)  # already gone: no error
    assert not local.exists(KEY)
    assert LocalStore(tmp_path / "never-created").list_keys() == []


def test_metadata_must_be_strings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="str -> str"):
        LocalStore(tmp_path).write_parquet(KEY, month_bars(JAN, "1d"), {"k": 5})  # type: ignore[dict-item]
    assert not LocalStore(tmp_path).exists(KEY)


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    assert open_store(f"file://{tmp_path}").url == str(tmp_path.resolve())
    monkeypatch.setenv("FLOW_ASSETS_STORAGE_URL", str(tmp_path / "env"))
    assert open_store().url == str((tmp_path / "env").resolve())
    monkeypatch.delenv("FLOW_ASSETS_STORAGE_URL")
    assert open_store().url == str(store_mod.DEFAULT_LOCAL_ROOT)
    assert (
        store_mod.DEFAULT_LOCAL_ROOT.parent.parent / "flow_assets"
        == Path(store_mod.__file__).resolve().parent
    )
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_store("gs://bucket/x")
    with pytest.raises(ValueError, match="non-empty"):
        open_store("  ")
    with pytest.raises(ValueError, match="invalid S3 bucket"):
        S3Store("Bad_Bucket", client=object())
    with pytest.raises(ValueError, match="invalid key"):
        S3Store("bucket", "a/../b", client=object())


# --------------------------------------------------------------------------- S3


def test_s3_round_trip(s3_env: str) -> None:  # noqa: F811
    s3 = open_store(s3_env)
    assert isinstance(s3, S3Store)
    assert s3.url == s3_env
    frame = month_bars(JAN, "1h")
    assert not s3.exists(KEY)
    with pytest.raises(MissingObjectError, match=r"perpetual-BTC-USDT:USDT/2026-01\.parquet"):
        s3.read_parquet(KEY)
    written = s3.write_parquet(KEY, frame, {"engine": "flow-assets", "window": "60"})
    assert written.uri == f"{s3_env}/{KEY}"
    assert s3.exists(KEY)
    data = s3.get_bytes(KEY)
    assert len(data) == written.size
    assert hashlib.sha256(data).hexdigest() == written.sha256
    result = s3.read_parquet(KEY)
    assert result.schema == pl.Schema(BAR_SCHEMA)
    assert_frame_equal(result, frame)
    assert s3.read_parquet_metadata(KEY) == {"engine": "flow-assets", "window": "60"}
    # overwrite is idempotent
    again = s3.write_parquet(KEY, frame, {"engine": "flow-assets", "window": "60"})
    assert again == written
    other = trades_key("okx-perps", "perpetual-BTC-USD:BTC", JAN)
    s3.put_bytes(other, b"raw")
    assert s3.list_keys() == sorted([KEY, other])
    assert s3.list_keys("trades/") == [other]
    s3.delete(other)
    assert s3.list_keys() == [KEY]


def test_s3_parquet_has_statistics_and_zstd(s3_env: str) -> None:  # noqa: F811
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    s3 = open_store(s3_env)
    s3.write_parquet(KEY, month_bars(JAN, "1d"))
    meta = pq.read_metadata(pa.BufferReader(s3.get_bytes(KEY)))
    column = meta.row_group(0).column(0)
    assert column.path_in_schema == "time"
    assert column.compression == "ZSTD"
    assert column.statistics is not None
    assert column.statistics.min == datetime(2026, 1, 1)
    assert column.statistics.max == datetime(2026, 1, 31)
