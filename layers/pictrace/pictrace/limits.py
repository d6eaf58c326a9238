"""The limits: one source of the numbers, for the HTTP schema, the settings and the service's own checks."""

from __future__ import annotations

from typing import TypeGuard

from pictrace.errors import BadRequest

#: the most pixels an image may declare (Settings.max_pixels' default and ceiling): OpenCV's own decoder refuses
#: past it too (pictrace.images sets its OPENCV_IO_MAX_IMAGE_PIXELS)
DECODER_MAX_PIXELS = 50_000_000
MAX_TOP_K = 100  # results per search
MAX_SHORTLIST = 500  # candidates reranked per search


def check_search_limits(top_k: int, shortlist: int) -> None:
    """BadRequest unless 1 <= top_k <= MAX_TOP_K and 1 <= shortlist <= MAX_SHORTLIST."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K}")
    if not 1 <= shortlist <= MAX_SHORTLIST:
        raise BadRequest(f"shortlist must be between 1 and {MAX_SHORTLIST}")


def is_entry_id(text: object) -> TypeGuard[str]:
    """Whether the text is an entry's id: the 64-character lowercase hex SHA-256 of an image's bytes."""
    return isinstance(text, str) and len(text) == 64 and set(text) <= set("0123456789abcdef")


def check_entry_id(entry_id: str) -> None:
    """BadRequest unless entry_id is an entry's id (is_entry_id)."""
    if not is_entry_id(entry_id):
        raise BadRequest("id must be the 64-character lowercase hex SHA-256 of an indexed image")
