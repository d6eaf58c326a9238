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


class WeightsUnavailable(PicTraceError):
    """The requested model weights cannot be had here; the message says how to provide them."""


class ModelMismatch(PicTraceError):
    """The model artifact holds other weights than the ones configured."""


class NotFound(PicTraceError):
    """An indexed image, entry or object does not exist."""


class BadRequest(PicTraceError):
    """The request is malformed (missing or conflicting fields)."""


class FetchError(PicTraceError):
    """A query URL could not be fetched (refused, unreachable, too large, wrong type)."""


class ConflictError(PicTraceError):
    """A conditional write kept losing a race after its retries."""


class UpstreamError(PicTraceError):
    """A service PicTrace depends on (the bucket) failed or could not be reached."""
