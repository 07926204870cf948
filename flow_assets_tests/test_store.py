"""The object store: key validation, atomic streamed writes, and S3 over a socket (moto)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import tracemalloc
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets import store as store_mod
from flow_assets.metrics.schema import BAR_SCHEMA
from flow_assets.store import (
    LocalStore,
    MissingObjectError,
    ObjectStore,
    S3Store,
    StoreError,
    check_key,
    file_digest,
    open_store,
    summary_key,
    unit_prefix,
    write_parquet_file,
)
from flow_assets_tests.s3_fixtures import month_bars, moto_client

JAN = date(2026, 1, 1)
SYMBOL = "perpetual-BTC-USDT:USDT"
UNIT = unit_prefix("flow", "binance-futures", SYMBOL, JAN)
KEY = f"{UNIT}/v1/exchange/1d.parquet"
MIB = 1 << 20


class InjectedError(Exception):
    """A failure a test provokes on purpose."""


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private folder for the ``tempfile`` module, to check nothing is left behind in it."""
    root = tmp_path / "tempfiles"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def big_file(path: Path, size: int) -> Path:
    """A file of ``size`` pseudo-random bytes (no two MiB blocks alike), written in blocks."""
    with path.open("wb") as out:
        for i in range(0, size, MIB):
            out.write(hashlib.sha256(str(i).encode()).digest() * 32 * 1024)
        out.truncate(size)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UnreachableClient:
    """An S3 client stand-in whose every method fails the test when called."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            pytest.fail(f"the S3 client was called: {name}")

        return call


def record_s3_calls(s3: S3Store) -> list[tuple[str, Any]]:
    """(operation, type of the request body) of every S3 call the store's client makes from now."""
    calls: list[tuple[str, Any]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, type(params.get("Body"))))

    s3.client.meta.events.register("before-parameter-build.s3", record)
    return calls


# --------------------------------------------------------------------------- keys


def test_unit_prefix_and_summary_key_layout() -> None:
    assert (
        unit_prefix("flow", "okx-perps", "perpetual-BTC-USD:BTC", date(2025, 12, 31))
        == "flow/okx-perps/perpetual-BTC-USD:BTC/2025-12"
    )
    assert unit_prefix("trades", "binance-futures", SYMBOL, datetime(2026, 3, 9, 5)) == (
        "trades/binance-futures/perpetual-BTC-USDT:USDT/2026-03"
    )
    assert summary_key("daily", JAN) == "summary/daily/2026-01.parquet"
    longest = "x" * store_mod.MAX_NAME_LENGTH
    assert unit_prefix("trades", longest, longest, JAN) == f"trades/{longest}/{longest}/2026-01"
    assert check_key(f"{UNIT}/v1/exchange/1d.parquet") == KEY


@pytest.mark.parametrize(
    "bad_name",
    ["../etc", "..", "a/b", "/abs", "", ".hidden", "a..b", "x" * 65, "a b", "a\\b", "a\x00b"],
)
def test_unit_prefix_rejects_unsafe_names(bad_name: str) -> None:
    for kind in ("flow", "trades"):
        with pytest.raises(ValueError, match="invalid symbol"):
            unit_prefix(kind, "binance-futures", bad_name, JAN)
        with pytest.raises(ValueError, match="invalid exchange"):
            unit_prefix(kind, bad_name, SYMBOL, JAN)
    with pytest.raises(ValueError, match="invalid summary"):
        summary_key(bad_name, JAN)


def test_unit_prefix_rejects_non_strings_unknown_kind_and_month() -> None:
    with pytest.raises(ValueError, match="symbol must be a string"):
        unit_prefix("flow", "binance-futures", 5, JAN)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind 'bars'; supported: trades, flow"):
        unit_prefix("bars", "binance-futures", SYMBOL, JAN)
    with pytest.raises(ValueError, match=r"unknown kind '\.\./x'"):
        unit_prefix("../x", "binance-futures", SYMBOL, JAN)
    with pytest.raises(ValueError, match=r"month must be a datetime\.date"):
        unit_prefix("flow", "binance-futures", SYMBOL, "2026-01")  # type: ignore[arg-type]


UNSAFE_KEYS = [
    "../x",
    "a/../../x",
    "/etc/passwd",
    "",
    "a//b",
    "a/",
    "./a",
    "a/./b",
    "a/..",
    "a\x00b",
    "a/b\x00",
    "x" * 129,
    "a/" + "x" * 129,
    "a\\..\\x",
    "a/ b",
]


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_store_methods_reject_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        check_key(key)
    source = tmp_path / "source"
    source.write_bytes(b"x")
    local = LocalStore(tmp_path / "root")
    s3 = S3Store("bucket", client=UnreachableClient())
    for store in (local, s3):
        calls = [
            lambda st: st.put_bytes(key, b"x"),
            lambda st: st.put_file(key, source),
            lambda st: st.write_file(key, source),
            lambda st: st.write_parquet(key, month_bars(JAN, "1d")),
            lambda st: st.put_json(key, {}),
            lambda st: st.get_bytes(key),
            lambda st: st.get_json(key),
            lambda st: st.exists(key),
            lambda st: st.delete(key),
            lambda st: st.uri(key),
            lambda st: st.local_copy(key).__enter__(),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="invalid key"):
                call(store)
    with pytest.raises(ValueError, match="invalid key"):
        s3.presigned_url(key, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


@pytest.mark.parametrize("prefix", ["../", "..", "a/../", "/etc", "a//", "./", "a/.", "a\x00"])
def test_listing_rejects_unsafe_prefixes(tmp_path: Path, prefix: str) -> None:
    for store in (LocalStore(tmp_path), S3Store("bucket", client=UnreachableClient())):
        with pytest.raises(ValueError, match="invalid key"):
            store.list_keys(prefix)


def test_local_key_must_resolve_inside_root(tmp_path: Path) -> None:
    """Defence in depth: a symlink inside the root pointing outside is refused."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "flow").symlink_to(tmp_path)
    source = tmp_path / "source"
    source.write_bytes(b"x")
    local = LocalStore(root)
    with pytest.raises(ValueError, match="outside the store root"):
        local.put_bytes(KEY, b"x")
    with pytest.raises(ValueError, match="outside the store root"):
        local.put_file(KEY, source)
    with pytest.raises(ValueError, match="outside the store root"), local.local_copy(KEY):
        pass
    assert not (tmp_path / "binance-futures").exists()


# --------------------------------------------------------------------------- local


def test_local_write_is_atomic_and_idempotent(tmp_path: Path, tmp_root: Path) -> None:
    local = open_store(str(tmp_path / "store"))
    frame = month_bars(JAN, "1d")
    first = local.write_parquet(KEY, frame, {"source": "test", "k": "5"})
    second = local.write_parquet(KEY, frame, {"source": "test", "k": "5"})
    assert first == second
    path = Path(first.uri)
    assert path.is_file()
    assert first.size == path.stat().st_size
    assert first.sha256 == sha256(path.read_bytes())
    # no temp files left next to the object nor in the temp folder, and the listing has the object
    assert os.listdir(path.parent) == [path.name]
    assert os.listdir(tmp_root) == []
    assert path.stat().st_mode & 0o777 == 0o644
    assert local.list_keys() == [KEY]
    assert local.list_keys("flow/binance-f") == [KEY]
    assert local.list_keys(f"{UNIT}/") == [KEY]
    assert local.list_keys(f"{UNIT}/v1/exchange/1d.parquet") == [KEY]
    assert local.list_keys("flow/binance-futures/other") == []
    assert local.list_keys("trades/") == []
    assert_frame_equal(local.read_parquet(KEY), frame)
    footer = pq.read_schema(path).metadata
    assert footer[b"source"] == b"test"
    assert footer[b"k"] == b"5"


def test_write_parquet_file_zstd_statistics_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    write_parquet_file(month_bars(JAN, "1d"), path, {"engine": "flow-assets"})
    meta = pq.read_metadata(path)
    column = meta.row_group(0).column(0)
    assert column.path_in_schema == "time"
    assert column.compression == "ZSTD"
    assert column.statistics is not None
    assert column.statistics.min == datetime(2026, 1, 1)
    assert column.statistics.max == datetime(2026, 1, 31)
    assert meta.metadata[b"engine"] == b"flow-assets"
    assert file_digest(path) == (path.stat().st_size, sha256(path.read_bytes()))


def test_failed_serialisation_keeps_old_object(
    tmp_path: Path, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = LocalStore(tmp_path / "store")
    old = month_bars(JAN, "1d")
    written = local.write_parquet(KEY, old)

    def broken_write(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 partial")
        raise OSError("disk on fire")

    monkeypatch.setattr(store_mod.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk on fire"):
        local.write_parquet(KEY, month_bars(JAN, "1d", seed=7.0))
    monkeypatch.undo()
    assert_frame_equal(local.read_parquet(KEY), old)
    assert sha256(local.get_bytes(KEY)) == written.sha256
    assert os.listdir(Path(written.uri).parent) == [Path(written.uri).name]
    assert os.listdir(tmp_root) == []


def test_failed_put_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalStore(tmp_path / "store")
    local.put_bytes(KEY, b"old")
    source = tmp_path / "source"
    source.write_bytes(b"new")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("replace failed")

    monkeypatch.setattr(store_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="replace failed"):
        local.put_bytes(KEY, b"new")
    with pytest.raises(OSError, match="replace failed"):
        local.put_file(KEY, source)
    monkeypatch.undo()
    assert local.get_bytes(KEY) == b"old"
    assert os.listdir(Path(local.uri(KEY)).parent) == ["1d.parquet"]


def test_local_put_file_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mid-copy, readers still see the whole old object; a failed copy leaves it in place."""
    local = LocalStore(tmp_path / "store")
    local.put_bytes(KEY, b"old")
    source = big_file(tmp_path / "source", 3 * MIB + 5)
    real_copy = shutil.copyfileobj
    seen_mid_copy: list[Any] = []

    def observed_copy(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(MIB))  # a first block is in the temp file...
        dst.flush()
        seen_mid_copy.append((local.get_bytes(KEY), local.list_keys(), local.exists(KEY)))
        real_copy(src, dst, length)

    monkeypatch.setattr(store_mod.shutil, "copyfileobj", observed_copy)
    local.put_file(KEY, source)
    assert seen_mid_copy == [(b"old", [KEY], True)]
    assert local.get_bytes(KEY) == source.read_bytes()
    path = Path(local.uri(KEY))
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(path.parent) == [path.name]

    def broken_copy(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(MIB))
        raise OSError("source vanished")

    monkeypatch.setattr(store_mod.shutil, "copyfileobj", broken_copy)
    with pytest.raises(OSError, match="source vanished"):
        local.put_file(KEY, tmp_path / "source")
    assert sha256(local.get_bytes(KEY)) == sha256(source.read_bytes())
    assert os.listdir(path.parent) == [path.name]


def test_local_write_file_streams(tmp_path: Path) -> None:
    """A 24 MiB file is digested and stored without ever holding it in memory whole."""
    local = LocalStore(tmp_path / "store")
    source = big_file(tmp_path / "source", 24 * MIB + 1)
    tracemalloc.start()
    try:
        written = local.write_file(KEY, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert written.size == 24 * MIB + 1
    assert written.sha256 == sha256(source.read_bytes())
    assert sha256(Path(local.uri(KEY)).read_bytes()) == written.sha256
    assert written.uri == str(tmp_path / "store" / KEY)


def test_local_copy_of_a_local_store_is_the_object_itself(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "store")
    local.put_bytes(KEY, b"bars")
    with local.local_copy(KEY) as path:
        assert path == Path(local.uri(KEY))
        assert path.read_bytes() == b"bars"
    assert local.get_bytes(KEY) == b"bars"  # not removed after the block
    with pytest.raises(MissingObjectError) as info, local.local_copy(f"{UNIT}/v1/none.parquet"):
        pass
    assert info.value.key == f"{UNIT}/v1/none.parquet"
    with pytest.raises(MissingObjectError), local.local_copy(UNIT):  # a folder is no object
        pass
    with pytest.raises(NotImplementedError, match="LocalStore cannot presign"):
        local.presigned_url(KEY, 60)


def test_missing_object_and_delete(tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    assert not local.exists(KEY)
    with pytest.raises(MissingObjectError, match=r"1d\.parquet") as info:
        local.get_bytes(KEY)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, LookupError)
    assert info.value.key == KEY
    with pytest.raises(MissingObjectError):
        local.get_bytes(UNIT)  # a folder is no object
    local.put_bytes(KEY, b"x")
    assert local.exists(KEY)
    assert not local.exists(UNIT)
    local.delete(KEY)
    local.delete(KEY)  # already gone: no error
    assert not local.exists(KEY)
    assert LocalStore(tmp_path / "never-created").list_keys() == []


def test_metadata_must_be_strings_and_not_reserved(tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    with pytest.raises(ValueError, match="str -> str"):
        local.write_parquet(KEY, month_bars(JAN, "1d"), {"k": 5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="reserved"):
        local.write_parquet(KEY, month_bars(JAN, "1d"), {"ARROW:schema": "x"})
    assert not local.exists(KEY)


def json_round_trip(store: ObjectStore) -> None:
    key = f"{UNIT}/manifest.json"
    with pytest.raises(MissingObjectError):
        store.get_json(key)
    document = {"version": "v1", "files": {"exchange/1d": {"rows": 31}}, "note": "ü", "n": None}
    store.put_json(key, document)
    assert store.get_json(key) == document
    store.put_json(key, [1, 2.5, "x"])
    assert store.get_json(key) == [1, 2.5, "x"]
    with pytest.raises(TypeError):
        store.put_json(key, {"when": datetime(2026, 1, 1)})  # not JSON: nothing is written
    assert store.get_json(key) == [1, 2.5, "x"]
    assert store.list_keys(f"{UNIT}/") == [key]


def test_local_json_round_trip(tmp_path: Path) -> None:
    json_round_trip(LocalStore(tmp_path))
    assert [p.name for p in (tmp_path / UNIT).iterdir()] == ["manifest.json"]


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    assert open_store(f"file://{tmp_path}").url == str(tmp_path.resolve())
    assert open_store(f"file://localhost{tmp_path}").url == str(tmp_path.resolve())
    assert open_store(f"  {tmp_path}  ").url == str(tmp_path.resolve())
    monkeypatch.setenv("FLOW_ASSETS_STORAGE_URL", str(tmp_path / "env"))
    assert open_store().url == str((tmp_path / "env").resolve())
    monkeypatch.delenv("FLOW_ASSETS_STORAGE_URL")
    assert open_store().url == str(store_mod.DEFAULT_LOCAL_ROOT)
    assert (
        store_mod.DEFAULT_LOCAL_ROOT.parent.parent / "flow_assets"
        == Path(store_mod.__file__).resolve().parent
    )
    client = object()
    s3 = open_store("s3://my-bucket/a/b/", s3_client=client)
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.url, s3.client) == (
        "my-bucket",
        "a/b",
        "s3://my-bucket/a/b",
        client,
    )
    assert s3.uri(KEY) == f"s3://my-bucket/a/b/{KEY}"
    bare = open_store("s3://my-bucket", s3_client=client)
    assert (bare.url, bare.uri(KEY)) == ("s3://my-bucket", f"s3://my-bucket/{KEY}")
    with pytest.raises(ValueError, match="remote host"):
        open_store("file://server/share")
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_store("gs://bucket/x")
    with pytest.raises(ValueError, match="non-empty"):
        open_store("  ")
    with pytest.raises(ValueError, match="invalid S3 bucket"):
        S3Store("Bad_Bucket", client=object())
    with pytest.raises(ValueError, match="invalid S3 bucket"):
        open_store("s3://", s3_client=object())
    with pytest.raises(ValueError, match="invalid key"):
        S3Store("bucket", "a/../b", client=object())


# --------------------------------------------------------------------------- S3


def test_s3_round_trip(s3_env: str) -> None:
    s3 = open_store(s3_env)  # boto3's default chain: AWS_ENDPOINT_URL points at moto
    assert isinstance(s3, S3Store)
    assert s3.url == s3_env
    frame = month_bars(JAN, "1h")
    assert not s3.exists(KEY)
    with pytest.raises(MissingObjectError, match=r"exchange/1d\.parquet") as info:
        s3.read_parquet(KEY)
    assert info.value.key == KEY
    written = s3.write_parquet(KEY, frame, {"engine": "flow-assets", "window": "60"})
    assert written.uri == f"{s3_env}/{KEY}"
    assert s3.exists(KEY)
    data = s3.get_bytes(KEY)
    assert len(data) == written.size
    assert sha256(data) == written.sha256
    result = s3.read_parquet(KEY)
    assert result.schema == pl.Schema(BAR_SCHEMA)
    assert_frame_equal(result, frame)
    with s3.local_copy(KEY) as path:
        footer = pq.read_schema(path).metadata
    assert (footer[b"engine"], footer[b"window"]) == (b"flow-assets", b"60")
    # overwrite is idempotent
    again = s3.write_parquet(KEY, frame, {"engine": "flow-assets", "window": "60"})
    assert again == written
    other = f"{unit_prefix('trades', 'okx-perps', 'perpetual-BTC-USD:BTC', JAN)}/v1/trades.parquet"
    s3.put_bytes(other, b"raw")
    assert s3.list_keys() == sorted([KEY, other])
    assert s3.list_keys("trades/") == [other]
    assert s3.list_keys("flow/binance-f") == [KEY]
    assert s3.list_keys(f"{UNIT}/v1/") == [KEY]
    # the store's prefix is honoured: every object lives under it in the bucket
    bucket_keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert sorted(bucket_keys) == sorted(f"flow-assets/{k}" for k in (KEY, other))
    s3.delete(other)
    s3.delete(other)  # already gone: no error
    assert s3.list_keys() == [KEY]


def test_s3_parquet_has_statistics_and_zstd(s3_env: str) -> None:
    import pyarrow as pa  # noqa: PLC0415

    s3 = open_store(s3_env)
    s3.write_parquet(KEY, month_bars(JAN, "1d"))
    meta = pq.read_metadata(pa.BufferReader(s3.get_bytes(KEY)))
    column = meta.row_group(0).column(0)
    assert column.path_in_schema == "time"
    assert column.compression == "ZSTD"
    assert column.statistics is not None
    assert column.statistics.min == datetime(2026, 1, 1)
    assert column.statistics.max == datetime(2026, 1, 31)


def test_s3_put_file_is_one_streamed_put(s3_env: str, tmp_path: Path) -> None:
    s3 = open_store(s3_env)
    assert isinstance(s3, S3Store)
    source = big_file(tmp_path / "source", 2 * MIB + 3)
    calls = record_s3_calls(s3)
    written = s3.write_file(KEY, source)
    # one PutObject whose body is read from the file, not the file's bytes in memory
    assert [name for name, _ in calls] == ["PutObject"]
    assert not issubclass(calls[0][1], (bytes, bytearray, memoryview))
    assert s3.get_bytes(KEY) == source.read_bytes()
    assert (written.size, written.sha256) == (2 * MIB + 3, sha256(source.read_bytes()))
    assert written.uri == f"{s3_env}/{KEY}"
    etag = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{KEY}")["ETag"]
    assert "-" not in etag


def test_s3_multipart_upload(
    s3_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_mod, "MULTIPART_BYTES", 5 * MIB)  # S3's minimum part size
    s3 = open_store(s3_env)
    assert isinstance(s3, S3Store)
    source = big_file(tmp_path / "source", 12 * MIB + 7)
    calls = record_s3_calls(s3)
    s3.put_file(KEY, source)
    names = [name for name, _ in calls]
    assert names == ["CreateMultipartUpload", *["UploadPart"] * 3, "CompleteMultipartUpload"]
    assert all(not issubclass(body, bytes) for name, body in calls if name == "UploadPart")
    assert sha256(s3.get_bytes(KEY)) == sha256(source.read_bytes())
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{KEY}")
    assert head["ContentLength"] == 12 * MIB + 7
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object: 5 + 5 + 2 MiB parts


def test_s3_failed_multipart_upload_keeps_old_object(
    s3_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_mod, "MULTIPART_BYTES", 5 * MIB)
    s3 = open_store(s3_env)
    assert isinstance(s3, S3Store)
    s3.put_bytes(KEY, b"old")

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 2:
            raise InjectedError("connection lost")

    s3.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_second_part)
    with pytest.raises(InjectedError, match="connection lost"):
        s3.put_file(KEY, big_file(tmp_path / "source", 12 * MIB))
    assert s3.get_bytes(KEY) == b"old"
    assert s3.list_keys() == [KEY]
    # the incomplete upload was aborted: no parts left billed in the bucket
    assert "Uploads" not in s3.client.list_multipart_uploads(Bucket=s3.bucket)


def test_s3_local_copy(s3_env: str, tmp_root: Path) -> None:
    s3 = open_store(s3_env)
    s3.put_bytes(KEY, b"bars")
    with s3.local_copy(KEY) as path:
        assert path.read_bytes() == b"bars"
        assert path.name == "1d.parquet"
        assert path.is_relative_to(tmp_root)
    assert not path.exists()
    assert os.listdir(tmp_root) == []
    with pytest.raises(InjectedError), s3.local_copy(KEY) as path:
        raise InjectedError
    assert os.listdir(tmp_root) == []
    missing = f"{UNIT}/v1/none.parquet"
    with pytest.raises(MissingObjectError, match=r"none\.parquet") as info, s3.local_copy(missing):
        pytest.fail("the block must not run")
    assert info.value.key == f"{UNIT}/v1/none.parquet"
    assert os.listdir(tmp_root) == []
    assert s3.get_bytes(KEY) == b"bars"  # the object itself is untouched


def test_s3_presigned_url(s3_env: str) -> None:
    s3 = open_store(s3_env)
    data = bytes(range(256)) * 100
    s3.put_bytes(KEY, data)
    url = s3.presigned_url(KEY, 60)
    assert url.startswith("http")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == data
    missing = requests.get(s3.presigned_url(f"{UNIT}/v1/none.parquet", 60), timeout=10)
    assert missing.status_code == 404


def test_s3_json_round_trip(s3_env: str) -> None:
    json_round_trip(open_store(s3_env))


def test_open_store_uses_the_given_s3_client(
    s3_env: str,
    s3_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the environment now points nowhere: only the given client can reach the server
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    client = moto_client(s3_server)
    s3 = open_store(s3_env, s3_client=client)
    assert isinstance(s3, S3Store)
    assert s3.client is client
    calls = record_s3_calls(s3)
    s3.put_bytes(KEY, b"x")
    s3.put_json(f"{UNIT}/manifest.json", {"v": 1})
    assert s3.get_bytes(KEY) == b"x"
    assert s3.list_keys() == sorted([KEY, f"{UNIT}/manifest.json"])
    assert [name for name, _ in calls] == ["PutObject", "PutObject", "GetObject", "ListObjectsV2"]
    assert client.get_object(Bucket=s3.bucket, Key=f"flow-assets/{KEY}")["Body"].read() == b"x"
