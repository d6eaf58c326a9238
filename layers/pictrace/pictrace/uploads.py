"""Query uploads: a presigned POST into the queries prefix, then a search by that key.

API Gateway and Lambda cap a synchronous request at 6 MB (base64 makes that ~4.5 MB of image), so larger query
images go straight to S3: POST /uploads {"content_type": ...} answers a presigned POST (a URL and the form fields to
send with the file) for a fresh key under the queries prefix, the client POSTs the bytes there, then POST /search
{"key": ...}. S3 enforces the POST's policy: 1 byte to max_bytes, and the Content-Type asked for, one of the image
types PicTrace reads. The bucket's lifecycle rule deletes the uploads after a day. The size is checked again when the
upload is read.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field

from pictrace.errors import BadRequest, ImageTooLarge, NotFound, ObjectTooLarge
from pictrace.settings import Settings
from pictrace.storage import Store

logger = logging.getLogger(__name__)

#: the content types an upload may have (the image type is still detected from the bytes)
UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._/-]{1,1024}$")


@dataclass(frozen=True)
class Upload:
    """Where and how to POST a query image: a multipart form with these fields, then the file (field "file")."""

    key: str
    url: str
    expires_in: int
    fields: dict[str, str] = field(default_factory=dict)
    max_bytes: int = 0
    method: str = "POST"


def new_upload(store: Store, settings: Settings, content_type: str | None) -> Upload:
    """A presigned POST for a new key under the queries prefix, whose policy admits 1 to max_bytes bytes of
    content_type (one of UPLOAD_TYPES, else BadRequest) and nothing else; its fields carry that Content-Type."""
    if content_type not in UPLOAD_TYPES:
        asked = "none was given" if content_type is None else f"not {content_type[:100]!r}"
        raise BadRequest(f"content_type must be one of {', '.join(UPLOAD_TYPES)} ({asked})")
    key = f"{settings.queries_prefix}{uuid.uuid4().hex}"
    url, fields = store.presign_post(key, settings.presign_seconds, settings.max_bytes, content_type, content_type)
    logger.info("presigned an upload to %s", key)
    return Upload(key, url, settings.presign_seconds, fields, settings.max_bytes)


def check_upload_key(settings: Settings, key: str) -> None:
    """BadRequest unless key names an object under the queries prefix (and nothing else: no '..', no '//')."""
    rest = key.removeprefix(settings.queries_prefix)
    if (
        rest == key
        or not rest
        or not _SAFE_KEY.match(key)
        or ".." in key.split("/")
        or "//" in key
        or rest.startswith("/")
    ):
        raise BadRequest(f"key must name an upload under {settings.queries_prefix} (from POST /uploads)")


def read_upload(store: Store, settings: Settings, key: str) -> bytes:
    """The bytes of an uploaded query image; NotFound if nothing was uploaded there, ImageTooLarge over max_bytes."""
    check_upload_key(settings, key)
    try:
        return store.get(key, max_bytes=settings.max_bytes).body
    except NotFound:
        raise NotFound(f"nothing was uploaded to {key} (or it expired)") from None
    except ObjectTooLarge as exc:
        if exc.size is None:  # the body ran past the size S3 announced
            raise ImageTooLarge(f"the upload is over the limit of {settings.max_bytes} bytes") from None
        raise ImageTooLarge(f"the upload is {exc.size} bytes; the limit is {settings.max_bytes} bytes") from None
