"""Issue 26: no image bomb of any format, by construction. Each trick a crafted file: a header read otherwise than the
decoder reads it is refused as ambiguous, a JPEG's scans and markers are capped, the decoder's own pixel ceiling is
set, the decoded array must match the header, and a decode that runs past its budget is refused, never waited for."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from pictrace import images
from pictrace.errors import DecodeTooCostly, ImageTooLarge, InvalidImage
from pictrace.headers import MAX_JPEG_MARKERS, MAX_JPEG_SCANS
from pictrace.images import decode_image
from pictrace.limits import DECODER_MAX_PIXELS
from PIL import Image

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}


def quick(data: bytes) -> None:
    """Decode, and make sure a refusal came fast (a bomb that got through would take seconds to minutes)."""
    started = time.monotonic()
    try:
        decode_image(data, **LIMITS)
    finally:
        assert time.monotonic() - started < 2.0


def progressive_jpeg(side: int = 512) -> bytes:
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack([np.add.outer(ramp, ramp) // 2] * 3, axis=-1).astype(np.uint8)  # smooth: small scans
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every marker segment, scans with their entropy-coded data."""
    found, i = [], 2
    while i < len(data) - 1:
        marker = data[i + 1]
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        found.append((i, end))
        i = end
    return found


def test_a_progressive_jpeg_whose_last_scan_repeats_thousands_of_times_is_refused_before_decoding() -> None:
    data = progressive_jpeg()
    decode_image(data, **LIMITS)  # the real one decodes
    start, end = [s for s in segments(data) if data[s[0] + 1] == 0xDA][-1]
    bomb = data[:end] + data[start:end] * 3000 + data[end:]
    with pytest.raises(InvalidImage, match=f"more than {MAX_JPEG_SCANS} scans"):
        quick(bomb)


def test_a_jpeg_of_endless_markers_is_refused() -> None:
    data = progressive_jpeg(64)
    comments = b"\xff\xfe\x00\x04hi" * (MAX_JPEG_MARKERS + 1)
    with pytest.raises(InvalidImage, match="markers"):
        quick(data[:2] + comments + data[2:])


def test_a_jpeg_with_two_frame_headers_is_ambiguous() -> None:
    data = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    sof = data.index(b"\xff\xc0")
    (length,) = struct.unpack(">H", data[sof + 2 : sof + 4])
    frame = bytearray(data[sof : sof + 2 + length])
    frame[5:9] = struct.pack(">HH", 9000, 9000)  # a second frame, after the first, claiming 9000x9000
    bomb = data[: sof + 2 + length] + bytes(frame) + data[sof + 2 + length :]
    with pytest.raises(InvalidImage, match="ambiguous JPEG"):
        quick(bomb)


def test_a_jpeg_with_a_dnl_marker_is_ambiguous() -> None:
    data = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    eoi = data.rindex(b"\xff\xd9")
    with pytest.raises(InvalidImage, match="DNL"):
        quick(data[:eoi] + b"\xff\xdc\x00\x04\x23\x28" + data[eoi:])


def tiff(entries: list[tuple[int, int, int]], pixels: bytes) -> bytes:
    """A little-endian grayscale TIFF with these (tag, type, value) IFD entries, in the order given."""
    offset = 8 + 2 + 12 * (len(entries) + 3) + 4
    fixed = [*entries, (273, 4, offset), (278, 4, 16), (279, 4, len(pixels))]
    ifd = struct.pack("<H", len(fixed))
    for tag, typ, value in fixed:
        ifd += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + pixels


def test_a_tiff_that_names_its_size_twice_is_ambiguous() -> None:
    """The issue's file: the real 9000x8000 first, 16x16 last (the decoder reads the first, the old parser the last)."""
    common = [(258, 3, 8), (259, 3, 1), (262, 3, 1)]
    honest = tiff([(256, 4, 16), (257, 4, 16), *common], b"\x80" * 256)
    assert decode_image(honest, **LIMITS).bgr.shape == (16, 16, 3)
    bomb = tiff([(256, 4, 9000), (257, 4, 8000), (256, 4, 16), (257, 4, 16), *common], b"\x80" * 256)
    with pytest.raises(InvalidImage, match=r"ambiguous TIFF.*named twice"):
        quick(bomb)
    with pytest.raises(ImageTooLarge):  # named once, the real size is over the limit
        quick(tiff([(256, 4, 9000), (257, 4, 8000), *common], b"\x80" * 256))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_png_with_a_second_ihdr_is_ambiguous() -> None:
    data = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    second = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    bomb = data[:33] + second + data[33:]  # after the real IHDR (8 + 25 bytes)
    with pytest.raises(InvalidImage, match="ambiguous PNG"):
        quick(bomb)


def test_a_webp_whose_canvas_and_bitstream_disagree_is_ambiguous() -> None:
    simple = cv2.imencode(".webp", np.zeros((600, 800, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    image_chunk = simple[12:]  # VP8L, 800x600
    canvas = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (15).to_bytes(3, "little") * 2  # says 16x16
    body = b"WEBP" + canvas + image_chunk
    bomb = b"RIFF" + struct.pack("<I", len(body)) + body
    with pytest.raises(InvalidImage, match="ambiguous WebP"):
        quick(bomb)


def test_a_bmp_with_an_unknown_header_is_refused() -> None:
    data = bytearray(cv2.imencode(".bmp", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    data[14:18] = struct.pack("<I", 200)
    with pytest.raises(InvalidImage, match="unknown header"):
        quick(bytes(data))


def test_the_decoder_refuses_past_the_pixel_limit_on_its_own() -> None:
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(DECODER_MAX_PIXELS)
    assert LIMITS["max_pixels"] <= DECODER_MAX_PIXELS


def test_a_decoded_image_of_another_size_than_its_header_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever trick the header parsing misses, the decoder's answer is checked against what was allowed."""
    data = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes()
    monkeypatch.setattr(images.cv2, "imdecode", lambda buf, flags: np.zeros((4000, 4000, 3), np.uint8))
    with pytest.raises(InvalidImage, match="decoded as 4000x4000 but its header says 16x16"):
        decode_image(data, **LIMITS)


def test_a_decode_past_its_budget_is_refused_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown trick that makes the decoder slow: the caller gets DecodeTooCostly (a 422) within the budget."""
    data = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes()

    def slow(buf: np.ndarray, flags: int) -> np.ndarray:
        time.sleep(30)
        return np.zeros((16, 16, 3), np.uint8)

    monkeypatch.setattr(images.cv2, "imdecode", slow)
    monkeypatch.setattr(images, "DECODE_SECONDS", 0.3)
    started = time.monotonic()
    with pytest.raises(DecodeTooCostly, match=r"more than 0\.3 s"):
        decode_image(data, **LIMITS)
    assert time.monotonic() - started < 5  # the budget and a fork or two, not the decoder's 30 s
