"""Image validation and decoding on real files, one per supported format, and on bad ones."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pictrace.errors import ImageTooLarge, InvalidImage
from pictrace.images import decode_image, read_dimensions, sniff_format

from tests.conftest import read

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("astronaut.jpg", "jpeg"),
        ("coffee.png", "png"),
        ("chelsea.webp", "webp"),
        ("rocket.bmp", "bmp"),
        ("camera.tiff", "tiff"),
        ("rgba.png", "png"),
    ],
)
def test_each_supported_format_decodes_to_bgr(name: str, fmt: str) -> None:
    data = read(name)
    image = decode_image(data, **LIMITS)
    assert image.format == fmt
    assert image.bgr.dtype == np.uint8 and image.bgr.ndim == 3 and image.bgr.shape[2] == 3
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert (image.width, image.height) == (reference.shape[1], reference.shape[0])
    assert read_dimensions(data, fmt) == (reference.shape[1], reference.shape[0])


def test_type_comes_from_the_bytes_not_the_name() -> None:
    assert sniff_format(read("coffee.png")) == "png"
    assert sniff_format(read("astronaut.jpg")) == "jpeg"
    assert sniff_format(b"GIF89a....") is None


@pytest.mark.parametrize(
    "name,words",
    [
        ("corrupt.jpg", "corrupt"),
        ("truncated.jpg", "truncated"),
        ("empty.jpg", "empty"),
        ("not_an_image.txt", "not a supported image"),
    ],
)
def test_bad_files_are_refused_with_a_reason(name: str, words: str) -> None:
    with pytest.raises(InvalidImage, match=words):
        decode_image(read(name), **LIMITS)


def test_byte_limit_names_the_limit() -> None:
    data = read("astronaut.jpg")
    with pytest.raises(ImageTooLarge, match="max_bytes"):
        decode_image(data, max_bytes=len(data) - 1, max_pixels=50_000_000)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # a 10000x8000 PNG that compresses to a few hundred KB: a decompression bomb for a naive decoder
    ok, png = cv2.imencode(".png", np.zeros((8000, 10000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok and len(png) < 2_000_000
    with pytest.raises(ImageTooLarge, match="max_pixels"):
        decode_image(png.tobytes(), max_bytes=20_000_000, max_pixels=50_000_000)


def test_large_jpeg_is_reduced_while_decoding() -> None:
    photo = cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(photo, (4800, 3600), interpolation=cv2.INTER_CUBIC)
    _, jpg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    image = decode_image(jpg.tobytes(), **LIMITS)
    assert (image.width, image.height) == (4800, 3600)
    assert 1024 <= max(image.bgr.shape[:2]) < 4800
