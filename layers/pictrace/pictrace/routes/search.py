"""Searching: POST /search (the indexed images most similar to a query) and POST /compare (why a query matches
one indexed image: the evidence as JSON or a picture)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pictrace.compare import PICTURE_FORMATS, evidence_json, render
from pictrace.errors import BadRequest
from pictrace.routes.deps import AppSettings, Service
from pictrace.routes.models import (
    COMPARE_BODY,
    ERRORS,
    PICTURES,
    SEARCH_BODY,
    CompareResponse,
    SearchResponse,
    Shortlist,
    TopK,
    scores_out,
    search_response,
)
from pictrace.routes.query import parse_query

router = APIRouter()


@router.post("/search", response_model=SearchResponse, responses=ERRORS, openapi_extra=SEARCH_BODY)
async def search(
    request: Request,
    settings: AppSettings,
    svc: Service,
    top_k: TopK | None = Query(None, description="results to return (default: the service's PICTRACE_TOP_K, 10)"),
    shortlist: Shortlist | None = Query(None, description="cosine candidates to rerank"),
    prefix: str | None = Query(
        None, max_length=1024, description="only images with a key under this prefix (a folder, a tenant)"
    ),
) -> SearchResponse:
    """Most similar indexed images to a multipart `file`, or JSON `url`, `image_base64` or `id`."""
    query, body_top_k, body_shortlist = await parse_query(request, settings)
    if prefix:
        query = dataclasses.replace(query, prefix=prefix)
    result = await svc.search(query, top_k or body_top_k, shortlist or body_shortlist)
    return search_response(result, svc)


@router.post(
    "/compare",
    response_model=CompareResponse,
    responses={**ERRORS, **PICTURES},
    openapi_extra=COMPARE_BODY,
)
async def compare(
    request: Request,
    settings: AppSettings,
    svc: Service,
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
    query, _, _ = await parse_query(request, settings)
    result = await svc.compare(query, target, picture=kind != "json")
    if kind == "json":
        return CompareResponse(
            id=result.target.id,
            keys=list(result.target.keys),
            match=getattr(result.hit, "match", None),
            similarity=result.hit.similarity,
            scores=scores_out(result.hit.scores),
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


def _accepted(accept: str) -> str:
    """json, png or jpeg: the first picture type the Accept header names, else json."""
    for part in accept.lower().split(","):
        media = part.split(";")[0].strip()
        for kind, wanted in PICTURE_FORMATS.items():
            if media == wanted:
                return kind
    return "json"
