"""Errors as JSON ``{"error", "details", "code"}``: never a stack trace, never a 500 for input.

:class:`ApiError` is raised by the routes; the handlers installed by :func:`install` turn it,
FastAPI's parameter validation, unknown routes and any unexpected exception into that body.
Unexpected exceptions are logged with their traceback on the server and answered with a bare
500 (or a 503 with ``Retry-After`` when the storage backend is unreachable).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flow_assets.api.models import ErrorBody
from flow_assets.store import StoreError

log = logging.getLogger("flow_assets.api")

try:  # boto3 comes with dagster-aws; the API only needs it for S3 stores
    from botocore.exceptions import BotoCoreError, ClientError

    _BACKEND_ERRORS: tuple[type[BaseException], ...] = (StoreError, BotoCoreError, ClientError)
except ImportError:  # pragma: no cover
    _BACKEND_ERRORS = (StoreError,)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
}
RETRY_AFTER_BACKEND = 5


class ApiError(Exception):
    """An answer other than 200: status, message, details, code and extra headers."""

    def __init__(
        self,
        status: int,
        error: str,
        code: str,
        details: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.code = status, error, code
        self.details = details or []
        self.headers = headers or {}


def error_response(
    status: int, error: str, code: str, details: list[str] | None = None, headers: Any = None
) -> JSONResponse:
    """The JSON error body with ``status``."""
    body = ErrorBody(error=error, details=details or [], code=code)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.code, exc.details, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_describe(e) for e in exc.errors()]
    return error_response(400, "Invalid parameter", "invalid_parameter", details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    message = "Not Found" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, message, code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, _BACKEND_ERRORS):
        log.error("storage backend failed on %s: %r", request.url.path, exc)
        return error_response(
            503,
            "Storage temporarily unavailable",
            "store_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_BACKEND)},
        )
    log.exception("unexpected error on %s", request.url.path)
    return error_response(500, "Internal Server Error", "internal")


def install(app: FastAPI) -> None:
    """Install the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def _example(error: str, code: str, *details: str) -> dict[str, Any]:
    return {"summary": code, "value": {"error": error, "details": list(details), "code": code}}


def _described(
    status: int,
    description: str,
    examples: list[dict[str, Any]],
    headers: dict[str, Any] | None = None,
) -> dict:
    """An error response of the OpenAPI document: ``ErrorBody`` with one example per ``code``
    this status can carry, each showing its own code."""
    entry: dict[str, Any] = {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"examples": {e["summary"]: e for e in examples}}},
    }
    if headers:
        entry["headers"] = headers
    return {status: entry}


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
BAD_REQUEST = _described(
    400,
    "A parameter is missing, malformed or unsupported",
    [
        _example("Invalid parameter", "invalid_parameter", "start_date: no such date"),
        _example("end_date is before start_date", "invalid_range", "2024-01-01 < 2024-02-01"),
        _example("Range too long", "range_too_long", "at most 366 days per request"),
        _example(
            "Not part of the preview",
            "not_in_preview",
            "binance-futures perpetual-BTC-USDT:USDT 2024-01..2024-01",
        ),
    ],
)
UNAUTHORIZED = _described(
    401,
    "No X-API-KEY header, or an unknown key",
    [_example("Authorization Required", "unauthorized", "missing X-API-KEY header")],
)
FORBIDDEN = _described(
    403,
    "The key is revoked, or its tier does not include the request",
    [
        _example("API key revoked", "key_revoked", "revoked at 2024-05-01T00:00:00+00:00"),
        _example(
            "Interval 1s requires Prime", "tier_required", "the basic tier does not include 1s bars"
        ),
        _example("The demo key reads only the preview", "preview_only", "use /data/preview/flow"),
    ],
)
NOT_FOUND = _described(
    404,
    "Nothing in the range is published",
    [_example("Not Found", "not_found", "nothing of perpetual-BTC-USDT:USDT is published")],
)
RATE_LIMITED = _described(
    429,
    "The key exceeded its rate; retry after Retry-After",
    [_example("Too Many Requests", "rate_limited", "rate limit exceeded; retry in 2 s")],
    _RETRY_AFTER,
)
UNAVAILABLE = _described(
    503,
    "The storage backend (or the key file) is unreachable",
    [
        _example("Storage temporarily unavailable", "store_unavailable"),
        _example("Key store unreadable", "key_store_unavailable"),
    ],
    _RETRY_AFTER,
)
LINK_REFUSED = _described(
    403,
    "The link is malformed, forged or expired",
    [
        _example("Invalid link", "link_invalid", "bad signature"),
        _example("Invalid link", "link_expired", "link expired"),
    ],
)
LINK_GONE = _described(
    404,
    "The file is no longer published (ask /data again)",
    [_example("Not Found", "not_found", "the file is no longer published")],
)
AUTHENTICATED = {**UNAUTHORIZED, **FORBIDDEN, **RATE_LIMITED, **UNAVAILABLE}
