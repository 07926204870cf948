"""flow-assets: raw perpetual-futures trades in, validated flow-metrics bars out.

Layout (dependencies point one way, downwards in this list):

* ``flow_assets.definitions`` / ``flow_assets.orchestration``: the Dagster layer.
* ``flow_assets.sources``: exchange archives to normalized trades (no Dagster).
* ``flow_assets.store`` and ``flow_assets.client``: object storage and its read path (no Dagster).
* ``flow_assets.metrics``: pure polars maths, trades to bars (no I/O).
* ``flow_assets.validation``: pandera models of the trades and the bars.
"""
