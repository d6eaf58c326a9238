"""Shared templates (pictrace.templates, issue 28): two different pictures under the same watermark are aligned by
the geometric check, yet most of what they show differs; a copy, even under that watermark or with its brightness
changed, agrees."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pictrace.compare import Evidence, Frame, evidence
from pictrace.rerank import compute_features, mirrored_features, orb_size
from pictrace.templates import MIN_BLOCKS, TEMPLATE_AGREEMENT, TEMPLATE_INLIERS, agreement, shares_template

from tests.conftest import PHOTOS
from tests.drawn import photo, watermarked


def checked(query: np.ndarray, indexed: np.ndarray) -> Evidence:
    """The geometric check of two pictures, as compare runs it."""

    def frame(bgr: np.ndarray) -> Frame:
        h, w = bgr.shape[:2]
        return Frame(w, h, (0.0, 0.0, float(w), float(h)), orb_size(w, h))

    features = compute_features(query)
    return evidence(features, mirrored_features(query), compute_features(indexed), frame(query), frame(indexed))


def test_two_textures_under_one_watermark_share_a_template() -> None:
    found = checked(watermarked(photo("grass.jpg")), watermarked(photo("gravel.jpg")))
    assert found.inliers >= TEMPLATE_INLIERS  # the watermark's keypoints agree, at the same place
    assert found.agreement is not None and found.agreement < TEMPLATE_AGREEMENT and found.template


EDITS = {
    "darker, more contrast": lambda bgr: cv2.convertScaleAbs(bgr, alpha=1.4, beta=-60),
    "half the size": lambda bgr: cv2.resize(bgr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
    "JPEG quality 30": lambda bgr: cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1),
    "mirrored": lambda bgr: np.ascontiguousarray(bgr[:, ::-1]),
}


@pytest.mark.parametrize("name", ["grass.jpg", "gravel.jpg", *PHOTOS])
def test_a_copy_agrees_with_its_original_with_or_without_the_watermark(name: str) -> None:
    """The same picture, edited, against itself: under the same watermark too (the template pair's twin)."""
    bgr = photo(name)
    judged = 0
    for original in (bgr, watermarked(bgr)):
        for what, edit in EDITS.items():
            found = checked(edit(original), original)
            assert not found.template, (what, found.agreement)
            if found.agreement is not None:
                judged += 1
                assert found.inliers >= TEMPLATE_INLIERS and found.agreement >= TEMPLATE_AGREEMENT, what
    assert judged >= len(EDITS)  # most pairs are aligned well enough to be judged


@pytest.mark.parametrize("alpha, beta", [(1.8, -120), (0.6, -20), (1.3, 50)])
def test_a_change_of_brightness_and_contrast_is_no_difference_even_where_the_picture_is_plain(
    alpha: float, beta: float
) -> None:
    """A plain wall takes most of the picture: its blocks are flat, and the edit moves their grey by tens of levels;
    the two pictures still agree almost everywhere."""
    for name in ("grass.jpg", "astronaut.jpg", "coffee.png"):
        bgr = photo(name).copy()
        h, w = bgr.shape[:2]
        cv2.rectangle(bgr, (w // 10, h // 6), (w * 9 // 10, h * 5 // 6), (180, 190, 200), -1)
        found = checked(cv2.convertScaleAbs(bgr, alpha=alpha, beta=beta), bgr)
        assert found.agreement is not None and found.agreement >= 0.9, (name, found.inliers, found.agreement)


def test_too_few_shared_blocks_or_inliers_judge_nothing() -> None:
    thumb = cv2.resize(cv2.cvtColor(photo("grass.jpg"), cv2.COLOR_BGR2GRAY), (128, 128))
    # a small crop: the query lands on a quarter of the side of the candidate, a single block or so
    small = np.array([[0.25, 0.0, 10.0], [0.0, 0.25, 10.0]])
    assert agreement(thumb, thumb, small) is None
    assert agreement(thumb, thumb, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])) == 1.0
    assert MIN_BLOCKS > 1
    assert not shares_template(TEMPLATE_INLIERS - 1, 0.0) and not shares_template(TEMPLATE_INLIERS, None)
    assert shares_template(TEMPLATE_INLIERS, TEMPLATE_AGREEMENT - 0.01)
