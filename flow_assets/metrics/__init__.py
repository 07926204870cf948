"""Pure polars maths: normalized trades to flow bars. No I/O here."""

from flow_assets.metrics.engine import FlowBarsEngine, flow_bars, flow_bars_all, flow_field_exprs
from flow_assets.metrics.intervals import ALL_INTERVALS, INTERVAL_MICROS, interval_micros
from flow_assets.metrics.schema import BAR_SCHEMA, FLOW_FIELDS, TRADE_SCHEMA

__all__ = [
    "ALL_INTERVALS",
    "BAR_SCHEMA",
    "FLOW_FIELDS",
    "INTERVAL_MICROS",
    "TRADE_SCHEMA",
    "FlowBarsEngine",
    "flow_bars",
    "flow_bars_all",
    "flow_field_exprs",
    "interval_micros",
]
