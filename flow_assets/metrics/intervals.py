"""The bar intervals, as names and as microseconds."""

from __future__ import annotations

ALL_INTERVALS: tuple[str, ...] = ("1s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d")

_SECOND = 1_000_000
INTERVAL_MICROS: dict[str, int] = {
    "1s": _SECOND,
    "15s": 15 * _SECOND,
    "30s": 30 * _SECOND,
    "1m": 60 * _SECOND,
    "5m": 300 * _SECOND,
    "15m": 900 * _SECOND,
    "30m": 1_800 * _SECOND,
    "1h": 3_600 * _SECOND,
    "4h": 14_400 * _SECOND,
    "1d": 86_400 * _SECOND,
}


def interval_micros(interval: str) -> int:
    """Length of ``interval`` in microseconds; a clear error for an unknown name."""
    try:
        return INTERVAL_MICROS[interval]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown interval {interval!r}; supported: {', '.join(ALL_INTERVALS)}"
        ) from None


def sorted_intervals(intervals: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Distinct intervals, finest first (each divides every later one)."""
    if isinstance(intervals, str):
        intervals = (intervals,)
    if not intervals:
        raise ValueError(f"no interval requested; supported: {', '.join(ALL_INTERVALS)}")
    return tuple(sorted(set(intervals), key=interval_micros))
