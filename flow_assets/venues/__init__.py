"""The venues: one module per venue, one registry (:data:`VENUES`).

Each module (``binance_futures``, ``okx_perps``, ...) exports ``VENUE``, a
:class:`~flow_assets.venues.base.Venue` holding everything particular to the venue. Adding a
venue is its module, its tests and one line below; everything else iterates :data:`VENUES`.
"""

from __future__ import annotations

from flow_assets.symbology import SymbolError
from flow_assets.venues import binance_futures, binance_futures_cm, bybit_perps, okx_perps
from flow_assets.venues.base import CatalogReader, Venue

VENUES: dict[str, Venue] = {
    v.name: v
    for v in (
        binance_futures.VENUE,
        okx_perps.VENUE,
        binance_futures_cm.VENUE,
        bybit_perps.VENUE,
    )
}
NAMES: tuple[str, ...] = tuple(VENUES)

__all__ = ["NAMES", "VENUES", "CatalogReader", "Venue", "venue"]


def venue(name: str) -> Venue:
    """The venue ``name``; :class:`SymbolError` naming the supported ones when unknown."""
    if name not in VENUES:
        raise SymbolError(f"unknown exchange {name!r}; supported: {', '.join(NAMES)}")
    return VENUES[name]
