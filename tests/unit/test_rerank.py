"""Rerank signals on real photos: SSIM agrees with scikit-image, ORB finds the same picture."""

from __future__ import annotations

import cv2
import numpy as np
from pictrace.images import decode_image
from pictrace.rerank import THUMB_SIZE, compute_features, score, ssim
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
    q = compute_features(copy)
    same = score(0.9, q, compute_features(original))
    other = score(0.9, q, compute_features(bgr("coffee.png")))
    assert same.ssim > other.ssim and same.orb > other.orb and same.final > other.final
    assert 0.0 <= other.final <= same.final <= 1.0


def test_image_without_keypoints_scores_zero_orb() -> None:
    flat = np.full((200, 300, 3), 127, np.uint8)
    f = compute_features(flat)
    assert len(f.descriptors) == 0
    assert score(0.5, f, compute_features(bgr("coffee.png"))).orb == 0.0
