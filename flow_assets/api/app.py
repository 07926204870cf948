"""The ASGI application: :func:`create_app` wires settings, store, keys, limits and routes.

The app reads the store that the pipeline fills (only what manifests publish) and knows nothing
of Dagster. Run it with ``flow-assets serve`` (see :mod:`flow_assets.cli`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flow_assets.api import errors
from flow_assets.api.auth import KeyCache
from flow_assets.api.catalog import Published
from flow_assets.api.keys import KeyStore
from flow_assets.api.ratelimit import RateLimiter
from flow_assets.api.routes import API_PREFIX, router
from flow_assets.api.settings import ApiSettings
from flow_assets.api.signing import Signer
from flow_assets.store import ObjectStore, open_store

DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")
access_log = logging.getLogger("flow_assets.api.access")
DESCRIPTION = """\
Flow-metrics bars of crypto perpetuals, published as one Parquet file per instrument, month,
interval and timestamp source. Compatible with the `aperiodic` Python client
(`APERIODIC_API_URL=http://HOST:PORT/api/v1`). Send your key in `X-API-KEY`; the download URLs
returned are plain GETs without the key, valid for 5 minutes. Errors are
`{"error", "details", "code"}`. Unknown query parameters are ignored.
"""


@dataclass
class ApiState:
    """What the routes share: settings, the store (and its published view), the key file, the
    signer and the limiter."""

    settings: ApiSettings
    store: ObjectStore
    keys: KeyCache
    published: Published = field(init=False)
    signer: Signer = field(init=False)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.published = Published(self.store, self.settings.cache_seconds)
        self.signer = Signer(self.settings.secret)
        self.limiter = RateLimiter(self.settings.rate_per_second, self.settings.burst)


def _logged_path(scope: Scope) -> str:
    """The request target for the log: query kept, but a file link's token cut short."""
    path: str = scope.get("path", "")
    files = f"{API_PREFIX}/files/"
    if path.startswith(files):
        return f"{files}{path[len(files) : len(files) + 8]}..."
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


class AccessLog:
    """ASGI middleware: one line per request with client, target, status, key name, latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            client = scope.get("client") or ("-", 0)
            key_name = scope.get("state", {}).get("key_name", "-")
            access_log.info(
                "%s %s %r status=%d key=%s latency_ms=%.1f",
                client[0],
                scope["method"],
                _logged_path(scope),
                status,
                key_name,
                (time.perf_counter() - started) * 1000,
            )


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document without FastAPI's 422 (parameter errors are 400 here)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    return build


def _swagger_assets() -> Path:
    """Swagger UI's script, styles and icon as the ``fastapi-offline`` distribution ships them
    (a PyPI package of swagger-ui-dist 5's files): the docs page needs no CDN."""
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    missing = [n for n in DOCS_ASSETS if not (folder / n).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline ships no {', '.join(missing)} under {folder}")
    return folder


def _serve_docs(app: FastAPI) -> None:
    """``/api/v1/docs``: Swagger UI over the OpenAPI document, its assets served by this server
    (``/api/v1/docs-assets/``), so the page works on an air-gapped machine."""
    assets = f"{API_PREFIX}/docs-assets"
    app.mount(assets, StaticFiles(directory=_swagger_assets()), name="docs-assets")

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no call to swagger.io's validator
        )


def default_s3_client() -> Any:
    """boto3's S3 client from its own chain (``AWS_ENDPOINT_URL``, profiles, region), signing
    presigned URLs with SigV4 (``X-Amz-Expires``), which every region and S3-compatible server
    accepts, rather than the legacy query signature boto3 may otherwise pick."""
    import boto3  # noqa: PLC0415  (only S3 deployments need it)
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client("s3", config=Config(signature_version="s3v4", retries={"max_attempts": 5}))


def create_app(
    settings: ApiSettings, *, store: ObjectStore | None = None, s3_client: Any = None
) -> FastAPI:
    """The API over ``store`` (default: ``settings.storage_url``; on S3 through ``s3_client``,
    default :func:`default_s3_client`, which also reads a key file kept on S3)."""
    app = FastAPI(
        title="flow-assets API",
        version="1",
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by _serve_docs, from the package, not a CDN
        redoc_url=None,
        redirect_slashes=False,  # a 307 to elsewhere is never an answer: 404 JSON instead
    )
    if s3_client is None and settings.storage_url.startswith("s3://"):
        s3_client = default_s3_client()
    store = store or open_store(settings.storage_url, s3_client=s3_client)
    keys = KeyCache(KeyStore(settings.keys_location, s3_client=s3_client), settings.cache_seconds)
    app.state.api = ApiState(settings, store, keys)
    errors.install(app)
    app.include_router(router)
    _serve_docs(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(AccessLog)
    return app
