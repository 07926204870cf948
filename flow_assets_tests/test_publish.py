"""Publishing instrument-months as units: staged versions made visible by one manifest commit."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.metrics.intervals import ALL_INTERVALS
from flow_assets.publish import (
    FORMAT,
    MANIFEST,
    Manifest,
    PublishConflictError,
    PublishedFile,
    Staging,
    flow_file,
    list_manifests,
    manifest_key,
    read_manifest,
    remove_unreferenced,
)
from flow_assets.store import (
    TIMESTAMPS,
    LocalStore,
    MissingObjectError,
    ObjectStore,
    check_key,
    file_digest,
    open_store,
    unit_prefix,
    write_parquet_file,
)
from flow_assets_tests.s3_fixtures import month_bars

JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)
EXCHANGE, SYMBOL = "binance-futures", "perpetual-BTC-USDT:USDT"
UNIT = ("flow", EXCHANGE, SYMBOL, JAN)
PREFIX = unit_prefix(*UNIT)
NAMES = (flow_file("exchange", "1h"), flow_file("exchange", "1d"))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same tests on a local folder and on an S3 bucket (moto over a socket)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return open_store(request.getfixturevalue("s3_env"))


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def frames(seed: float) -> dict[str, pl.DataFrame]:
    """One frame per name of NAMES, distinct for each ``seed``."""
    return {name: month_bars(JAN, name.split("/")[1], seed=seed) for name in NAMES}


def stage(
    store: ObjectStore, workdir: Path, seed: float, unit: tuple = UNIT
) -> tuple[Staging, dict[str, pl.DataFrame]]:
    """A staging of ``unit`` holding the frames of ``seed``: one via a file, one via a frame."""
    staging = Staging(store, *unit)
    data = frames(seed)
    first, second = NAMES
    path = workdir / "first.parquet"
    write_parquet_file(data[first], path)
    staged = staging.put_file(first, path)
    assert (staged.rows, staged.size, staged.sha256) == (data[first].height, *file_digest(path))
    path.unlink()
    staging.write_parquet(second, data[second], workdir)
    assert list(workdir.iterdir()) == []  # the frame's temp file is gone
    return staging, data


def assert_serves(store: ObjectStore, manifest: Manifest, data: dict[str, pl.DataFrame]) -> None:
    """Every file ``manifest`` names is stored, matches its description and holds ``data``."""
    assert sorted(manifest.files) == sorted(data)
    for name, frame in data.items():
        described = manifest.files[name]
        assert manifest.key_of(name) == described.key
        unit = (manifest.kind, manifest.exchange, manifest.symbol, manifest.month)
        assert described.key.startswith(f"{unit_prefix(*unit)}/{manifest.version}/")
        stored = store.get_bytes(described.key)
        assert len(stored) == described.size
        assert described.rows == frame.height
        assert_frame_equal(store.read_parquet(described.key), frame)


def version_keys(store: ObjectStore, version: str, prefix: str = PREFIX) -> list[str]:
    return store.list_keys(f"{prefix}/{version}/")


# --------------------------------------------------------------------------- commit


def test_commit_makes_the_staged_files_visible_together(store: ObjectStore, workdir: Path) -> None:
    assert read_manifest(store, *UNIT) is None
    assert list_manifests(store, "flow") == []
    staging, data = stage(store, workdir, seed=1.0)
    # staged but not committed: stored under the version folder, yet invisible to readers
    assert sorted(version_keys(store, staging.version)) == sorted(
        f.key for f in staging.files.values()
    )
    assert read_manifest(store, *UNIT) is None
    assert list_manifests(store, "flow") == []
    assert not store.exists(manifest_key(*UNIT))

    manifest = staging.commit({"complete": True, "window": 60})
    assert manifest.version == staging.version
    assert manifest.previous_version is None
    assert (manifest.kind, manifest.exchange, manifest.symbol, manifest.month) == UNIT
    assert manifest.metadata == {"complete": True, "window": 60}
    assert manifest.published_at
    assert read_manifest(store, *UNIT) == manifest
    assert list_manifests(store, "flow") == [manifest]
    assert list_manifests(store, "trades") == []
    assert_serves(store, manifest, data)
    assert store.list_keys(f"{PREFIX}/") == sorted(
        [manifest_key(*UNIT), *(f.key for f in manifest.files.values())]
    )
    with pytest.raises(MissingObjectError, match="has no exchange/1m"):
        manifest.key_of(flow_file("exchange", "1m"))


def test_versions_are_kept_one_commit_then_removed(store: ObjectStore, workdir: Path) -> None:
    first, first_data = stage(store, workdir, seed=1.0)
    v1 = first.commit({"n": 1})
    held = read_manifest(store, *UNIT)  # a reader fetched the first manifest...
    assert held == v1

    second, second_data = stage(store, workdir, seed=2.0)
    assert read_manifest(store, *UNIT) == v1  # staged, not committed: the first is published
    assert list_manifests(store, "flow") == [v1]
    v2 = second.commit({"n": 2})
    assert v2.previous_version == v1.version
    assert read_manifest(store, *UNIT) == v2
    assert list_manifests(store, "flow") == [v2]
    assert_serves(store, v2, second_data)
    assert_serves(store, held, first_data)  # ...and can still read every file it names

    third, third_data = stage(store, workdir, seed=3.0)
    v3 = third.commit({"n": 3})
    assert v3.previous_version == v2.version
    assert read_manifest(store, *UNIT) == v3
    assert_serves(store, v3, third_data)
    assert_serves(store, v2, second_data)  # the version just replaced is kept
    assert version_keys(store, v1.version) == []  # the one before is gone
    for described in v1.files.values():
        assert not store.exists(described.key)
        with pytest.raises(MissingObjectError):
            store.read_parquet(described.key)
    assert store.list_keys(f"{PREFIX}/") == sorted(
        [manifest_key(*UNIT), *(f.key for m in (v2, v3) for f in m.files.values())]
    )
    assert store.get_json(manifest_key(*UNIT))["metadata"] == {"n": 3}


def test_killed_attempt_is_invisible_then_collected_other_units_untouched(
    store: ObjectStore, workdir: Path
) -> None:
    v1, _ = stage(store, workdir, seed=1.0)
    v1 = v1.commit({"n": 1})
    # neighbours: another symbol, another month, the trades of the same instrument-month (each
    # committed), and an attempt still staging another unit
    other_units = [
        ("flow", EXCHANGE, "perpetual-ETH-USDT:USDT", JAN),
        ("flow", EXCHANGE, SYMBOL, FEB),
        ("trades", EXCHANGE, SYMBOL, JAN),
    ]
    for unit in other_units:
        stage(store, workdir, seed=9.0, unit=unit)[0].commit({})
    in_progress, _ = stage(store, workdir, seed=8.0, unit=("flow", "okx-perps", SYMBOL, JAN))
    neighbours = sorted(k for k in store.list_keys() if not k.startswith(f"{PREFIX}/"))

    killed, _ = stage(store, workdir, seed=2.0)  # the run dies here: no commit, no discard
    killed_keys = sorted(f.key for f in killed.files.values())
    assert version_keys(store, killed.version) == killed_keys
    assert read_manifest(store, *UNIT) == v1
    manifests = list_manifests(store, "flow") + list_manifests(store, "trades")
    named = {f.key for m in manifests for f in m.files.values()}
    assert named.isdisjoint(killed_keys)
    assert [(m.exchange, m.symbol, m.month) for m in list_manifests(store, "flow")] == [
        (EXCHANGE, "perpetual-BTC-USDT:USDT", JAN),
        (EXCHANGE, "perpetual-BTC-USDT:USDT", FEB),
        (EXCHANGE, "perpetual-ETH-USDT:USDT", JAN),
    ]

    retry, retry_data = stage(store, workdir, seed=3.0)
    v2 = retry.commit({"n": 2})
    assert v2.previous_version == v1.version  # the killed attempt never became a version
    assert version_keys(store, killed.version) == []
    assert_serves(store, v2, retry_data)
    assert_serves(store, v1, frames(1.0))
    # every other unit, committed or still staging, is exactly as it was
    assert sorted(k for k in store.list_keys() if not k.startswith(f"{PREFIX}/")) == neighbours
    assert all(store.exists(f.key) for f in in_progress.files.values())


def test_commit_collects_the_temp_files_of_writes_killed_mid_copy(
    local: LocalStore, workdir: Path
) -> None:
    """A writer killed inside a local write leaves its hidden temp file (and, killed in its
    first write, a version folder holding only that): the next commit removes both, and keeps
    a live write of its own version and the unit's manifest write."""
    v1, _ = stage(local, workdir, seed=1.0)
    v1 = v1.commit({})
    unit = local.root / PREFIX
    killed = unit / "v20000101T000000000000-dead0000" / ".exchange-1h.parquet.x1.tmp"
    killed_in_staged = unit / "v20000101T000000000001-dead0001"
    killed_in_staged.mkdir(parents=True)
    (killed_in_staged / "exchange-1h.parquet").write_bytes(b"staged")
    (killed_in_staged / ".exchange-1d.parquet.x2.tmp").write_bytes(b"half")
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"half a file")
    retry, _ = stage(local, workdir, seed=2.0)
    own_write = unit / retry.version / ".state.parquet.x3.tmp"
    own_write.write_bytes(b"being written")
    manifest_write = unit / ".manifest.json.x4.tmp"
    manifest_write.write_bytes(b"{")
    retry.commit({})
    left = sorted(p.relative_to(unit).as_posix() for p in unit.rglob("*") if p.is_file())
    assert {name.split("/")[0] for name in left} == {
        MANIFEST, v1.version, retry.version, manifest_write.name
    }  # fmt: skip
    assert own_write.exists()
    assert not killed.parent.exists()
    assert not killed_in_staged.exists()


def test_first_commit_collects_a_killed_first_attempt(store: ObjectStore, workdir: Path) -> None:
    killed, _ = stage(store, workdir, seed=1.0)
    assert list_manifests(store, "flow") == []
    manifest, data = stage(store, workdir, seed=2.0)
    manifest = manifest.commit({})
    assert manifest.previous_version is None
    assert version_keys(store, killed.version) == []
    assert_serves(store, manifest, data)


def test_overlapping_attempt_never_publishes_missing_files(
    local: LocalStore, workdir: Path
) -> None:
    slow, _ = stage(local, workdir, seed=1.0)  # still running, not killed
    fast, _ = stage(local, workdir, seed=2.0)
    fast.commit({})  # removes the slow attempt's staged files as unreferenced
    with pytest.raises(PublishConflictError, match="already published"):
        slow.commit({})
    older, _ = stage(local, workdir, seed=3.0)
    newer, _ = stage(local, workdir, seed=4.0)
    older.commit({})  # removes the newer attempt's files, still being staged
    with pytest.raises(PublishConflictError, match="removed by another attempt"):
        newer.commit({})
    manifest = read_manifest(local, *UNIT)
    assert manifest is not None
    assert all(local.exists(f.key) for f in manifest.files.values())


def test_discard_removes_the_staged_files(store: ObjectStore, workdir: Path) -> None:
    published, _ = stage(store, workdir, seed=1.0)
    published = published.commit({})
    before = store.list_keys()
    staging, _ = stage(store, workdir, seed=2.0)
    assert len(version_keys(store, staging.version)) == len(NAMES)
    staging.discard()
    assert staging.files == {}
    assert version_keys(store, staging.version) == []
    assert store.list_keys() == before
    assert read_manifest(store, *UNIT) == published
    staging.discard()  # nothing left: no error


def test_remove_unreferenced_keeps_the_manifest_and_the_versions_asked(
    local: LocalStore, workdir: Path
) -> None:
    a, _ = stage(local, workdir, seed=1.0)
    b, _ = stage(local, workdir, seed=2.0)
    b.commit({})  # a never committed: b's commit removed it
    c, _ = stage(local, workdir, seed=3.0)
    removed = remove_unreferenced(local, PREFIX, {c.version})
    assert sorted(removed) == sorted(f.key for f in b.files.values())
    assert version_keys(local, a.version) == []
    assert local.list_keys(f"{PREFIX}/") == sorted(
        [manifest_key(*UNIT), *(f.key for f in c.files.values())]
    )


# --------------------------------------------------------------------------- manifest


def test_manifest_json_round_trip(local: LocalStore, workdir: Path) -> None:
    manifest = Manifest(
        kind="trades",
        exchange=EXCHANGE,
        symbol=SYMBOL,
        month=FEB,
        version="v20260102T030405123456-1a2b3c4d",
        files={"trades": PublishedFile(f"{PREFIX}/v1/trades.parquet", 10, 123, "ab" * 32)},
        metadata={"complete": False, "report": {"files": [{"name": "x.zip"}]}, "n": 1.5},
        published_at="2026-03-01T00:00:00+00:00",
        previous_version="v20251201T000000000000-00000000",
    )
    document = manifest.to_json()
    assert document["format"] == FORMAT
    assert document["month"] == "2026-02-01"
    assert document["files"]["trades"] == {
        "key": f"{PREFIX}/v1/trades.parquet",
        "rows": 10,
        "size": 123,
        "sha256": "ab" * 32,
    }
    assert Manifest.from_json(json.loads(json.dumps(document))) == manifest
    with pytest.raises(ValueError, match="unsupported manifest format 2"):
        Manifest.from_json({**document, "format": 2})
    with pytest.raises(ValueError, match="unsupported manifest format None"):
        Manifest.from_json({k: v for k, v in document.items() if k != "format"})
    # what commit stores is that document
    staging, _ = stage(local, workdir, seed=1.0)
    committed = staging.commit({"k": [1, 2]})
    assert local.get_json(manifest_key(*UNIT)) == committed.to_json()
    assert manifest_key(*UNIT) == f"{PREFIX}/{MANIFEST}"


def test_flow_file_names() -> None:
    names = {flow_file(t, i) for t in TIMESTAMPS for i in ALL_INTERVALS}
    assert len(names) == len(TIMESTAMPS) * len(ALL_INTERVALS)
    assert flow_file("true", "15s") == "true/15s"
    for name in names:
        check_key(f"{PREFIX}/v1/{name}.parquet")
    with pytest.raises(ValueError, match="unknown timestamp 'arrival'; supported: exchange, true"):
        flow_file("arrival", "1h")
    with pytest.raises(ValueError, match=r"unknown timestamp '\.\./x'"):
        flow_file("../x", "1h")
    with pytest.raises(ValueError, match="unknown interval '2h'; supported: 1s"):
        flow_file("exchange", "2h")
    with pytest.raises(ValueError, match=r"unknown interval '\.\./x'"):
        flow_file("exchange", "../x")


@pytest.mark.parametrize("bad", ["../etc", "..", "a/b", "", ".hidden", "a..b", "x" * 65, "a\x00b"])
def test_unsafe_names_are_refused(local: LocalStore, workdir: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid exchange"):
        Staging(local, "flow", bad, SYMBOL, JAN)
    with pytest.raises(ValueError, match="invalid symbol"):
        Staging(local, "trades", EXCHANGE, bad, JAN)
    with pytest.raises(ValueError, match="invalid symbol"):
        read_manifest(local, "flow", EXCHANGE, bad, JAN)
    with pytest.raises(ValueError, match="invalid exchange"):
        manifest_key("flow", bad, SYMBOL, JAN)
    with pytest.raises(ValueError, match="unknown kind"):
        Staging(local, "bars", EXCHANGE, SYMBOL, JAN)
    # a staged file's name cannot leave its version folder either
    staging = Staging(local, *UNIT)
    path = workdir / "f.parquet"
    write_parquet_file(month_bars(JAN, "1d"), path)
    for name in ("../../../x", "../manifest", "a//b", "/abs", "x/../../y"):
        with pytest.raises(ValueError, match="invalid key"):
            staging.put_file(name, path)
        with pytest.raises(ValueError, match="invalid key"):
            staging.write_parquet(name, month_bars(JAN, "1d"), workdir)
    assert staging.files == {}
    assert sorted(p.name for p in workdir.iterdir()) == ["f.parquet"]
    assert local.list_keys() == []
