"""Image validation and decoding: type from the bytes, limits before decoding (pictrace.headers reads the header
as the decoder does), OpenCV to decode within a pixel ceiling of its own and a time budget, and the decoded array
checked against the header."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from pictrace.errors import DecodeTooCostly, ImageTooLarge, InvalidImage
from pictrace.headers import read_dimensions
from pictrace.limits import DECODER_MAX_PIXELS

# OpenCV's own ceiling on the pixels a header may declare, read once when it first decodes: the decoder refuses past
# it whatever this module's parsing made of the header. Set before cv2 is imported.
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(DECODER_MAX_PIXELS)

import cv2

logger = logging.getLogger(__name__)

#: the longest one decode may take; past it the image is refused (its decode runs on to its end in the background)
DECODE_SECONDS = 10.0

SUPPORTED = ("jpeg", "png", "webp", "bmp", "tiff")
#: decoded images keep at least this many pixels on their long side unless the caller says what it needs
#: (large JPEGs are reduced while decoding)
DECODE_LONG_SIDE = 1024
#: the reductions a JPEG can be decoded at (libjpeg scales in the DCT), largest first
_JPEG_REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: BGR uint8 pixels plus what the file said about itself."""

    bgr: np.ndarray
    format: str
    width: int  # of the original file, before any reduction
    height: int


def sniff_format(data: bytes) -> str | None:
    """The image type from its magic bytes, or None when it is none of the supported ones."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _looks_complete(data: bytes, fmt: str) -> bool:
    if fmt == "jpeg":
        return b"\xff\xd9" in data[-4096:]
    if fmt == "png":
        return b"IEND" in data[-64:]
    return True


def reduction(width: int, height: int, short_side: int = 0, long_side: int = DECODE_LONG_SIDE) -> int:
    """The largest JPEG reduction (1, 2, 4 or 8) whose decoded image keeps at least short_side pixels on its short
    side and long_side on its long side (a reduced side is the original's divided by it, rounded up)."""
    short, long = min(width, height), max(width, height)
    for factor, _flag in _JPEG_REDUCTIONS:
        if -(-short // factor) >= short_side and -(-long // factor) >= long_side:
            return factor
    return 1


def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, short_side: int = 0, long_side: int = DECODE_LONG_SIDE
) -> DecodedImage:
    """Validate and decode image bytes into BGR pixels; raise InvalidImage/ImageTooLarge saying what is wrong.

    short_side, long_side: the pixels the decoded image must keep on its short and long side (or all it has); a
    JPEG is decoded reduced (reduction) when that still leaves them, other formats at full size."""
    if not data:
        raise InvalidImage("empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes} bytes (max_bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise InvalidImage("not a supported image: expected JPEG, PNG, WebP, BMP or TIFF content")
    width, height = read_dimensions(data, fmt)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels (max_pixels)"
        )
    if not _looks_complete(data, fmt):
        raise InvalidImage(f"truncated {fmt.upper()}: the file ends before the image data does")
    flags = cv2.IMREAD_COLOR
    if fmt == "jpeg":
        flags = dict(_JPEG_REDUCTIONS).get(reduction(width, height, short_side, long_side), cv2.IMREAD_COLOR)
    bgr = _decode_within_budget(data, flags, fmt)
    if bgr is None or bgr.size == 0:
        raise InvalidImage(f"could not decode the {fmt.upper()} data: the file is corrupt")
    factor = dict((f, r) for r, f in _JPEG_REDUCTIONS).get(flags, 1) if fmt == "jpeg" else 1
    expected = (-(-height // factor), -(-width // factor))
    if bgr.shape[:2] not in (expected, expected[::-1]):  # either way round: EXIF orientation turns it
        raise InvalidImage(
            f"the {fmt.upper()} decoded as {bgr.shape[1]}x{bgr.shape[0]} but its header says {width}x{height}: refused"
        )
    if bgr.dtype != np.uint8:
        bgr = cv2.convertScaleAbs(bgr, alpha=255.0 / 65535.0)
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return DecodedImage(bgr=np.ascontiguousarray(bgr), format=fmt, width=width, height=height)


def _decode_within_budget(data: bytes, flags: int, fmt: str) -> np.ndarray | None:
    """cv2.imdecode on a thread of its own (OpenCV releases the GIL), waited for at most DECODE_SECONDS:
    DecodeTooCostly past that, so that a request or an ingest never hangs on one image."""
    result: list[np.ndarray | None] = []

    def decode() -> None:
        try:
            result.append(cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags))
        except cv2.error:
            result.append(None)

    worker = threading.Thread(target=decode, name="pictrace-decode", daemon=True)
    worker.start()
    worker.join(DECODE_SECONDS)
    if worker.is_alive():
        logger.warning("a %s of %d bytes took over %.0f s to decode: refused", fmt.upper(), len(data), DECODE_SECONDS)
        raise DecodeTooCostly(
            f"the {fmt.upper()} took more than {DECODE_SECONDS:g} s to decode: refused as too costly to read"
        )
    return result[0] if result else None
