"""What a person sees first, in a real browser: the demo's instance in ``dagster dev`` and the
API's docs page.

The instance is built the demo's way (``flow_assets.demo.materialize``: the catalog run, then a
backfill of each flow job and of ``summary_job``, launched through the webserver's GraphQL API and
executed by the daemon of ``dagster dev``) on the demo's mirror, for one instrument of each
exchange over one small month (4 runs: catalog, two instrument-months, summary).
Debian's Chromium (``/usr/bin/chromium``, installed by ``scripts/install-chromium.sh``) is driven
by Playwright from PyPI, 1600 px wide; every page is saved as a screenshot under
``test-artifacts/browser/`` (gitignored). A missing Chromium is an error, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flow_assets.api.app import create_app
from flow_assets.api.server import ServerThread
from flow_assets.api.settings import ApiSettings
from flow_assets.catalog.mirror import CatalogServer
from flow_assets.demo import generate_mirror, materialize
from flow_assets.instruments import load_config
from flow_assets.orchestration.exchange_checks import CHECK_NAME as CHECK
from flow_assets.sources.mirror import ArchiveServer
from flow_assets.venues import VENUES
from flow_assets.webui import DagsterDev

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
MONTH = date(2024, 1, 1)
# Two instruments of the demo's mirror that the per-instrument run limit lets run at once.
PICKED = (("binance-futures", "perpetual-ETH-USDT:USDT"), ("okx-perps", "perpetual-BTC-USDT:USDT"))
WAIT_MS = 60_000  # the UI's first GraphQL answers take seconds on a loaded 2-core machine


@dataclass
class DemoUi:
    dev: DagsterDev
    runs: list[dict]
    store: Path


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUi]:
    """``dagster dev`` on an instance the demo's backfills filled (one month)."""
    root = tmp_path_factory.mktemp("demo-ui")
    home = root / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    _, documents = generate_mirror(root / "mirror", (MONTH,), 300)
    instruments = root / "instruments.yaml"
    instruments.write_text(
        "instruments:\n"
        + "".join(
            f"  - {{exchange: {e}, symbol: '{s}', start: {MONTH:%Y-%m}}}\n" for e, s in PICKED
        )
    )
    with (
        pytest.MonkeyPatch.context() as env,
        ArchiveServer(root / "mirror") as archive,
        CatalogServer(documents) as catalogs,
    ):
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv("FLOW_ASSETS_STORAGE_URL", str(root / "store"))
        env.setenv("FLOW_ASSETS_INSTRUMENTS", str(instruments))
        for each in VENUES.values():
            env.setenv(each.archive.url_env, archive.url)
            env.setenv(each.catalog.url_env, catalogs.url)
        with DagsterDev(REPO / "workspace.yaml", os.environ, root / "dagster-dev.log") as dev:
            tags = {"flow_assets/backfill": "browser-test"}
            runs = materialize(dev, load_config(instruments), (MONTH,), tags)
            yield DemoUi(dev, runs, root / "store")
    assert dev.process is not None
    assert not _group_alive(dev.process.pid), "dagster dev left processes behind"


def _group_alive(pgid: int, wait: float = 10.0) -> bool:
    """Whether any process of group ``pgid`` is still there after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: bash scripts/install-chromium.sh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    yield context.new_page()
    context.close()


def _open(page: Page, url: str) -> None:
    """Go to ``url`` and dismiss Dagster's one-time community dialog when it shows."""
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # the dialog is optional
        pass


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def test_the_demo_runs_are_where_a_person_looks(demo_ui: DemoUi, page: Page) -> None:
    """Overview's timeline, the job's Runs tab, the Backfills tab, a flow asset's partitions and
    checks all show what the demo ran."""
    runs = demo_ui.runs
    # the catalog, one instrument-month per venue picked, the summary, the tracked coverage
    assert len(runs) == 1 + 2 + 1 + 1, [(r["jobName"], r["status"]) for r in runs]
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    url, location = demo_ui.dev.url, demo_ui.dev.location().location

    _open(page, f"{url}/overview/activity/timeline")
    expect(page.get_by_text("binance_futures_flow_job").first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("summary_job").first).to_be_visible()
    expect(page.get_by_text("No runs or scheduled ticks")).to_have_count(0)
    _shot(page, "1-overview-timeline")

    _open(page, f"{url}/locations/{location}/jobs/binance_futures_flow_job/runs")
    expect(page.get_by_text("partition: ETH-USDT:USDT|2024-01-01")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Success").first).to_be_visible()
    expect(page.get_by_text("No runs found")).to_have_count(0)
    _shot(page, "2-job-runs")

    _open(page, f"{url}/runs?view=backfills")
    for backfill in {
        r["tags"]["dagster/backfill"] for r in runs if "dagster/backfill" in r["tags"]
    }:
        expect(page.get_by_text(backfill, exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("binance_futures_flow_job_partition_set")).to_be_visible()
    _shot(page, "3-backfills")

    _open(page, f"{url}/assets/binance_futures/flow_bars_1d?view=partitions")
    expect(page.get_by_text("Materialized (1)")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Failed (0)")).to_be_visible()
    _shot(page, "4-flow-bars-partitions")

    _open(page, f"{url}/assets/binance_futures/flow_bars_1d?view=checks")
    for check in ("bars_valid", "nothing_lost"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Succeeded").first).to_be_visible()
    _shot(page, "5-flow-bars-checks")

    _open(page, f"{url}/assets/okx_perps/instrument_catalog")
    expect(page.get_by_text("ct_val_ccy", exact=True).first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Currency of ct_val.").first).to_be_visible()
    _shot(page, "6-catalog-columns")

    _open(page, f"{url}/assets/daily_flow_summary")
    expect(page.get_by_text("net_taker_notional", exact=True).first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("net taker flow", exact=False).first).to_be_visible()
    _shot(page, "7-summary-columns")


def test_the_api_docs_render_with_no_request_leaving_the_machine(
    demo_ui: DemoUi, page: Page, tmp_path: Path
) -> None:
    """``/api/v1/docs`` renders every endpoint from assets this server serves."""
    settings = ApiSettings(
        storage_url=str(demo_ui.store), secret=b"x" * 32, keys_location=str(tmp_path / "keys")
    )
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.route(
        re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), lambda route: route.abort()
    )  # anything else never leaves; it is also recorded above and fails the test
    with ServerThread(create_app(settings)) as server:
        _open(page, f"{server.url}/api/v1/docs")
        expect(page.get_by_text("flow-assets API").first).to_be_visible(timeout=WAIT_MS)
        for path in ("/api/v1/data/{metric}", "/api/v1/metadata/catalog"):
            expect(page.get_by_text(path, exact=True).first).to_be_visible()
        _shot(page, "8-api-docs")
    hosts = {urlsplit(url).hostname for url in requested}
    assert hosts == {"127.0.0.1"}, requested
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in requested), requested


def test_the_exchange_check_shows_its_day_by_day_picture(demo_ui: DemoUi, page: Page) -> None:
    """The demo's Binance month is judged by the 1m klines of its mirror: ``matches_exchange``
    passed, and its per-day table (ours vs the exchange's volume, ✓ per day) renders."""
    url = demo_ui.dev.url
    _open(page, f"{url}/assets/binance_futures/flow_bars_1m?view=checks&checkDetail={CHECK}")
    expect(page.get_by_text(CHECK).first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("cell", name="minutes_equal")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("cell", name="ETH-USDT:USDT|2024-01-01")).to_be_visible()
    _shot(page, "9a-matches-exchange")
    page.get_by_text("[Show Markdown]").first.click()  # per_day: the only markdown entry
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("2024-01-01", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(dialog.get_by_text("exchange volume").first).to_be_visible()
    expect(dialog.get_by_text("✗")).to_have_count(0)
    page.wait_for_timeout(500)  # the dialog fades in
    _shot(page, "9c-matches-exchange-per-day")
