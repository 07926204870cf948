"""The Dagster code location (workspace.yaml, `-m flow_assets.definitions`)."""

from flow_assets.orchestration.definitions import build_definitions

defs = build_definitions()
