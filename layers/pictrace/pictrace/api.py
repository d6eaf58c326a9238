"""The HTTP API (FastAPI): the only place where PicTrace errors become HTTP status codes.

Over ~400 lines on purpose: the HTTP contract (request and response models, the OpenAPI extras) and the routes
that use it are read together."""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from pictrace import __version__
from pictrace.compare import PICTURE_FORMATS, THUMBNAIL_SIDE, evidence_json, load_original, render, thumbnail
from pictrace.embedding import load_model_info
from pictrace.errors import (
    BadRequest,
    ConfigError,
    ConflictError,
    FetchError,
    ImageTooLarge,
    InvalidImage,
    ModelMismatch,
    NotFound,
    PicTraceError,
    UpstreamError,
    WeightsUnavailable,
)
from pictrace.fetch import fetch_url
from pictrace.limits import MAX_SHORTLIST, MAX_TOP_K
from pictrace.modelfetch import ensure_model
from pictrace.rerank import Scores as RerankScores
from pictrace.results import SearchResult
from pictrace.search import Query as SearchQuery
from pictrace.search import SearchService
from pictrace.settings import Settings, get_settings
from pictrace.storage import Store
from pictrace.uploads import UPLOAD_TYPES, new_upload, read_upload
from pictrace.verdict import Scoring
from pictrace.wiring import container_wiring

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")

STATUS: list[tuple[type[PicTraceError], int]] = [
    (ImageTooLarge, 413),
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


# the limits as types: one declaration for the JSON body, the query parameters and the OpenAPI schema
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K)]
Shortlist = Annotated[int, Field(ge=1, le=MAX_SHORTLIST)]


class SearchRequest(BaseModel):
    """JSON body of POST /search: exactly one of url, image_base64, id or key."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, description="http(s) URL of the query image", max_length=2048)
    image_base64: str | None = Field(None, description="the query image, base64-encoded")
    id: str | None = Field(None, description="SHA-256 id of an indexed image", max_length=64)
    key: str | None = Field(None, description="key of a query image uploaded with POST /uploads", max_length=1024)
    top_k: TopK | None = None
    shortlist: Shortlist | None = None
    prefix: str | None = Field(None, description="only images with a key under this prefix", max_length=1024)


class Scores(BaseModel):
    cosine: float = Field(
        description="the model's embedding cosine, centred on its calibration's reference (plain where it has none)"
    )
    gist: float = Field(description="16x16 layout correlation, best of the query's flips and quarter turns")
    ssim: float = Field(description="SSIM of 128x128 grayscale thumbnails (query turned as gist found)")
    geometry: float = Field(description="min(1, inliers / 30)")
    inliers: int = Field(description="ORB matches agreeing on one affine transform (RANSAC)")
    orb: float = Field(description="the seed's ratio: cross-checked ORB matches / query keypoints")
    orb_matches: int
    transform: str = Field(description="how the query was turned to match (identity, flip, rot90, ...)")
    final: float


class Hit(BaseModel):
    id: str
    keys: list[str]
    url: str | None = Field(description="presigned link to the original image")
    scores: Scores
    similarity: float = Field(
        description="how likely the result is a copy of the query, in percent: the final score through the model's "
        "logistic calibration fitted on the benchmark (the final score itself, for a model without one)"
    )
    match: bool | None = Field(
        description="whether the result is a copy of the query (an edited or re-encoded version of the same photo), "
        "by a threshold fitted on the benchmark for precision >= 0.99; null for a model without a calibration"
    )
    rank_cosine: int = Field(description="rank in the cosine shortlist, before the rerank")
    explain: str = Field(description="the signal that weighed most in the final score")


class SearchResponse(BaseModel):
    results: list[Hit]
    timings_ms: dict[str, float]
    query: dict[str, Any]
    indexed: int | None = Field(description="images in the in-memory index (null with the S3 Vectors backend)")
    weights: str
    backend: str


class ErrorResponse(BaseModel):
    detail: str
    error: str


class UploadRequest(BaseModel):
    """Optional JSON body of POST /uploads."""

    model_config = ConfigDict(extra="forbid")
    content_type: str | None = Field(None, description=f"sign the PUT for this type: {', '.join(UPLOAD_TYPES)}")


class UploadResponse(BaseModel):
    key: str = Field(description='the key to search by: POST /search {"key": ...}')
    url: str = Field(description="presigned URL to PUT the image to")
    method: str
    headers: dict[str, str] = Field(description="headers the PUT must carry")
    expires_in: int = Field(description="seconds the URL stays valid")


class Correspondence(BaseModel):
    query: list[float] = Field(description="(x, y) in the query's pixels")
    indexed: list[float] = Field(description="(x, y) in the indexed image's pixels")


class CompareResponse(BaseModel):
    id: str = Field(description="the indexed image compared with")
    keys: list[str]
    match: bool | None = Field(None, description="whether it is a copy of the query (null: no verdict)")
    similarity: float = Field(description="as in search results")
    scores: Scores
    explain: str
    query: dict[str, Any] = Field(description="the query: format and size, or id and keys")
    indexed: dict[str, Any] = Field(description="the indexed image: id, keys, format, width, height, url")
    matches: int = Field(description="ORB matches passing Lowe's ratio test")
    inliers: int = Field(description="those agreeing on one plausible affine transform (RANSAC)")
    mirrored: bool = Field(description="the query matched mirrored left-right")
    correspondences: list[Correspondence] = Field(description="the inliers: query point -> indexed point")
    affine: list[list[float]] | None = Field(
        description="2x3 matrix taking query pixels to indexed pixels (null: under 12 inliers, no transform)"
    )
    transform: dict[str, Any] | None = Field(
        description="the query relative to the indexed image: rotation_degrees (counter-clockwise), scale (query "
        "pixels per indexed pixel), mirrored"
    )
    region: list[list[float]] | None = Field(description="the query's outline mapped into the indexed image")
    region_box: list[float] | None = Field(description="the region's bounding box: x0, y0, x1, y1")
    query_outline: list[list[float]] = Field(description="the outline of the query's content, in its pixels")
    degenerate: bool = Field(
        description="RANSAC's best transform collapses or stretches the query (scale outside 0.1-10, or one direction "
        "3x the other): its agreeing matches are chance, so inliers is 0 and there is no region"
    )
    exact: bool = Field(
        description="false: the indexed side is mapped assuming ingest trimmed no border (the picture is exact)"
    )
    timings_ms: dict[str, float]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in (
        (400, "malformed request"),
        (404, "no such image"),
        (413, "image over a limit"),
        (422, "not an image PicTrace accepts, or the url could not be fetched"),
    )
}

_SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "url": {"type": "string", "minLength": 1, "maxLength": 2048},
                        "image_base64": {"type": "string", "minLength": 1},
                        "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "key": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "top_k": TypeAdapter(TopK).json_schema(),
                        "shortlist": TypeAdapter(Shortlist).json_schema(),
                        "prefix": {"type": "string", "maxLength": 1024},
                    },
                    "oneOf": [
                        {"required": ["url"]},
                        {"required": ["image_base64"]},
                        {"required": ["id"]},
                        {"required": ["key"]},
                    ],
                }
            },
        },
    }
}


_COMPARE_BODY: dict[str, Any] = copy.deepcopy(_SEARCH_BODY)
for _name in ("top_k", "shortlist", "prefix"):  # search's own fields: accepted and ignored by /compare
    del _COMPARE_BODY["requestBody"]["content"]["application/json"]["schema"]["properties"][_name]
_PICTURES: dict[int | str, dict[str, Any]] = {
    200: {"content": {media: {"schema": {"type": "string", "format": "binary"}} for media in PICTURE_FORMATS.values()}}
}


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """The PicTrace API. Settings are read (and checked) now; clients and the model on first use."""
    container = settings is None  # the container's settings: the container's wiring (else one for these settings)
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

    app.state.service = get_service  # the container's SearchService (pictrace.snapstart warms it before a snapshot)

    for exc_type, status in STATUS:
        app.add_exception_handler(exc_type, _handler(status))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/", include_in_schema=False)
    async def root() -> FileResponse:
        """The search page (pictrace/static/index.html; its assets are under /static, no CDN)."""
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, the model's weights and backend, and the number of indexed images last seen."""
        info = load_model_info(ensure_model(settings))
        svc = get_service()
        await asyncio.to_thread(svc.backend.refresh)  # a no-op where the backend holds nothing (S3 Vectors)
        return {
            "status": "ok",
            "version": __version__,
            "weights": info["weights"],
            "backend": "onnxruntime",
            "model": {k: info.get(k) for k in ("architecture", "dim", "preprocess", "precision", "source", "sha256")},
            "indexed": svc.backend.count(),
            "scoring": _scoring(settings.scoring(info["weights"], str(info.get("preprocess") or ""))),
        }

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, openapi_extra=_SEARCH_BODY)
    async def search(
        request: Request,
        top_k: TopK | None = Query(None, description=f"results to return (default {settings.top_k})"),
        shortlist: Shortlist | None = Query(None, description="cosine candidates to rerank"),
        prefix: str | None = Query(
            None, max_length=1024, description="only images with a key under this prefix (a folder, a tenant)"
        ),
    ) -> SearchResponse:
        """Most similar indexed images to a multipart `file`, or JSON `url`, `image_base64` or `id`."""
        query, body_top_k, body_shortlist = await _parse_query(request, settings)
        if prefix:
            query = dataclasses.replace(query, prefix=prefix)
        svc = get_service()
        result = await svc.search(query, top_k or body_top_k, shortlist or body_shortlist)
        return _response(result, svc)

    @app.post("/uploads", status_code=201, response_model=UploadResponse, responses=_ERRORS)
    async def uploads(body: UploadRequest | None = None) -> UploadResponse:
        """A presigned PUT for a query image too large for a request (6 MB); then POST /search {"key": key}."""
        upload = new_upload(Store(settings.bucket), settings, body.content_type if body else None)
        return UploadResponse(
            key=upload.key, url=upload.url, method=upload.method, headers=upload.headers, expires_in=upload.expires_in
        )

    @app.get("/images/{image_id}", responses=_ERRORS)
    async def image(image_id: str) -> dict[str, Any]:
        """An indexed image: its keys, metadata and a presigned link to the original."""
        svc = get_service()
        entry = await svc.entry(image_id)
        return {
            "id": entry.id,
            "keys": list(entry.keys),
            "url": svc.link(entry.keys[0]) if entry.keys else None,
            "meta": entry.meta,
            "keypoints": len(entry.features.keypoints),
        }

    @app.post(
        "/compare",
        response_model=CompareResponse,
        responses={**_ERRORS, **_PICTURES},
        openapi_extra=_COMPARE_BODY,
    )
    async def compare(
        request: Request,
        target: str = Query(description="id of the indexed image to compare the query with", max_length=64),
        format: str | None = Query(
            None, description="json (default), png or jpeg; the Accept header image/png or image/jpeg works too"
        ),
    ) -> Any:
        """Why a query (what /search takes) matches one indexed image: scores, ORB correspondences, the affine
        transform and the matched region as JSON, or a picture of them (format png or jpeg)."""
        kind = (format or _accepted(request.headers.get("accept", ""))).lower()
        if kind not in ("json", *PICTURE_FORMATS):
            raise BadRequest(f"format must be json, {' or '.join(PICTURE_FORMATS)}")
        query, _, _ = await _parse_query(request, settings)
        svc = get_service()
        result = await svc.compare(query, target, picture=kind != "json")
        if kind == "json":
            return CompareResponse(
                id=result.target.id,
                keys=list(result.target.keys),
                match=getattr(result.hit, "match", None),
                similarity=result.hit.similarity,
                scores=_scores(result.hit.scores),
                explain=result.hit.scores.explain,
                query=result.query,
                indexed={
                    "id": result.target.id,
                    "keys": list(result.target.keys),
                    **{k: result.target.meta.get(k) for k in ("format", "width", "height")},
                    "url": result.hit.url,
                },
                **evidence_json(result.evidence),
                timings_ms=result.timings,
            )
        picture = await asyncio.to_thread(render, result, kind)
        region = result.evidence.region
        return Response(
            picture,
            media_type=PICTURE_FORMATS[kind],
            headers={
                "Cache-Control": "no-store",
                "X-PicTrace-Inliers": str(result.evidence.inliers),
                "X-PicTrace-Similarity": f"{result.hit.similarity:.1f}",
                # exact (the original was decoded): x,y of each corner in the indexed image's pixels
                "X-PicTrace-Region": " ".join(f"{x:.1f},{y:.1f}" for x, y in region) if region is not None else "",
            },
        )

    @app.get(
        "/thumbnail/{image_id}",
        response_class=Response,
        responses={**_ERRORS, 200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
    )
    async def thumbnail_of(
        image_id: str, size: int = Query(THUMBNAIL_SIDE, ge=32, le=1024, description="long side, pixels")
    ) -> Response:
        """A small JPEG of an indexed image, for formats browsers cannot show (TIFF): the original read from the
        bucket within the same limits as a query image."""
        svc = get_service()
        entry = await svc.entry(image_id)
        image = await asyncio.to_thread(load_original, svc.store, settings, entry.keys[0])
        data = await asyncio.to_thread(thumbnail, image, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    return app


async def _parse_query(request: Request, settings: Settings) -> tuple[SearchQuery, int | None, int | None]:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("the multipart body needs a 'file' field holding the image")
        data = await upload.read(settings.max_bytes + 1)
        if len(data) > settings.max_bytes:
            raise ImageTooLarge(f"the upload is over the limit of {settings.max_bytes} bytes")
        return SearchQuery(image=data), None, None
    if ctype.startswith("application/json"):
        try:
            body = SearchRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise BadRequest(f"invalid JSON body at {where}: {first.get('msg')}") from None
        given = [name for name in ("url", "image_base64", "id", "key") if getattr(body, name)]
        if len(given) != 1:
            raise BadRequest("give exactly one of url, image_base64, id or key")
        if body.id:
            return SearchQuery(id=body.id, prefix=body.prefix), body.top_k, body.shortlist
        if body.key:
            data = await asyncio.to_thread(read_upload, Store(settings.bucket), settings, body.key)
            return SearchQuery(image=data, prefix=body.prefix), body.top_k, body.shortlist
        if body.image_base64:
            if len(body.image_base64) > settings.max_bytes * 4 // 3 + 4:
                raise ImageTooLarge(f"image_base64 decodes to more than {settings.max_bytes} bytes")
            try:
                data = base64.b64decode(body.image_base64, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest("image_base64 is not valid base64") from None
            return SearchQuery(image=data, prefix=body.prefix), body.top_k, body.shortlist
        assert body.url is not None
        data = await fetch_url(
            body.url,
            max_bytes=settings.max_bytes,
            timeout=settings.url_timeout,
            allow_private=settings.url_allow_private,
        )
        return SearchQuery(image=data, prefix=body.prefix), body.top_k, body.shortlist
    raise BadRequest("send multipart/form-data with a 'file' field, or application/json with url, image_base64 or id")


def _accepted(accept: str) -> str:
    """json, png or jpeg: the first picture type the Accept header names, else json."""
    for part in accept.lower().split(","):
        media = part.split(";")[0].strip()
        for kind, wanted in PICTURE_FORMATS.items():
            if media == wanted:
                return kind
    return "json"


def _scoring(scoring: Scoring) -> dict[str, Any]:
    """The fusion weights in use and how similarity and match are calibrated (verdict None, with the reason, where
    the running configuration has no calibration: every match is then null)."""
    c = scoring.calibration
    verdict = None
    if c is not None:
        verdict = {
            "threshold": c.threshold,
            "precision": c.precision,
            "recall": c.recall,
            "similarity": f"1 / (1 + exp(-({c.a:.3f} * final + {c.b:.3f})))",
            "cosine": "centred on the model's reference" if scoring.centre else "plain",
            "fitted": c.fitted,
        }
    return {
        **dataclasses.asdict(scoring.fusion),
        "final": "sum(weight * signal) / sum(weight) over cosine, gist, ssim, geometry",
        "verdict": verdict,
        "uncalibrated": scoring.reason or None,
    }


def _response(result: SearchResult, svc: SearchService) -> SearchResponse:
    return SearchResponse(
        results=[
            Hit(
                id=h.id,
                keys=list(h.keys),
                url=h.url,
                scores=_scores(h.scores),
                similarity=h.similarity,
                match=h.match,
                rank_cosine=h.rank_cosine,
                explain=h.scores.explain,
            )
            for h in result.results
        ],
        timings_ms=result.timings,
        query=result.query,
        indexed=result.indexed,
        weights=svc.embedder.weights,
        backend=svc.embedder.backend,
    )


def _scores(s: RerankScores) -> Scores:
    return Scores(
        cosine=round(s.cosine, 6),
        gist=round(s.gist, 6),
        ssim=round(s.ssim, 6),
        geometry=round(s.geometry, 6),
        inliers=s.inliers,
        orb=round(s.orb, 6),
        orb_matches=s.orb_matches,
        transform=s.transform,
        final=round(s.final, 6),
    )


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
