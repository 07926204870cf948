"""Per-instrument history of the ``matches_exchange`` verdicts: ``{slug}/reconciliation``.

Every instrument-month's verdict is stored by the month computation whether it passed or not
(``checks/exchange/{exchange}/{symbol}/{YYYY-MM}.json``, see
:func:`flow_assets.store.exchange_check_key`); this unpartitioned asset, one per venue that
publishes its own aggregation, shows them as one table instrument x month (✓ / ✗ / —).
"""

from __future__ import annotations

import dagster as dg

from flow_assets.metrics.exchange_check import FAILED, PARTIAL, PASSED, ExchangeCheck
from flow_assets.orchestration.catalog import CATALOG_GROUP
from flow_assets.orchestration.partitions import ExchangePartitions
from flow_assets.orchestration.resources import FlowStore
from flow_assets.store import EXCHANGE_CHECKS, ObjectStore
from flow_assets.venues import venue

MARKS = {PASSED: "✓", FAILED: "✗", PARTIAL: "◐"}  # anything else (not reconciled): —


def reconciliation_asset_key(exchange: str) -> dg.AssetKey:
    """E.g. ``binance_futures/reconciliation``."""
    return dg.AssetKey([exchange.replace("-", "_"), "reconciliation"])


def stored_verdicts(objects: ObjectStore, exchange: str) -> dict[tuple[str, str], ExchangeCheck]:
    """Every stored verdict of ``exchange``: (symbol, YYYY-MM) -> verdict."""
    prefix = f"{EXCHANGE_CHECKS}/{exchange}/"
    verdicts = {}
    for key in objects.list_keys(prefix):
        symbol, _, name = key[len(prefix) :].rpartition("/")
        verdicts[(symbol, name.removesuffix(".json"))] = ExchangeCheck.from_json(
            objects.get_json(key)
        )
    return verdicts


def history_table(verdicts: dict[tuple[str, str], ExchangeCheck]) -> str:
    """Instrument x month: ✓ agrees, ✗ differs, ◐ agrees where the exchange has figures (some
    days without), — not reconciled; blank: not computed."""
    symbols = sorted({s for s, _ in verdicts})
    months = sorted({m for _, m in verdicts})
    lines = ["| instrument | " + " | ".join(months) + " |", "|---|" + "---|" * len(months)]
    for symbol in symbols:
        cells = [
            MARKS.get(verdicts[(symbol, m)].status, "—") if (symbol, m) in verdicts else ""
            for m in months
        ]
        lines.append(f"| {symbol} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reconciliation_asset(partitions: ExchangePartitions) -> dg.AssetsDefinition | None:
    """``{slug}/reconciliation``: every instrument-month's verdict (None: nothing to reconcile)."""
    exchange = partitions.exchange
    if venue(exchange).exchange_figures is None:
        return None

    @dg.asset(
        key=reconciliation_asset_key(exchange),
        group_name=CATALOG_GROUP,
        kinds={"json"},
        description=f"Per {exchange} instrument and month, whether its bars agreed with the "
        "exchange's own figures (`matches_exchange`): ✓ agreed, ✗ differed (not published), "
        "◐ agreed on the days the exchange has figures for, — not reconciled (the exchange had "
        "nothing). From the verdicts stored beside the "
        "months under `checks/exchange/`.",
    )
    def reconciliation(store: FlowStore) -> dg.MaterializeResult:
        verdicts = stored_verdicts(store.open(), exchange)
        counts = {s: sum(v.status == s for v in verdicts.values()) for s in (PASSED, FAILED)}
        return dg.MaterializeResult(
            metadata={
                "instrument_months": len(verdicts),
                "agreed": counts[PASSED],
                "differed": counts[FAILED],
                "not_reconciled": len(verdicts) - counts[PASSED] - counts[FAILED],
                "history": dg.MetadataValue.md(history_table(verdicts)),
            }
        )

    return reconciliation


def build_reconciliation(exchanges: list[ExchangePartitions]) -> list[dg.AssetsDefinition]:
    """The reconciliation assets of the venues that publish their own aggregation."""
    return [a for p in exchanges if (a := reconciliation_asset(p)) is not None]
