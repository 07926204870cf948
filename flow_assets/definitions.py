"""Dagster definitions (filled in by the orchestration issue)."""

import dagster as dg

defs = dg.Definitions()
