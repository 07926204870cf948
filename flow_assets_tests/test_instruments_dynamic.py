"""Instruments as data: catalog assets, the dynamic instrument dimension, tracked months."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from flow_assets.catalog import load_catalog
from flow_assets.catalog.mirror import CatalogServer
from flow_assets.catalog.model import INSTRUMENT_SCHEMA
from flow_assets.instruments import InstrumentEntry, InstrumentsConfig, SelectionRule, parse_config
from flow_assets.orchestration.catalog import (
    CatalogApi,
    InstrumentsFile,
    register_instruments,
    run_instruments_sensor,
)
from flow_assets.orchestration.definitions import build_definitions
from flow_assets.orchestration.resources import ArchiveSources, FlowStore
from flow_assets.publish import read_manifest
from flow_assets.sources.mirror import sample_trades
from flow_assets.tracked import (
    KeyRefusedError,
    check_instrument,
    resolve_instruments,
    tracked_entries,
)
from flow_assets.venues import VENUES
from flow_assets.venues.binance_common import binance_exchange_info, binance_symbol
from flow_assets.venues.okx_perps import okx_instrument, okx_instruments, write_okx
from flow_assets_tests.runs import failure_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = parse_config(
    {
        "instruments": [{"exchange": "okx-perps", "symbol": "perpetual-BTC-USDT:USDT"}],
        "select": [{"exchange": "binance-futures", "settle": "USDT"}],
    }
)


def _at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _binance(*extra: dict, eth_delivery: datetime | None = None, xrp: bool = True) -> dict:
    symbols = [
        binance_symbol("BTCUSDT", "BTC", "USDT", onboard=_at(2019, 9, 8)),
        binance_symbol(
            "ETHUSDT",
            "ETH",
            "USDT",
            onboard=_at(2019, 11, 27),
            delivery=eth_delivery,
            status="SETTLING" if eth_delivery else "TRADING",
        ),
        binance_symbol("BTCUSDC", "BTC", "USDC", onboard=_at(2024, 1, 4)),  # not selected
        binance_symbol("币安人生USDT", "币安人生", "USDT", onboard=_at(2025, 10, 8)),  # no Atlas id
    ]
    if xrp:
        symbols.append(binance_symbol("XRPUSDT", "XRP", "USDT", onboard=_at(2020, 1, 6)))
    return binance_exchange_info([*symbols, *extra], T0)


def _okx(ct_val: str) -> dict:
    return okx_instruments([okx_instrument("BTC-USDT-SWAP", ct_val, listed=_at(2019, 12, 10))])


def _documents(binance: dict, okx: dict) -> dict:
    """The catalogs served: these Binance USD-M and OKX answers, every other venue's sample."""
    samples = {name: v.catalog.sample() for name, v in VENUES.items()}
    return samples | {"binance-futures": binance, "okx-perps": okx}


def _api(server: CatalogServer) -> CatalogApi:
    """Every venue's metadata API at ``server``."""
    return CatalogApi(urls=dict.fromkeys(VENUES, server.url), candle_pace=0)


def _keys(instance: dg.DagsterInstance, name: str) -> list[str]:
    return sorted(instance.get_dynamic_partitions(name))


def _metadata(result, exchange_slug: str) -> dict:
    [m] = result.asset_materializations_for_node(f"{exchange_slug}__instrument_catalog")
    return {k: v.value for k, v in m.metadata.items()}


@pytest.fixture
def store(tmp_path) -> FlowStore:
    return FlowStore(url=str(tmp_path / "store"))


def test_catalog_snapshots_drive_partitions_and_months(store) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with CatalogServer(_documents(_binance(), _okx("0.01"))) as server:
        api = _api(server)
        defs = build_definitions(CONFIG, {"catalog_api": api, "store": store})
        catalog_job = defs.resolve_job_def("instrument_catalog_job")
        first = catalog_job.execute_in_process(instance=instance)
        assert first.success
        snapshot = _metadata(first, "binance_futures")
        assert snapshot["instruments_listed"] == 5
        # The first snapshot compares with nothing: no list of "delistings" beside it.
        assert snapshot["first_snapshot"] is True
        assert "delistings" not in snapshot
        assert snapshot["changes_since_previous_snapshot"].startswith("none: first snapshot")
        columns = snapshot["dagster/column_schema"].columns
        assert [c.name for c in columns][:3] == ["exchange", "native", "symbol"]
        assert all(c.description for c in columns)
        assert "| BTCUSDT | perpetual-BTC-USDT:USDT | linear |" in snapshot["preview"]
        assert run_instruments_sensor(defs, instance).dynamic_partitions_requests
        assert _keys(instance, "binance_futures_instruments") == [
            "BTC-USDT:USDT",
            "ETH-USDT:USDT",
            "XRP-USDT:USDT",
        ]  # BTCUSDC not selected; the non-Atlas symbol refused, never added
        assert _keys(instance, "okx_perps_instruments") == ["BTC-USDT:USDT"]

        # A day later: SOL listed mid-March 2024, ETH's delisting announced for 2024-05-10,
        # XRP gone from the listing, OKX's contract value changed.
        server.documents["binance-futures"] = _binance(
            binance_symbol("SOLUSDT", "SOL", "USDT", onboard=_at(2024, 3, 17, 12)),
            eth_delivery=_at(2024, 5, 10, 8),
            xrp=False,
        )
        server.documents["okx-perps"] = _okx("0.001")
        second = catalog_job.execute_in_process(instance=instance)
        assert second.success
        binance = _metadata(second, "binance_futures")
        assert binance["first_snapshot"] is False
        assert binance["new_listings"] == ["SOLUSDT"]
        assert binance["delistings"] == ["ETHUSDT", "XRPUSDT"]
        assert binance["contract_value_changes"] == []
        assert binance["stored_keys"][0].endswith("catalog/binance-futures/instruments.parquet")
        okx = _metadata(second, "okx_perps")
        assert okx["contract_value_changes"] == ["BTC-USDT-SWAP"]
    history = load_catalog(store.open(), "okx-perps").contracts
    values = history.filter(pl.col("native") == "BTC-USDT-SWAP")["ct_val"].to_list()
    assert values[-2:] == [0.01, 0.001]  # after the seed's 2020 values

    run_instruments_sensor(defs, instance)
    assert _keys(instance, "binance_futures_instruments") == [
        "BTC-USDT:USDT",
        "ETH-USDT:USDT",  # delisted: its history stays, nothing is deleted
        "SOL-USDT:USDT",
        "XRP-USDT:USDT",
    ]
    tracked = {e.symbol: e for e in tracked_entries(store.open(), "binance-futures")}
    now = datetime.now(UTC)
    assert tracked["perpetual-SOL-USDT:USDT"].start == date(2024, 3, 1)  # its listing month
    assert tracked["perpetual-SOL-USDT:USDT"].end is None
    assert tracked["perpetual-ETH-USDT:USDT"].end == date(2024, 5, 1)
    assert tracked["perpetual-XRP-USDT:USDT"].end == date(now.year, now.month, 1)
    assert tracked["perpetual-BTC-USDT:USDT"].start == date(2019, 9, 1)
    [okx_btc] = tracked_entries(store.open(), "okx-perps")
    assert okx_btc.start == date(2019, 12, 1)  # no start in the file: its listing month
    assert isinstance(run_instruments_sensor(defs, instance), dg.SkipReason)  # in sync

    job = defs.resolve_job_def("binance_futures_flow_job")
    for key, text in [
        ("SOL-USDT:USDT|2024-02-01", "starts in 2024-03: month 2024-02 is not materializable"),
        ("ETH-USDT:USDT|2024-06-01", "was delisted: its last month is 2024-05"),
    ]:
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        assert not result.success
        assert text in failure_text(result)
        assert "tracked months" in failure_text(result)

    # The rule removed from the file: its instruments' partitions go, explicit entries stay.
    narrower = InstrumentsConfig(
        entries=(InstrumentEntry("binance-futures", "perpetual-SOL-USDT:USDT"),)
    )
    defs = build_definitions(narrower, {"store": store, "archives": ArchiveSources()})
    run_instruments_sensor(defs, instance)
    assert _keys(instance, "binance_futures_instruments") == ["SOL-USDT:USDT"]
    assert _keys(instance, "okx_perps_instruments") == []


def test_a_rule_without_a_stored_catalog_deletes_nothing(store) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("binance_futures_instruments", ["BTC-USDT:USDT"])
    defs = build_definitions(CONFIG, {"store": store})
    resources = {"store": store, "instruments": InstrumentsFile()}  # CONFIG replaces the file
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = defs.resolve_sensor_def("instruments_sensor")(context)
    assert isinstance(result, dg.SkipReason)  # OKX BTC has no start and no catalog: refused
    assert _keys(instance, "binance_futures_instruments") == ["BTC-USDT:USDT"]


def test_a_selection_rule_adds_every_usdt_margined_perpetual() -> None:
    rows = [
        ("BTCUSDT", "perpetual-BTC-USDT:USDT", "BTC", "USDT", None),
        ("1000PEPEUSDT", "perpetual-1000PEPE-USDT:USDT", "1000PEPE", "USDT", None),
        ("ETHUSDC", "perpetual-ETH-USDC:USDC", "ETH", "USDC", None),
        ("OLDUSDT", "perpetual-OLD-USDT:USDT", "OLD", "USDT", _at(2021, 3, 1)),
        ("BADUSDT", "perpetual-B|AD-USDT:USDT", "B|AD", "USDT", None),  # a bad key
    ]
    catalog = pl.DataFrame(
        [
            {
                "exchange": "binance-futures",
                "native": native,
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "settle": quote,
                "kind": "linear",
                "ct_val": 1.0,
                "ct_val_ccy": base,
                "listed": _at(2020, 2, 15),
                "delisted": delisted,
                "status": "TRADING",
            }
            for native, symbol, base, quote, delisted in rows
        ],
        schema=INSTRUMENT_SCHEMA,
        orient="row",
    )
    rule = SelectionRule("binance-futures", settle=("USDT",))
    resolution = resolve_instruments(InstrumentsConfig(rules=(rule,)), {"binance-futures": catalog})
    tracked = resolution.tracked["binance-futures"]
    assert list(tracked) == ["1000PEPE-USDT:USDT", "BTC-USDT:USDT", "OLD-USDT:USDT"]
    assert tracked["OLD-USDT:USDT"].end == date(2021, 2, 1)  # delisted at 2021-03-01 00:00
    assert tracked["BTC-USDT:USDT"].start == date(2020, 2, 1)
    assert any("BADUSDT" in m and "'|'" in m for m in resolution.refused)
    later = SelectionRule("binance-futures", settle=("USDT",), start=date(2022, 1, 1))
    tracked = resolve_instruments(InstrumentsConfig(rules=(later,)), {"binance-futures": catalog})
    assert list(tracked.tracked["binance-futures"]) == ["1000PEPE-USDT:USDT", "BTC-USDT:USDT"]


@pytest.mark.parametrize(
    ("exchange", "symbol", "why"),
    [
        ("binance-futures", "perpetual-BT,C-USDT:USDT", "not allowed in a partition key"),
        ("binance-futures", "perpetual-BTC-USDT:USDT]", "not allowed in a partition key"),
        ("binance-futures", "perpetual-BTC-USD:BTC", "not an Atlas perpetual of binance-futures"),
        ("okx-perps", "spot-BTC-USDT", "not a perpetual"),
        ("okx-perps", None, "no Atlas symbol"),
    ],
)
def test_a_bad_key_is_refused(exchange, symbol, why) -> None:
    with pytest.raises(KeyRefusedError, match=why):
        check_instrument(exchange, symbol)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"select": [{"exchange": "binance-futures", "margin": "USDT"}]}, "unknown field"),
        ({"select": [{"exchange": "bybit", "settle": "USDT"}]}, "exchange 'bybit' is not one of"),
        ({"select": [{"exchange": "okx-perps", "kind": "quanto"}]}, "kind must be one of"),
        ({"select": [{"exchange": "okx-perps", "settle": []}]}, "settle must be an asset"),
        ({"select": [{"exchange": "okx-perps", "start": "2024-13"}]}, "start must be a month"),
        ({"instruments": [], "select": []}, "no instruments listed and no selection rule"),
    ],
)
def test_rules_are_validated_with_clear_errors(document, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config(document, "instruments.yaml")


def test_definitions_with_rules_load_without_network_or_store(monkeypatch, tmp_path) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("definitions made a network call while loading")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    missing = FlowStore(url=str(tmp_path / "never-created"))
    defs = build_definitions(CONFIG, {"store": missing})
    dg.Definitions.validate_loadable(defs)
    assert not (tmp_path / "never-created").exists()


def test_editing_the_instruments_file_adds_and_removes_instruments_without_a_reload(
    store, tmp_path
) -> None:
    """The sensor reads the file on every tick: the same loaded definitions follow its edits."""
    path = tmp_path / "instruments.yaml"

    def write(*symbols: str) -> None:
        entries = [{"exchange": "okx-perps", "symbol": s, "start": "2024-01"} for s in symbols]
        path.write_text(yaml.safe_dump({"instruments": entries}))

    write("perpetual-BTC-USDT:USDT")
    defs = build_definitions(
        resources={"store": store, "instruments": InstrumentsFile(path=str(path))}
    )
    instance = dg.DagsterInstance.ephemeral()
    run_instruments_sensor(defs, instance)
    assert _keys(instance, "okx_perps_instruments") == ["BTC-USDT:USDT"]
    write("perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT")
    run_instruments_sensor(defs, instance)
    assert _keys(instance, "okx_perps_instruments") == ["BTC-USDT:USDT", "ETH-USDT:USDT"]
    write("perpetual-ETH-USDT:USDT")
    run_instruments_sensor(defs, instance)
    assert _keys(instance, "okx_perps_instruments") == ["ETH-USDT:USDT"]
    assert [e.symbol for e in tracked_entries(store.open(), "okx-perps")] == [
        "perpetual-ETH-USDT:USDT"
    ]


def test_an_okx_swap_outside_the_shipped_table_is_converted_with_the_catalogs_value(
    store, mirror_root, archive_server
) -> None:
    """DOGE-USDT-SWAP (1000 DOGE a contract) is in no hand-written table: its trades are
    converted with the contract value of the stored catalog, which the run reads (not the
    exchange's REST API); with no catalog stored the month fails naming the instrument."""
    doge = "perpetual-DOGE-USDT:USDT"
    feb, mar = _at(2024, 2, 1), _at(2024, 3, 1)
    trades = sample_trades(feb, mar, 400, seed=7, first_id=5_000)
    write_okx(trades, mirror_root, doge, contract_value_at=lambda ts: 1000.0)
    config = parse_config({"instruments": [{"exchange": "okx-perps", "symbol": doge}]})
    okx = okx_instruments([okx_instrument("DOGE-USDT-SWAP", "1000", listed=_at(2020, 1, 10))])
    with CatalogServer(_documents(_binance(), okx)) as server:
        api = _api(server)
        archives = ArchiveSources(urls={"okx-perps": archive_server.url})
        defs = build_definitions(config, {"catalog_api": api, "store": store, "archives": archives})
        instance = dg.DagsterInstance.ephemeral()
        key = "DOGE-USDT:USDT|2024-02-01"

        def run(definitions: dg.Definitions) -> dg.ExecuteInProcessResult:
            run_instruments_sensor(definitions, instance)
            return definitions.resolve_job_def("okx_perps_flow_job").execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )

        # No catalog stored yet (an explicit start, so the months need none): refused by name.
        explicit = parse_config(
            {"instruments": [{"exchange": "okx-perps", "symbol": doge, "start": "2024-01"}]}
        )
        refused = run(build_definitions(explicit, {"store": store, "archives": archives}))
        assert not refused.success
        assert "DOGE-USDT-SWAP" in failure_text(refused)

        catalog = defs.resolve_job_def("instrument_catalog_job").execute_in_process(
            instance=instance
        )
        assert catalog.success
        result = run(defs)
        assert result.success, failure_text(result)
    published = read_manifest(store.open(), "trades", "okx-perps", doge, date(2024, 2, 1))
    converted = store.open().read_parquet(published.key_of("trades"))
    assert converted.height == 400
    assert_frame_equal(
        converted.select("trade_id", "base_qty").sort("trade_id"),
        trades.select("trade_id", "base_qty").sort("trade_id"),
        rel_tol=1e-9,
    )


def test_a_key_added_by_hand_is_removed_saying_why(store, capfd) -> None:
    """The UI's "+ Add a partition" creates any key (Dagster does not validate dynamic keys):
    the next sync removes a key no instruments file tracks and says why in the tick's log."""
    instance = dg.DagsterInstance.ephemeral()
    with CatalogServer(_documents(_binance(), _okx("0.01"))) as server:
        api = _api(server)
        defs = build_definitions(CONFIG, {"catalog_api": api, "store": store})
        assert (
            defs.resolve_job_def("instrument_catalog_job")
            .execute_in_process(instance=instance)
            .success
        )
    run_instruments_sensor(defs, instance)
    tracked = _keys(instance, "binance_futures_instruments")
    # What the dialog's "+ Add a partition" does: the instance's addDynamicPartition.
    instance.add_dynamic_partitions("binance_futures_instruments", ["DOGE-USDT:USDT", "oops"])
    capfd.readouterr()
    result = run_instruments_sensor(defs, instance)
    logged = "".join(capfd.readouterr())  # the tick's log (the sensor's context.log)
    assert isinstance(result, dg.SensorResult)
    assert _keys(instance, "binance_futures_instruments") == tracked  # the tracked ones stay
    assert "'+ Add a partition'" in logged
    assert "['DOGE-USDT:USDT', 'oops']" in logged
    instance.add_dynamic_partitions("okx_perps_instruments", ["ETH-USDT:USDT"])
    outcome = register_instruments(instance, store.open(), CONFIG)
    assert outcome.foreign == {"okx-perps": ["ETH-USDT:USDT"]}
    assert _keys(instance, "okx_perps_instruments") == ["BTC-USDT:USDT"]


def test_removing_650_instruments_from_the_file_is_one_batch(store, tmp_path, monkeypatch) -> None:
    """700 instruments, then 650 of them removed from the file: one tick of the sensor adds
    the 700 keys in one request, then deletes the 650 in one transaction (Dagster's daemon would
    delete them one at a time, two storage queries each), on a real SQLite instance."""
    path = tmp_path / "instruments.yaml"
    symbols = [f"perpetual-SYN{i:03d}-USDT:USDT" for i in range(700)]

    def write(chosen: list[str]) -> None:
        entries = [{"exchange": "okx-perps", "symbol": s, "start": "2024-01"} for s in chosen]
        path.write_text(yaml.safe_dump({"instruments": entries}))

    defs = build_definitions(
        resources={"store": store, "instruments": InstrumentsFile(path=str(path))}
    )
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        write(symbols)
        added = run_instruments_sensor(defs, instance)
        assert isinstance(added, dg.SensorResult)
        [request] = added.dynamic_partitions_requests
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        assert len(request.partition_keys) == 700
        assert len(_keys(instance, "okx_perps_instruments")) == 700

        def one_by_one(*_args) -> None:
            raise AssertionError("deleted one key at a time")

        monkeypatch.setattr(type(instance), "delete_dynamic_partition", one_by_one)
        write(symbols[:50])
        removed = run_instruments_sensor(defs, instance)
        assert isinstance(removed, dg.SensorResult)
        assert removed.dynamic_partitions_requests == []  # nothing left for the daemon
        assert _keys(instance, "okx_perps_instruments") == sorted(
            s.removeprefix("perpetual-") for s in symbols[:50]
        )
        assert len(tracked_entries(store.open(), "okx-perps")) == 50
