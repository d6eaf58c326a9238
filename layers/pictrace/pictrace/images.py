"""Image validation and decoding: type from the bytes, limits before decoding (pictrace.headers reads the header
as the decoder does), OpenCV to decode within a pixel ceiling of its own and a time and CPU budget (in a child
process, pictrace.decodebudget), and the decoded array checked against the header."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from pictrace.decodebudget import decode_bounded
from pictrace.errors import DecodeTooCostly, ImageTooLarge, InvalidImage
from pictrace.headers import read_dimensions
from pictrace.limits import DECODER_MAX_PIXELS

# OpenCV's own ceiling on the pixels a header may declare, read once when it first decodes: the decoder refuses past
# it whatever this module's parsing made of the header. Set before cv2 is imported.
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(DECODER_MAX_PIXELS)

import cv2

logger = logging.getLogger(__name__)

# OpenCV registers its codecs on first use, under a lock: done now, so that no decode's child process is forked while
# another thread holds that lock
cv2.imdecode(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1], cv2.IMREAD_COLOR)

#: the longest one decode may take, in wall-clock and in CPU time; past it the image is refused and its decode ended
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
    factor = dict((f, r) for r, f in _JPEG_REDUCTIONS).get(flags, 1) if fmt == "jpeg" else 1
    expected = (-(-height // factor), -(-width // factor))
    bgr = _decode_within_budget(data, flags, fmt, expected, header=f"{width}x{height}")
    if bgr.dtype != np.uint8:
        bgr = cv2.convertScaleAbs(bgr, alpha=255.0 / 65535.0)
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return DecodedImage(bgr=np.ascontiguousarray(bgr), format=fmt, width=width, height=height)


def _decode_within_budget(data: bytes, flags: int, fmt: str, expected: tuple[int, int], header: str) -> np.ndarray:
    """cv2.imdecode within DECODE_SECONDS of time and CPU (DecodeTooCostly past them, the decode ended): an array
    of the expected (height, width), either way round (EXIF orientation turns it), or InvalidImage."""

    def decode() -> np.ndarray | None:
        try:
            return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        except cv2.error:
            return None

    outcome = decode_bounded(decode, capacity=expected[0] * expected[1] * 3, seconds=DECODE_SECONDS)
    if outcome.timed_out:
        logger.warning("a %s of %d bytes took over %.0f s to decode: refused", fmt.upper(), len(data), DECODE_SECONDS)
        raise DecodeTooCostly(
            f"the {fmt.upper()} took more than {DECODE_SECONDS:g} s to decode: refused as too costly to read"
        )
    if outcome.shape is None:
        raise InvalidImage(f"could not decode the {fmt.upper()} data: the file is corrupt")
    if outcome.shape[:2] not in (expected, expected[::-1]):
        raise InvalidImage(
            f"the {fmt.upper()} decoded as {outcome.shape[1]}x{outcome.shape[0]} but its header says {header}: refused"
        )
    if outcome.pixels is None:
        raise InvalidImage(f"the {fmt.upper()} decoded to more data than its header allows: refused")
    return outcome.pixels
