"""Every exception PicTrace raises on purpose. Only the API layer maps them to HTTP status codes."""

from __future__ import annotations


class PicTraceError(Exception):
    """Base class: something PicTrace detected and can explain."""


class ConfigError(PicTraceError):
    """A setting is missing or invalid; the message says what to set."""


class InvalidImage(PicTraceError):
    """The bytes are not an image PicTrace accepts (unknown type, corrupt, truncated, empty)."""


class ImageTooLarge(InvalidImage):
    """The image exceeds a configured limit; the message names the limit."""


class DecodeTooCostly(InvalidImage):
    """Decoding the image ran past its time budget (pictrace.images.DECODE_SECONDS): refused, not retried."""


class WeightsUnavailable(PicTraceError):
    """The requested model weights cannot be had here; the message says how to provide them."""


class ModelMismatch(PicTraceError):
    """The model artifact holds other weights than the ones configured."""


class NotFound(PicTraceError):
    """An indexed image, entry or object does not exist."""


class ObjectTooLarge(PicTraceError):
    """A stored object larger than a read allowed (pictrace.storage.Store.get); its bytes were not kept.

    size: its size as S3 announced it, or None when the body ran past the limit it announced itself within.
    """

    def __init__(self, key: str, size: int | None) -> None:
        super().__init__(f"{key} is {size} bytes" if size is not None else f"{key} is larger than announced")
        self.key = key
        self.size = size

    @property
    def amount(self) -> str:
        """Its size for a message: "<size> bytes", or "over the limit" when S3 did not say."""
        return f"{self.size} bytes" if self.size is not None else "over the limit"


class BadRequest(PicTraceError):
    """The request is malformed (missing or conflicting fields)."""


class FetchError(PicTraceError):
    """A query URL could not be fetched (refused, unreachable, too large, wrong type)."""


class ConflictError(PicTraceError):
    """A conditional write kept losing a race after its retries."""


class UpstreamError(PicTraceError):
    """A service PicTrace depends on (the bucket) failed or could not be reached."""
