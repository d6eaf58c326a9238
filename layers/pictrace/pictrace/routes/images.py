"""Indexed images: GET /images/{id} (keys, metadata, a presigned link) and /thumbnail/{id} (a small JPEG)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from pictrace.compare import THUMBNAIL_SIDE, load_original, thumbnail
from pictrace.routes.deps import AppSettings, Service
from pictrace.routes.models import ERRORS

router = APIRouter()


@router.get("/images/{image_id}", responses=ERRORS)
async def image(image_id: str, svc: Service) -> dict[str, Any]:
    """An indexed image: its keys, metadata and a presigned link to the original."""
    entry = await svc.entry(image_id)
    return {
        "id": entry.id,
        "keys": list(entry.keys),
        "url": svc.link(entry.keys[0]) if entry.keys else None,
        "meta": entry.meta,
        "keypoints": len(entry.features.keypoints),
    }


@router.get(
    "/thumbnail/{image_id}",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def thumbnail_of(
    image_id: str,
    settings: AppSettings,
    svc: Service,
    size: int = Query(THUMBNAIL_SIDE, ge=32, le=1024, description="long side, pixels"),
) -> Response:
    """A small JPEG of an indexed image, for formats browsers cannot show (TIFF): the original read from the
    bucket within the same limits as a query image."""
    entry = await svc.entry(image_id)
    picture = await asyncio.to_thread(load_original, svc.store, settings, entry.keys[0])
    data = await asyncio.to_thread(thumbnail, picture, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
