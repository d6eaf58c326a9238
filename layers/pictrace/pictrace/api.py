"""The HTTP API (FastAPI): the app assembled from its routers (pictrace.routes, one per resource), and the only
place where PicTrace errors become HTTP status codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pictrace import __version__
from pictrace.errors import (
    BadRequest,
    ConfigError,
    ConflictError,
    DecodeTooCostly,
    FetchError,
    ImageTooLarge,
    InvalidImage,
    ModelMismatch,
    NotFound,
    PicTraceError,
    UpstreamError,
    WeightsUnavailable,
)
from pictrace.routes import duplicates, images, search, site, uploads
from pictrace.search import SearchService
from pictrace.settings import Settings, get_settings
from pictrace.wiring import container_wiring

logger = logging.getLogger(__name__)

STATUS: list[tuple[type[PicTraceError], int]] = [
    (ImageTooLarge, 413),
    (DecodeTooCostly, 422),
    (InvalidImage, 422),
    (FetchError, 422),
    (BadRequest, 400),
    (NotFound, 404),
    (ConflictError, 409),
    (ConfigError, 503),
    (ModelMismatch, 503),
    (WeightsUnavailable, 503),
    (UpstreamError, 503),
]


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """The PicTrace API. Settings are read (and checked) now; clients and the model on first use. Without settings,
    the container's (and its wiring); service: the SearchService to answer with (else made on first use)."""
    container = settings is None
    settings = settings or get_settings()
    app = FastAPI(
        title="PicTrace",
        version=__version__,
        description="Image similarity search: send a photo, get the most similar indexed images with their scores.",
    )
    state: dict[str, SearchService] = {}

    def get_service() -> SearchService:
        if "service" not in state:
            wiring = container_wiring() if container else None
            state["service"] = service or SearchService(settings, wiring=wiring)
        return state["service"]

    app.state.settings = settings
    app.state.service = get_service  # the container's SearchService (pictrace.snapstart warms it before a snapshot)

    for exc_type, status in STATUS:
        app.add_exception_handler(exc_type, _handler(status))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)

    for router in (site.router, search.router, uploads.router, images.router):
        app.include_router(router)
    app.include_router(duplicates.router)
    app.mount("/static", StaticFiles(directory=site.STATIC_DIR), name="static")
    return app


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A query or path parameter out of range: 422 in the same shape as every other error."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")) or "request"
    detail = f"invalid {where}: {first.get('msg', 'invalid request')}"
    return JSONResponse({"detail": detail, "error": "RequestValidationError"}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (unknown route, wrong method, malformed multipart) in PicTrace's error shape."""
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "bad request"
    return JSONResponse({"detail": str(detail), "error": "HTTPError"}, status_code=status)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: logged with its traceback here, answered without internals."""
    logger.exception("unexpected %s on %s", type(exc).__name__, request.url.path)
    return JSONResponse({"detail": "internal error", "error": "InternalError"}, status_code=500)


def _handler(status: int) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500:
            logger.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        else:
            logger.info("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)

    return handle
