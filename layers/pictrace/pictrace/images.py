"""Image validation and decoding: type from the bytes, limits before decoding, OpenCV to decode."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from pictrace.errors import ImageTooLarge, InvalidImage

# OpenCV's own ceiling on decoded pixels: a second line of defence behind the header check below.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2

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


def read_dimensions(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) read from the file header without decoding pixels."""
    try:
        dims = _DIMENSION_READERS[fmt](data)
    except (struct.error, IndexError, ValueError):
        dims = None
    if dims is None or dims[0] <= 0 or dims[1] <= 0:
        raise InvalidImage(f"corrupt {fmt.upper()} header: could not read the image dimensions")
    return dims


def _jpeg_dims(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _png_dims(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _webp_dims(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    return None


def _bmp_dims(data: bytes) -> tuple[int, int] | None:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:
        w, h = struct.unpack("<hh", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff_dims(data: bytes) -> tuple[int, int] | None:
    endian = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    w = h = None
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, typ = struct.unpack(endian + "HH", entry[:4])
        value = struct.unpack(endian + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
        if tag == 256:
            w = value
        elif tag == 257:
            h = value
    return (w, h) if w is not None and h is not None else None


_DIMENSION_READERS = {
    "jpeg": _jpeg_dims,
    "png": _png_dims,
    "webp": _webp_dims,
    "bmp": _bmp_dims,
    "tiff": _tiff_dims,
}


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
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buf, flags)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0:
        raise InvalidImage(f"could not decode the {fmt.upper()} data: the file is corrupt")
    if bgr.dtype != np.uint8:
        bgr = cv2.convertScaleAbs(bgr, alpha=255.0 / 65535.0)
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return DecodedImage(bgr=np.ascontiguousarray(bgr), format=fmt, width=width, height=height)
