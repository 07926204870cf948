"""Reading the outcome of an in-process Dagster run in tests."""

from __future__ import annotations

import dagster as dg


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The messages of the first step failure and of every error that caused it."""
    error = result.get_step_failure_events()[0].event_specific_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)
