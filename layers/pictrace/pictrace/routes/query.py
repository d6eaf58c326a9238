"""How a /search or /compare request's body becomes a SearchQuery: a multipart file, or JSON with exactly one of
url, image_base64, id or key (an upload under the queries prefix), each within the settings' limits."""

from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from pictrace.errors import BadRequest, ImageTooLarge
from pictrace.fetch import fetch_url
from pictrace.routes.models import SearchRequest
from pictrace.search import SearchQuery
from pictrace.settings import Settings
from pictrace.storage import Store
from pictrace.uploads import read_upload


async def parse_query(request: Request, settings: Settings) -> tuple[SearchQuery, int | None, int | None]:
    """The query a /search or /compare request carries (a multipart file, or JSON url, image_base64, id or key),
    with the JSON body's top_k and shortlist."""
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
