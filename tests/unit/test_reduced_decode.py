"""Large JPEGs decoded reduced (pictrace.pipeline.decode_content): at the smallest size every later stage still
needs, with the same features, embedding and meta as a full-size decode, within tolerance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest
from pictrace.embedding import PREPROCESS
from pictrace.images import decode_image, reduction
from pictrace.pipeline import FEATURES_LONG_SIDE, MODEL_SHORT_SIDE, Decoded, decode_content, prepare
from pictrace.rerank import (
    GEO_INLIERS,
    compute_features,
    content_box,
    geometric_inliers,
    gist,
    mirrored_features,
    ssim,
)

from tests.conftest import read

LIMITS = {"max_bytes": 100_000_000, "max_pixels": 100_000_000}


def large_jpeg(width: int, height: int, border: int = 0) -> bytes:
    """A photo enlarged to width x height (a uniform grey border of that many pixels inside it), as a JPEG."""
    photo = cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR)
    inner = cv2.resize(photo, (width - 2 * border, height - 2 * border), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((height, width, 3), 128, np.uint8)
    canvas[border : height - border, border : width - border] = inner
    ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def full_size(data: bytes) -> Decoded:
    """The image decoded at full size, and its content: what ingest did before decoding reduced."""
    image = decode_image(data, **LIMITS, long_side=1 << 30)
    return Decoded(image, content_box(image.bgr), len(data))


@pytest.mark.parametrize(
    ("size", "factor"),
    [((4096, 4096), 8), ((5640, 3172), 8), ((4000, 3000), 4), ((3172, 5640), 8), ((640, 480), 1), ((2560, 1440), 4)],
)
def test_the_reduction_keeps_what_the_stages_need(size: tuple[int, int], factor: int) -> None:
    assert reduction(*size, MODEL_SHORT_SIDE, FEATURES_LONG_SIDE) == factor
    reduced = [-(-side // factor) for side in size]
    assert min(reduced) >= min(MODEL_SHORT_SIDE, *size) and max(reduced) >= min(FEATURES_LONG_SIDE, max(size))


@pytest.mark.parametrize("name", list(PREPROCESS))
@pytest.mark.parametrize("aspect", [1.0, 1.5, 3.0])
def test_no_model_input_is_larger_than_the_content_decode_content_keeps(name: str, aspect: float) -> None:
    h = MODEL_SHORT_SIDE
    w = max(FEATURES_LONG_SIDE, round(h * aspect))
    x = PREPROCESS[name](np.zeros((h, w, 3), np.uint8))
    assert x.shape[0] <= h and x.shape[1] <= w


@pytest.fixture(scope="module")
def big() -> bytes:
    return large_jpeg(4096, 2732)


def test_a_large_jpeg_is_decoded_reduced_with_its_original_size(big: bytes) -> None:
    decoded = decode_content(big, **LIMITS)
    assert (decoded.image.width, decoded.image.height) == (4096, 2732)
    assert decoded.image.bgr.shape[:2] == (342, 512)  # an eighth, rounded up
    assert decoded.size == len(big)


def test_reduced_decode_gives_the_full_decodes_features(big: bytes) -> None:
    reduced, full = decode_content(big, **LIMITS).content, full_size(big).content
    a, b = compute_features(reduced), compute_features(full)
    assert ssim(a.thumb, b.thumb) > 0.95
    assert float(gist(a.thumb) @ gist(b.thumb)) > 0.98
    inliers, _matches = geometric_inliers(a, b)
    assert inliers >= GEO_INLIERS  # the ORB keypoints sit where they did, in the same (long side 512) image
    assert abs(len(a.descriptors) - len(b.descriptors)) <= 0.2 * len(b.descriptors)


def test_reduced_decode_gives_the_full_decodes_embedding(big: bytes, embedder: Any) -> None:
    reduced, full = decode_content(big, **LIMITS).content, full_size(big).content
    a, b = embedder.embed([reduced, full])
    assert float(a @ b) > 0.98


def test_meta_is_in_the_original_pixels(embedder: Any) -> None:
    data = large_jpeg(4096, 3072, border=400)  # a uniform border: the content box is inside it
    prepared = prepare(data, lambda: embedder, **LIMITS)
    assert prepared.described() == {"format": "jpeg", "width": 4096, "height": 3072, "bytes": len(data)}
    assert prepared.image.bgr.shape[:2] == (768, 1024)  # a quarter: at an eighth the content is 284 pixels high
    x0, y0, x1, y1 = prepared.content_box()
    full = full_size(data)
    top, bottom, left, right = full.box
    assert np.allclose([x0, y0, x1, y1], [left, top, right, bottom], atol=2 * 4)  # within a reduced pixel or two
    assert np.allclose([x0, y0, x1, y1], [400, 400, 3696, 2672], atol=2 * 4)


def test_content_short_of_what_the_stages_need_is_decoded_again_larger() -> None:
    data = large_jpeg(4096, 4096, border=1000)  # at an eighth, the content would be 262 pixels wide
    decoded = decode_content(data, **LIMITS)
    h, w = decoded.content.shape[:2]
    assert min(h, w) >= MODEL_SHORT_SIDE and max(h, w) >= FEATURES_LONG_SIDE
    assert decoded.image.bgr.shape[:2] == (1024, 1024)  # a quarter: the smallest that leaves the content enough


def test_small_images_and_other_formats_are_decoded_whole() -> None:
    photo = decode_content(read("astronaut.jpg"), **LIMITS)
    assert photo.image.bgr.shape[:2] == (photo.image.height, photo.image.width)
    png = decode_content(read("coffee.png"), **LIMITS)
    assert png.image.bgr.shape[:2] == (png.image.height, png.image.width)


def test_features_made_beside_the_model_are_those_made_after_it(embedder: Any) -> None:
    """prepare with a pool (a query: the features made while the model embeds) gives what it gives without one; with
    mirror, also the mirror image's features, which the query's features carry."""
    data = read("astronaut.jpg")
    alone = prepare(data, lambda: embedder, **LIMITS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        beside = prepare(data, lambda: embedder, **LIMITS, pool=pool, mirror=True)
    assert np.array_equal(beside.embedding, alone.embedding) and alone.mirrored is None
    for a, b in ((beside.features, alone.features), (beside.mirrored, mirrored_features(alone.content))):
        assert b is not None and a is not None
        assert np.array_equal(a.thumb, b.thumb) and np.array_equal(a.keypoints, b.keypoints)
        assert np.array_equal(a.descriptors, b.descriptors) and len(a.descriptors) > 50
    assert beside.query_features().mirrored is beside.mirrored and alone.query_features().mirrored is None
