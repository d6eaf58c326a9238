"""Rerank signals on real photos: SSIM agrees with scikit-image, ORB finds the same picture."""

from __future__ import annotations

import cv2
import numpy as np
from pictrace.images import decode_image
from pictrace.rerank import (
    D4_NAMES,
    THUMB_SIZE,
    Weights,
    compute_features,
    describe_query,
    geometric_inliers,
    gist,
    score,
    ssim,
    trim_border,
)
from skimage.metrics import structural_similarity

from tests.conftest import PHOTOS, read


def bgr(name: str) -> np.ndarray:
    return decode_image(read(name), max_bytes=10**8, max_pixels=10**8).bgr


def test_ssim_agrees_with_scikit_image_on_real_pairs() -> None:
    thumbs = [compute_features(bgr(n)).thumb for n in PHOTOS]
    for a in thumbs:
        for b in thumbs:
            ours = ssim(a, b)
            ref = structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
            )
            assert abs(ours - ref) < 1e-3


def test_features_have_the_documented_shapes() -> None:
    f = compute_features(bgr("astronaut.jpg"))
    assert f.thumb.shape == (THUMB_SIZE, THUMB_SIZE) and f.thumb.dtype == np.uint8
    assert len(f.keypoints) == len(f.descriptors) > 50
    assert f.descriptors.shape[1] == 32 and f.descriptors.dtype == np.uint8


def test_a_resized_copy_scores_higher_than_another_photo() -> None:
    original = bgr("astronaut.jpg")
    copy = cv2.resize(original, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    q = describe_query(copy)
    same = score(0.9, q, compute_features(original), gist_score=0.9)
    other = score(0.9, q, compute_features(bgr("coffee.png")), gist_score=0.9)
    assert same.ssim > other.ssim and same.orb > other.orb and same.final > other.final
    assert same.inliers >= 30 > other.inliers and same.geometry == 1.0
    assert 0.0 <= other.final <= same.final <= 1.0
    assert same.explain == "same structure pixel by pixel (SSIM)"  # the heaviest weighted signal here
    geometric = score(0.9, q, compute_features(original), gist_score=0.9, weights=Weights(0.1, 0.1, 0.1, 1.0))
    assert geometric.explain == f"{geometric.inliers} ORB keypoints agree on one affine transform"


def test_image_without_keypoints_scores_zero_orb() -> None:
    flat = np.full((200, 300, 3), 127, np.uint8)
    q = describe_query(flat)
    assert len(q.features.descriptors) == 0
    scores = score(0.5, q, compute_features(bgr("coffee.png")))
    assert scores.orb == 0.0 and scores.inliers == 0


def test_geometry_survives_a_crop_and_a_rotation() -> None:
    original = bgr("astronaut.jpg")
    h, w = original.shape[:2]
    turned = cv2.warpAffine(original, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0), (w, h))
    cropped = original[h // 5 :, : w - w // 5]
    for query in (turned, cropped):
        assert geometric_inliers(compute_features(query), compute_features(original))[1] >= 20
    assert geometric_inliers(compute_features(cropped), compute_features(bgr("chelsea.webp")))[1] < 10


def test_gist_finds_flips_turns_brightness_and_grayscale() -> None:
    original = bgr("chelsea.webp")
    target = gist(compute_features(original).thumb)
    gray = cv2.cvtColor(cv2.cvtColor(original, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cases = {
        "flip": (original[:, ::-1], {"flip"}),
        "rot90": (np.rot90(original), {"rot270"}),  # the query turned back matches the original
        "brightness": (cv2.convertScaleAbs(original, alpha=0.6, beta=-20), {"identity"}),
        "grayscale": (gray, {"identity"}),
    }
    other = gist(compute_features(bgr("coffee.png")).thumb)
    for name, (query, turns) in cases.items():
        variants = describe_query(np.ascontiguousarray(query)).gists
        best = int(np.argmax(variants @ target))
        assert D4_NAMES[best] in turns, name
        assert float(variants[best] @ target) > 0.9 > float(np.max(variants @ other)), name


def test_uniform_borders_are_trimmed_and_content_is_kept() -> None:
    original = bgr("astronaut.jpg")
    padded = cv2.copyMakeBorder(original, 30, 30, 40, 40, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    assert trim_border(padded).shape == original.shape
    assert trim_border(original).shape == original.shape
