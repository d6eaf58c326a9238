"""The HTTP contract shared by the routes: request and response models, the limits as types, the OpenAPI extras
of the bodies /search and /compare parse themselves, and the conversions from the service's results."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pictrace.compare import PICTURE_FORMATS
from pictrace.limits import MAX_SHORTLIST, MAX_TOP_K
from pictrace.rerank import Scores
from pictrace.results import SearchResult
from pictrace.search import SearchService
from pictrace.uploads import UPLOAD_TYPES

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


class ScoresOut(BaseModel):
    """A result's per-signal scores."""

    cosine: float = Field(
        description="the model's embedding cosine, centred on its calibration's reference (plain where it has none); "
        "where either image frames a photo (a screenshot's window): the framed photo's cosine, or the whole pictures' "
        "if higher, up to 0.05 above it"
    )
    gist: float = Field(description="16x16 layout correlation, best of the query's flips and quarter turns")
    ssim: float = Field(description="SSIM of 128x128 grayscale thumbnails (query turned as gist found)")
    geometry: float = Field(description="min(1, inliers / 30)")
    inliers: int = Field(description="ORB matches agreeing on one affine transform (RANSAC)")
    orb: float = Field(description="the seed's ratio: cross-checked ORB matches / query keypoints")
    orb_matches: int
    transform: str = Field(description="how the query was turned to match (identity, flip, rot90, ...)")
    final: float
    region: float = Field(0.0, description="best centred cosine of a region of the query with it (0: not searched)")
    region_inliers: int = Field(0, description="ORB inliers of that region with it (0: not verified)")
    detail: float = Field(0.0, description="best centred cosine of the query with a detail of it (0: none searched)")
    template: bool = Field(
        False,
        description="the geometric check aligns the two but most of what they show differs: the same template (a "
        "watermark, a caption band) around different pictures, so the result is not called a copy",
    )


class HitOut(BaseModel):
    """One search result."""

    id: str
    keys: list[str]
    url: str | None = Field(description="presigned link to the original image")
    scores: ScoresOut
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
    results: list[HitOut]
    timings_ms: dict[str, float]
    query: dict[str, Any]
    indexed: int | None = Field(description="images in the in-memory index (null with the S3 Vectors backend)")
    weights: str
    backend: str


class ErrorResponse(BaseModel):
    detail: str
    error: str


class UploadRequest(BaseModel):
    """JSON body of POST /uploads."""

    model_config = ConfigDict(extra="forbid")
    content_type: str | None = Field(
        None,
        description=f"required: the image's type, one of {', '.join(UPLOAD_TYPES)} (400 otherwise); the upload's "
        "policy admits that type only",
    )


class UploadResponse(BaseModel):
    key: str = Field(description='the key to search by: POST /search {"key": ...}')
    url: str = Field(description="where to POST the image: a multipart form with `fields`, then the file as `file`")
    method: str = Field(description="POST")
    fields: dict[str, str] = Field(
        description="form fields the POST must carry first, as given (key, Content-Type, policy, signature, ...)"
    )
    max_bytes: int = Field(description="the largest file S3 accepts there")
    expires_in: int = Field(description="seconds the URL stays valid")


class Correspondence(BaseModel):
    query: list[float] = Field(description="(x, y) in the query's pixels")
    indexed: list[float] = Field(description="(x, y) in the indexed image's pixels")


class CompareResponse(BaseModel):
    id: str = Field(description="the indexed image compared with")
    keys: list[str]
    match: bool | None = Field(None, description="whether it is a copy of the query (null: no verdict)")
    similarity: float = Field(description="as in search results")
    scores: ScoresOut
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
    original_region: list[list[float]] | None = Field(
        None, description="the indexed image's outline mapped into the query (where the original sits in it)"
    )
    original_region_box: list[float] | None = Field(None, description="its bounding box: x0, y0, x1, y1")
    inset: bool = Field(
        False,
        description="the original sits inside the query (an inset, a collage, a screenshot): original_region says "
        "where; false: the query lies in (or on all of) the original, where region says",
    )
    degenerate: bool = Field(
        description="RANSAC's best transform collapses or stretches the query (scale outside 0.1-10, or one direction "
        "3x the other): its agreeing matches are chance, so inliers is 0 and there is no region"
    )
    agreement: float | None = Field(
        None,
        description="with at least 50 inliers: the share of the 16x16 blocks of their 128x128 thumbnails, the "
        "smaller moved onto the larger by the transform, in which the two agree (null: not judged)",
    )
    template: bool = Field(False, description="agreement under 0.4: a template shared around different pictures")
    exact: bool = Field(
        description="false: the indexed side is mapped assuming ingest trimmed no border (the picture is exact)"
    )
    timings_ms: dict[str, float]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in (
        (400, "malformed request"),
        (404, "no such image"),
        (413, "image over a limit"),
        (422, "not an image PicTrace accepts, or the url could not be fetched"),
    )
}

SEARCH_BODY = {
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


COMPARE_BODY: dict[str, Any] = copy.deepcopy(SEARCH_BODY)
for _name in ("top_k", "shortlist", "prefix"):  # search's own fields: accepted and ignored by /compare
    del COMPARE_BODY["requestBody"]["content"]["application/json"]["schema"]["properties"][_name]
PICTURES: dict[int | str, dict[str, Any]] = {
    200: {"content": {media: {"schema": {"type": "string", "format": "binary"}} for media in PICTURE_FORMATS.values()}}
}


def search_response(result: SearchResult, svc: SearchService) -> SearchResponse:
    """A search's result as the API answers it."""
    return SearchResponse(
        results=[
            HitOut(
                id=h.id,
                keys=list(h.keys),
                url=h.url,
                scores=scores_out(h.scores),
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


def scores_out(s: Scores) -> ScoresOut:
    """A result's scores as the API answers them (rounded)."""
    return ScoresOut(
        cosine=round(s.cosine, 6),
        gist=round(s.gist, 6),
        ssim=round(s.ssim, 6),
        geometry=round(s.geometry, 6),
        inliers=s.inliers,
        orb=round(s.orb, 6),
        orb_matches=s.orb_matches,
        transform=s.transform,
        final=round(s.final, 6),
        region=round(s.region, 6),
        region_inliers=s.region_inliers,
        detail=round(s.detail, 6),
        template=s.template,
    )
