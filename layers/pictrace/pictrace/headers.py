"""What an image file says about itself, read the way its decoder reads it, before a pixel is decoded.

The pixel limit is only as good as the dimensions it is checked against: a header that the decoder would read
otherwise than this parser (a second SOF, a second IHDR, a TIFF tag named twice, a WebP canvas that disagrees with
its bitstream, an unknown BMP header) is refused as ambiguous rather than guessed at. A JPEG's structure is walked
whole: its scans (each one a full pass of the decoder over the image) and its markers are counted and capped, as are
the chunks a PNG or WebP holds before its image data, so that reading a header costs little whatever the file.
What slips past these checks is still bounded while it decodes (pictrace.images: the decoder's own pixel ceiling, a
time and CPU budget, and the decoded array checked against these dimensions).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from pictrace.errors import InvalidImage

#: a progressive JPEG has about 10 scans; each one costs a pass over every coefficient of the image
MAX_JPEG_SCANS = 64
#: markers (segments) a JPEG may hold: real files have a few dozen
MAX_JPEG_MARKERS = 2000
#: chunks a PNG or WebP may hold before its image data: real files have a handful
MAX_CHUNKS = 2000
#: the JPEG frame markers (SOF0-15 but DHT, JPG, DAC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: BITMAPCOREHEADER, BITMAPINFOHEADER and its versions 2 to 5: what BMP decoders read
_BMP_HEADERS = frozenset({12, 40, 52, 56, 64, 108, 124})
#: fill bytes before a marker code (any number may precede one)
_FILL = re.compile(rb"\xff+")
#: where a scan's entropy-coded data ends: a 0xFF that is neither stuffing (0xFF00) nor a restart marker (RSTn)
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def read_dimensions(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) as the decoder will read them; InvalidImage when the header is corrupt or ambiguous."""
    try:
        dims = _READERS[fmt](data)
    except (struct.error, IndexError, ValueError):
        dims = None
    if dims is None or dims[0] <= 0 or dims[1] <= 0:
        raise InvalidImage(f"corrupt {fmt.upper()} header: could not read the image dimensions")
    return dims


def _ambiguous(fmt: str, what: str) -> InvalidImage:
    return InvalidImage(f"ambiguous {fmt} header: {what}; refused rather than guessing which one the decoder reads")


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Walk every marker, through the entropy-coded data of each scan (0xFF00 stuffing, RSTn markers)."""
    i, n = 2, len(data)
    dims: tuple[int, int] | None = None
    scans = markers = 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            return dims  # garbage where a marker belongs: the decoder stops here too
        fill = _FILL.match(data, i)
        i = fill.end() - 1 if fill else i  # the last 0xFF before the marker code, past any fill bytes
        if i + 4 > n:
            break
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            break
        markers += 1  # standalone ones too: each costs a step of this walk
        if markers > MAX_JPEG_MARKERS:
            raise InvalidImage(f"JPEG holds more than {MAX_JPEG_MARKERS} markers: refused (a real one has dozens)")
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            return None
        if marker in _SOF:
            if dims is not None:
                raise _ambiguous("JPEG", "more than one frame (SOF) marker")
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            dims = (w, h)
        elif marker == 0xDC:  # DNL: the height given after the first scan
            raise _ambiguous("JPEG", "a DNL marker redefines the height")
        i += 2 + length
        if marker == 0xDA:  # SOS: skip the scan's entropy-coded data
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise InvalidImage(
                    f"progressive JPEG with more than {MAX_JPEG_SCANS} scans: refused (a real one has about 10, and "
                    "each costs a full decoding pass)"
                )
            i = _next_marker(data, i)
    return dims


def _next_marker(data: bytes, i: int) -> int:
    """Where the marker after a scan's entropy-coded data starting at i is (past the end if none)."""
    found = _SCAN_END.search(data, i)
    return found.start() if found else len(data)


def _png(data: bytes) -> tuple[int, int] | None:
    """IHDR must be the first chunk and the only one (libpng reads the first)."""
    if data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    i = 8
    for _chunk in _chunks("PNG"):
        if i + 8 > len(data):
            break
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if kind == b"IHDR" and i != 8:
            raise _ambiguous("PNG", "more than one IHDR chunk")
        if kind in (b"IDAT", b"IEND"):
            break
        i += 12 + length
    return w, h


def _webp(data: bytes) -> tuple[int, int] | None:
    """The image's own dimensions; with a VP8X canvas, the bitstream's must agree with it (animations: the canvas,
    whose frames the decoder does not read)."""
    chunk = data[12:16]
    if chunk == b"VP8 ":
        return _vp8(data, 12)
    if chunk == b"VP8L":
        return _vp8l(data, 12)
    if chunk != b"VP8X":
        return None
    canvas = (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
    i = 30
    for _chunk in _chunks("WebP"):
        if i + 8 > len(data):
            break
        kind = data[i : i + 4]
        (size,) = struct.unpack("<I", data[i + 4 : i + 8])
        inner = _vp8(data, i) if kind == b"VP8 " else _vp8l(data, i) if kind == b"VP8L" else None
        if inner is not None:
            if inner != canvas:
                raise _ambiguous("WebP", f"canvas {canvas[0]}x{canvas[1]} but image {inner[0]}x{inner[1]}")
            break
        if kind == b"ANMF":
            break
        i += 8 + size + (size & 1)
    return canvas


def _chunks(fmt: str) -> Iterator[int]:
    """Count the chunks walked before the image data; InvalidImage past MAX_CHUNKS."""
    yield from range(MAX_CHUNKS)
    raise InvalidImage(f"{fmt} holds more than {MAX_CHUNKS} chunks before its image data: refused")


def _vp8(data: bytes, at: int) -> tuple[int, int]:
    w, h = struct.unpack("<HH", data[at + 14 : at + 18])
    return w & 0x3FFF, h & 0x3FFF


def _vp8l(data: bytes, at: int) -> tuple[int, int]:
    b = data[at + 9 : at + 13]
    w = 1 + (((b[1] & 0x3F) << 8) | b[0])
    h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
    return w, h


def _bmp(data: bytes) -> tuple[int, int] | None:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size not in _BMP_HEADERS:
        raise InvalidImage(f"BMP with an unknown header ({header_size} bytes): refused")
    if header_size == 12:
        w, h = struct.unpack("<HH", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff(data: bytes) -> tuple[int, int] | None:
    """The first IFD's (the page decoded): each dimension named once, as one SHORT or LONG."""
    endian = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        tag, typ, n = struct.unpack(endian + "HHI", entry[:8])
        if tag not in (256, 257):
            continue
        if tag in found:
            raise _ambiguous("TIFF", f"tag {tag} ({'width' if tag == 256 else 'height'}) is named twice")
        if typ not in (3, 4) or n != 1:
            raise _ambiguous("TIFF", f"tag {tag} is not one SHORT or LONG")
        found[tag] = struct.unpack(endian + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


_READERS = {"jpeg": _jpeg, "png": _png, "webp": _webp, "bmp": _bmp, "tiff": _tiff}
