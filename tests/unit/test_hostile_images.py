"""Hostile and unusual images: bombs, polyglots, animation, CMYK, 16-bit, alpha, EXIF orientation."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pictrace.errors import ImageTooLarge, InvalidImage, PicTraceError
from pictrace.images import decode_image
from PIL import Image

from tests.conftest import read

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the data is a few bytes of zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )


def jpeg_with_dims(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 header is rewritten to claim other dimensions."""
    data = bytearray(read("astronaut.jpg"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def pil_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo() -> Image.Image:
    return Image.open(io.BytesIO(read("astronaut.jpg"))).convert("RGB")


@pytest.mark.parametrize(
    "data",
    [
        png_bomb(60000, 60000),
        jpeg_with_dims(65000, 65000),
        b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0" + (16383).to_bytes(3, "little") * 2 + b"\0" * 20,
        b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, 30000, 30000) + b"\0" * 40,
        b"II*\0"
        + struct.pack("<I", 8)
        + struct.pack("<H", 2)
        + struct.pack("<HHII", 256, 4, 1, 40000)
        + struct.pack("<HHII", 257, 4, 1, 40000)
        + b"\0" * 8,
    ],
    ids=["png", "jpeg", "webp", "bmp", "tiff"],
)
def test_decompression_bombs_are_refused_from_the_header(data: bytes) -> None:
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, **LIMITS)


def test_polyglot_with_a_png_signature_and_jpeg_body_is_refused() -> None:
    with pytest.raises(InvalidImage):
        decode_image(b"\x89PNG\r\n\x1a\n" + read("astronaut.jpg"), **LIMITS)


def test_jpeg_with_a_script_appended_decodes_as_the_jpeg_it_is() -> None:
    image = decode_image(read("astronaut.jpg") + b"<script>alert(1)</script>", **LIMITS)
    assert image.format == "jpeg" and image.bgr.shape == (320, 320, 3)


def test_animated_images_use_their_first_frame() -> None:
    frames = [photo(), photo().rotate(90)]
    for fmt in ("WEBP", "PNG"):
        data = pil_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        first = decode_image(data, **LIMITS).bgr
        expected = cv2.cvtColor(np.asarray(frames[0]), cv2.COLOR_RGB2BGR)
        assert first.shape == expected.shape
        assert np.abs(first.astype(int) - expected).mean() < 8  # lossy WebP; not the rotated frame


def test_cmyk_16_bit_and_alpha_become_8_bit_bgr() -> None:
    reference = cv2.cvtColor(np.asarray(photo()), cv2.COLOR_RGB2BGR).astype(int)
    cmyk = decode_image(pil_bytes(photo().convert("CMYK"), "JPEG", quality=95), **LIMITS).bgr
    assert cmyk.dtype == np.uint8 and np.abs(cmyk.astype(int) - reference).mean() < 12
    sixteen = cv2.imencode(".png", (reference * 257).astype(np.uint16))[1].tobytes()
    decoded = decode_image(sixteen, **LIMITS).bgr
    assert decoded.dtype == np.uint8 and np.abs(decoded.astype(int) - reference).max() <= 1
    rgba = decode_image(read("rgba.png"), **LIMITS).bgr
    assert rgba.shape[2] == 3


def test_exif_orientation_is_applied() -> None:
    upright = photo().crop((0, 0, 320, 200))  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels are the rotated-back photo
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    for size in (stored.size, (stored.size[0] * 10, stored.size[1] * 10)):  # also through the reduced decode
        data = pil_bytes(stored.resize(size), "JPEG", exif=exif, quality=95)
        decoded = decode_image(data, **LIMITS).bgr
        assert decoded.shape[1] > decoded.shape[0]  # displayed landscape, as the phone showed it
        small = cv2.resize(decoded, (320, 200), interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(small - cv2.cvtColor(np.asarray(upright), cv2.COLOR_RGB2BGR)).mean() < 10


def test_gif_is_not_a_supported_type() -> None:
    with pytest.raises(InvalidImage, match="JPEG, PNG, WebP, BMP or TIFF"):
        decode_image(pil_bytes(photo(), "GIF"), **LIMITS)


REAL = [read(n) for n in ("astronaut.jpg", "coffee.png", "chelsea.webp", "rocket.bmp", "camera.tiff")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(REAL) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_real_images_decode_or_fail_cleanly(which: int, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(REAL[which])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        image = decode_image(bytes(data), max_bytes=20_000_000, max_pixels=5_000_000)
    except PicTraceError:
        return
    assert image.bgr.dtype == np.uint8 and image.bgr.ndim == 3 and image.bgr.shape[2] == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    for prefix in (b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"RIFF\0\0\0\0WEBPVP8 "):
        try:
            decode_image(prefix + data, max_bytes=20_000_000, max_pixels=5_000_000)
        except PicTraceError:
            pass
