"""Query images too large for a request: POST /uploads hands out where to put one under the queries prefix."""

from __future__ import annotations

from fastapi import APIRouter

from pictrace.routes.deps import AppSettings
from pictrace.routes.models import ERRORS, UploadRequest, UploadResponse
from pictrace.storage import Store
from pictrace.uploads import new_upload

router = APIRouter()


@router.post("/uploads", status_code=201, response_model=UploadResponse, responses=ERRORS)
async def uploads(settings: AppSettings, body: UploadRequest | None = None) -> UploadResponse:
    """A presigned POST for a query image too large for a request (6 MB), bounded in size and type by its policy;
    then POST /search {"key": key}."""
    upload = new_upload(Store(settings.bucket), settings, body.content_type if body else None)
    return UploadResponse(
        key=upload.key,
        url=upload.url,
        method=upload.method,
        fields=upload.fields,
        max_bytes=upload.max_bytes,
        expires_in=upload.expires_in,
    )
