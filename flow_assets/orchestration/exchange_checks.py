"""The ``matches_exchange`` check: each month's bars against the exchange's own aggregation.

The comparison is :mod:`flow_assets.metrics.exchange_check`; the decision (a month that
disagrees is not published) is :func:`flow_assets.month.publish_flow`'s. Here: where the
exchange's figures are read from (the venue's reader, from the configured archive root or REST
root: no setting of its own), the check's spec and result (counts, the worst periods with both
figures, the first differing times, a picture per day), and ``{slug}/reconciliation``: every
instrument-month's stored verdict as one table a person can scan.

Severity: a difference beyond rounding is an ERROR (the month is not published); the exchange
having nothing for the month (no klines file yet, API unreachable) is a WARN "not reconciled"
(the month is published; the catalog API says ``reconciled: null``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
import requests

from flow_assets.catalog.model import CatalogError
from flow_assets.instruments import InstrumentEntry
from flow_assets.metrics.exchange_check import (
    FAILED,
    FIGURE_MEANING,
    PASSED,
    RELATIVE_TOLERANCE,
    ExchangeCheck,
    ExchangeFigures,
)
from flow_assets.month import ExchangeReference
from flow_assets.orchestration.resources import ArchiveSources, CatalogApi
from flow_assets.sources import http
from flow_assets.sources.errors import SourceError
from flow_assets.symbology import to_native
from flow_assets.venues import venue
from flow_assets.venues.base import ExchangeAggregation

CHECK_NAME = "matches_exchange"
BAR_WIDTH = 20  # characters of the longest day's bar
LISTED = 50  # minutes lacking listed in the metadata (their number is always given)
TOLERANCE_TEXT = (
    "Equal: counts identical; volumes within rounding of the exchange's printed decimals d, "
    f"|ours - exchange| <= 0.5 * 10^-d + {RELATIVE_TOLERANCE:g} * |exchange| (COIN-M base "
    "volumes: one rounding unit per underlying trade)."
)


def check_spec(exchange: str, interval: str, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The blocking check of the ``interval`` bars ``key`` if the venue's own aggregation
    judges those (else none)."""
    aggregation = venue(exchange).exchange_figures
    if aggregation is None or aggregation.interval != interval:
        return []
    return [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            blocking=True,
            description=f"The month's {aggregation.interval} bars against the exchange's "
            f"{aggregation.what}, figure by figure. A difference beyond rounding is an ERROR "
            "and nothing of the month is published; no figures from the exchange (not "
            "published yet, unreachable) is a WARN: not reconciled. " + TOLERANCE_TEXT,
        )
    ]


def _root(aggregation: ExchangeAggregation, exchange: str, archives: ArchiveSources,
          catalog_api: CatalogApi) -> str:  # fmt: skip
    """The configured root the venue's figures are read from (archive or REST)."""
    described = venue(exchange)
    if aggregation.root == "archive":
        return described.archive.base_url((archives.urls or {}).get(exchange) or None)
    return described.catalog.base_url(catalog_api.base_url(exchange))


def reference(
    entry: InstrumentEntry, archives: ArchiveSources, catalog_api: CatalogApi
) -> ExchangeReference | None:
    """How the month of ``entry`` is judged: its venue's reader on the configured root, its
    errors turned into "not reconciled" (None: the venue publishes no aggregation)."""
    aggregation = venue(entry.exchange).exchange_figures
    if aggregation is None:
        return None
    if entry.tardis:
        reason = "trades from Tardis CSVs: the exchange's figures are not read for them"
        return ExchangeReference(
            aggregation.interval, lambda span: ExchangeFigures.unavailable(reason)
        )
    base = _root(aggregation, entry.exchange, archives, catalog_api)
    native = to_native(entry.exchange, entry.symbol)

    def figures(span: tuple[datetime, datetime]) -> ExchangeFigures:
        with http.make_session() as session:
            try:
                return aggregation.read(base, session, native, span)
            except (SourceError, CatalogError, requests.RequestException) as error:
                return ExchangeFigures.unavailable(f"{aggregation.what} unreadable: {error}")

    return ExchangeReference(aggregation.interval, figures)


def _worst_table(check: ExchangeCheck) -> str:
    head = "| time | " + " | ".join(f"{f} ours / exchange" for f in check.figures) + " |"
    lines = [head, "|---|" + "---|" * len(check.figures)]
    for row in check.worst:
        cells = [f"{_num(row[f]['ours'])} / {_num(row[f]['exchange'])}" for f in check.figures]
        lines.append(f"| {row['time']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _bar(share: float) -> str:
    """A text bar of ``share`` (0..1) of ``BAR_WIDTH`` characters."""
    return "█" * round(BAR_WIDTH * share) or "▏"


def picture(check: ExchangeCheck) -> dg.MetadataValue:
    """The month per day, ours vs the exchange's, as a table with a text bar (Dagster's
    markdown drops images from ``data:`` URIs and inline SVG, so the picture is text): ✗ and
    the number of periods that differ on a day, ✓ where all agree."""
    if not check.days:
        return dg.MetadataValue.md(f"No comparison: {check.reason or 'nothing compared'}")
    figure = check.days[0]["figure"]
    top = max(max(d["ours"], d["exchange"]) for d in check.days) or 1.0
    lines = [
        f"| day | ours {figure} | exchange {figure} | ours - exchange | {check.unit}s differing "
        "| ours | exchange |",
        "|---|---|---|---|---|---|---|",
    ]
    for day in check.days:
        bars = [_bar(day[side] / top) for side in ("ours", "exchange")]
        mark = f"✗ {day['differing']}" if day["differing"] else "✓"
        gap = day["ours"] - day["exchange"]
        lines.append(f"| {day['day']} | {_num(day['ours'])} | {_num(day['exchange'])} | "
                     f"{gap:+.3g} | {mark} | `{bars[0]}` | `{bars[1]}` |")  # fmt: skip
    return dg.MetadataValue.md("\n".join(lines))


def _listed(times: list[str]) -> dg.MetadataValue:
    more = f" (+{len(times) - LISTED} more)" if len(times) > LISTED else ""
    return dg.MetadataValue.text((", ".join(times[:LISTED]) or "none") + more)


def check_result(
    key: dg.AssetKey, check: ExchangeCheck, partition: str, partition_key: str
) -> dg.AssetCheckResult:
    """The check's result: ERROR when the bars disagree, WARN when not reconciled."""
    metadata: dict[str, Any] = {
        partition: partition_key,
        "status": check.status,
        f"{check.unit}s_compared": check.compared,
        f"{check.unit}s_equal": check.equal,
        "figures": dg.MetadataValue.json({f: FIGURE_MEANING[f] for f in check.figures}),
        "first_differing": _listed(check.first_differing),
        "exchange_lacks": _listed(check.exchange_lacks),
        "we_lack": _listed(check.we_lack),
        "days_not_compared": dg.MetadataValue.json(check.days_not_compared),
        "sources": dg.MetadataValue.json(check.sources),
        "tolerance": TOLERANCE_TEXT,
        "per_day": picture(check),
    }
    if check.worst:
        metadata["worst"] = dg.MetadataValue.md(_worst_table(check))
    if check.reason:
        metadata["not_reconciled"] = f"not reconciled: {check.reason}"
    severity = dg.AssetCheckSeverity.ERROR if check.status == FAILED else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=check.status == PASSED,
        severity=severity,
        metadata=metadata,
    )
