"""The endpoints: files of a query (full and preview), symbols, catalog, and local downloads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse

from flow_assets.api.auth import Caller, authenticate, require_full_key
from flow_assets.api.errors import (
    AUTHENTICATED,
    BAD_REQUEST,
    LINK_GONE,
    LINK_REFUSED,
    NOT_FOUND,
    ApiError,
)
from flow_assets.api.keys import TIERS
from flow_assets.api.models import CatalogResponse, FileLink, FilesResponse, SymbolsResponse
from flow_assets.api.signing import LinkError
from flow_assets.client import validate_request
from flow_assets.store import LocalStore, MissingObjectError
from flow_assets.venues import NAMES

API_PREFIX = "/api/v1"
PARQUET = "application/vnd.apache.parquet"
# The query's vocabularies, spelled out for the OpenAPI document (tests check them against
# ALL_INTERVALS, TIMESTAMPS and the venue registry).
Metric = Literal["flow"]
Timestamp = Literal["exchange", "true"]
Interval = Literal["1s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d"]
Exchange = Literal[NAMES]  # type: ignore[valid-type]  # every venue of the registry
SYMBOL_PATTERN = r"^[a-z]+-[A-Z0-9]+-[A-Z0-9]+(:[A-Z0-9]+)?(-[0-9]{8})?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

router = APIRouter(prefix=API_PREFIX)


@dataclass(frozen=True)
class FlowQuery:
    """A validated query: which bars, of which instrument, over which UTC days (inclusive)."""

    metric: str
    timestamp: str
    interval: str
    exchange: str
    symbol: str
    start: date
    end: date


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            400, "Invalid parameter", "invalid_parameter", [f"{name}: no such date"]
        ) from None


def _date_query(description: str) -> Any:
    return Query(
        pattern=DATE_PATTERN,
        max_length=10,
        description=description,
        json_schema_extra={"format": "date"},
    )


async def flow_query(
    request: Request,
    metric: Annotated[Metric, Path(description="the metric (its bucket)")],
    timestamp: Annotated[Timestamp, Query(description="timestamp source of the bars")],
    interval: Annotated[Interval, Query(description="bar length; 1s, 15s and 30s need Prime")],
    exchange: Annotated[Exchange, Query()],
    symbol: Annotated[
        str,
        Query(
            min_length=5,
            max_length=64,
            pattern=SYMBOL_PATTERN,
            description="Atlas symbol, e.g. perpetual-BTC-USDT:USDT",
        ),
    ],
    start_date: Annotated[str, _date_query("first UTC day, YYYY-MM-DD")],
    end_date: Annotated[str, _date_query("last UTC day (inclusive), YYYY-MM-DD")],
) -> FlowQuery:
    """Check the six query parameters together (400 with the reason on any problem)."""
    try:
        validate_request(metric, exchange, symbol, interval, timestamp)
    except ValueError as error:
        raise ApiError(400, "Invalid parameter", "invalid_parameter", [str(error)]) from None
    start, end = _day("start_date", start_date), _day("end_date", end_date)
    if end < start:
        raise ApiError(400, "end_date is before start_date", "invalid_range", [f"{end} < {start}"])
    limit = request.app.state.api.settings.max_range_days
    if (end - start).days + 1 > limit:
        raise ApiError(
            400, "Range too long", "range_too_long", [f"at most {limit} days per request"]
        )
    return FlowQuery(metric, timestamp, interval, exchange, symbol, start, end)


def _link(request: Request, key: str) -> str:
    """A plain-GET URL of a store key valid for the link TTL: presigned on S3, signed here."""
    state = request.app.state.api
    ttl = state.settings.link_ttl_seconds
    if isinstance(state.store, LocalStore):
        base = state.settings.public_url or str(request.base_url).rstrip("/")
        return f"{base}{API_PREFIX}/files/{state.signer.sign(key, ttl)}"
    return state.store.presigned_url(key, ttl)


def _answer(request: Request, query: FlowQuery) -> FilesResponse:
    state = request.app.state.api
    found = state.published.files(
        query.exchange,
        query.symbol,
        query.timestamp,
        query.interval,
        query.start,
        query.end,
    )
    if not found:
        raise ApiError(
            404,
            "Not Found",
            "not_found",
            [
                f"nothing of {query.symbol} {query.timestamp}/{query.interval} is published "
                f"for {query.start} .. {query.end}"
            ],
        )
    return FilesResponse(
        files=[
            FileLink(year=f.month.year, month=f.month.month, url=_link(request, f.key))
            for f in found
        ]
    )


def _check_tier(caller: Caller, interval: str) -> None:
    if not caller.allows_interval(interval):
        raise ApiError(
            403,
            f"Interval {interval} requires Prime",
            "tier_required",
            [f"the {caller.tier} tier does not include {interval} bars"],
        )


@router.get(
    "/data/{metric}",
    response_model=FilesResponse,
    responses={**BAD_REQUEST, **AUTHENTICATED, **NOT_FOUND},
    summary="Download URLs of the monthly files covering a date range",
)
def data(
    request: Request,
    caller: Annotated[Caller, Depends(authenticate)],
    query: Annotated[FlowQuery, Depends(flow_query)],
) -> FilesResponse:
    """One file per published month of ``start_date`` .. ``end_date`` (month order); each URL
    is valid for 5 minutes and is fetched with a plain GET, without the key."""
    require_full_key(caller)
    _check_tier(caller, query.interval)
    return _answer(request, query)


@router.get(
    "/data/preview/{metric}",
    response_model=FilesResponse,
    responses={**BAD_REQUEST, **AUTHENTICATED, **NOT_FOUND},
    summary="The same query on the preview whitelist (key DEMO-KEY)",
)
def preview(
    request: Request,
    caller: Annotated[Caller, Depends(authenticate)],
    query: Annotated[FlowQuery, Depends(flow_query)],
) -> FilesResponse:
    """Like ``/data/{metric}``, for any key including ``DEMO-KEY``, but only inside the
    whitelisted months and on the basic tier's intervals; anything else is a 400."""
    entries = request.app.state.api.settings.preview
    allowed = any(e.allows(query.exchange, query.symbol, query.start, query.end) for e in entries)
    if not allowed or query.interval not in TIERS["basic"]:
        listed = [f"{e.exchange} {e.symbol} {e.first:%Y-%m}..{e.last:%Y-%m}" for e in entries]
        raise ApiError(400, "Not part of the preview", "not_in_preview", listed)
    return _answer(request, query)


@router.get(
    "/metadata/symbols",
    response_model=SymbolsResponse,
    responses={**BAD_REQUEST, **AUTHENTICATED},
    summary="Symbols of an exchange with published data",
)
def symbols(
    request: Request,
    _caller: Annotated[Caller, Depends(authenticate)],
    exchange: Annotated[Exchange, Query()],
) -> SymbolsResponse:
    """Atlas symbols with at least one published month on ``exchange``."""
    found = request.app.state.api.published.symbols(exchange)
    return SymbolsResponse(symbols=found, exchange=exchange, bucket="flow")


@router.get(
    "/metadata/catalog",
    response_model=CatalogResponse,
    responses=AUTHENTICATED,
    summary="Metrics, their fields, and what is published per exchange and symbol",
)
def metadata_catalog(
    request: Request, _caller: Annotated[Caller, Depends(authenticate)]
) -> CatalogResponse:
    """Every metric with its columns and, per instrument, intervals and first/last month."""
    return CatalogResponse.model_validate(request.app.state.api.published.catalog())


@router.get(
    "/files/{token}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {PARQUET: {"schema": {"type": "string", "format": "binary"}}},
            "description": "The Parquet file",
        },
        **LINK_REFUSED,
        **LINK_GONE,
    },
    summary="A file behind a signed, expiring link (local storage only)",
)
def download(request: Request, token: str) -> FileResponse:
    """Streams the file a link from ``/data`` names; 403 when the link is forged or expired."""
    state = request.app.state.api
    if not isinstance(state.store, LocalStore):
        raise ApiError(403, "Invalid link", "link_invalid", ["this server issues presigned URLs"])
    try:
        link = state.signer.verify(token)
        with state.store.local_copy(link.key) as path:  # LocalStore: the object's own file
            pass
    except LinkError as error:
        raise ApiError(403, "Invalid link", f"link_{error.reason}", [str(error)]) from None
    except MissingObjectError:
        raise ApiError(404, "Not Found", "not_found", ["the file is no longer published"]) from None
    except ValueError:
        raise ApiError(
            403, "Invalid link", "link_invalid", ["link names no servable file"]
        ) from None
    return FileResponse(path, media_type=PARQUET, headers={"Cache-Control": "private, no-store"})
