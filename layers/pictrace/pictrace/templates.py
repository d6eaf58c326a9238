"""Shared templates (issue 28): two different pictures in the same surroundings, such as one big watermark or the
same caption band, that the geometric check aligns.

The template's keypoints agree at the same place in both images, so such a pair has plenty of ORB inliers, and where
the pictures themselves carry little the model sees (a lawn, gravel) its embeddings are close too: both the
whole-image verdict and the geometric check would call it a copy. What gives it away is the rest of the picture: moved
onto the other image by the check's transform, most of the area the two share differs. A copy differs only where
something was added (an overlay, a caption), which covers less of it.

So where the check aligns a pair with at least TEMPLATE_INLIERS inliers, `agreement` compares the grayscale
thumbnails (rerank.THUMB_SIZE, the smaller picture moved onto the larger) block by block; a pair agreeing in less than
TEMPLATE_AGREEMENT of the blocks they share is a shared template, not a copy. Framed photos (an app's window around
different photos) are pictrace.frames' part.

Chosen on the bench's copies phase (bench/phases/duplicates.py, 410 images, sscd): both ways round, the two links
between different photos with the same text-and-logo overlay agreed in 0.14-0.19 of their blocks (175-243
inliers); of the 1,981 ways round of links between copies judged, the lowest agreed in 0.58 (a scanned page against
it with the overlay). Under 50 inliers RANSAC's transform can be loose (a screenshot against the photo with an
overlay, 30 inliers, turned 3.5 degrees, agreed in 0.23). On the bench's 1,700 queries of issue 27, none of the 648
copies called with 50 inliers or more agreed in less than 0.58.
"""

from __future__ import annotations

import cv2
import numpy as np

from pictrace.rerank import THUMB_SIZE

#: the pairs judged: aligned by the geometric check with at least this many inliers
TEMPLATE_INLIERS = 50
#: a pair agreeing in a smaller share of the blocks both images cover is a shared template
TEMPLATE_AGREEMENT = 0.4
#: blocks of BLOCK x BLOCK thumbnail pixels; a block counts where the moved query covers it whole
BLOCK = 16
#: fewer shared blocks than this (a small crop, an inset) are too few to judge: no agreement is given
MIN_BLOCKS = 16
#: two blocks agree when their pixels correlate above this, or, both flat (grey levels' deviation under FLAT),
#: when their mean grey differs by less than SAME_GREY (after the grey levels are fitted: see agreement)
CORRELATION = 0.5
FLAT = 8.0
SAME_GREY = 12.0


def agreement(query_thumb: np.ndarray, candidate_thumb: np.ndarray, affine: np.ndarray) -> float | None:
    """The share of the blocks of one thumbnail, covered whole by the other's moved onto it, in which the two agree;
    None when they share under MIN_BLOCKS blocks. affine (2 x 3): query thumbnail pixels to the candidate's; the
    smaller of the two pictures is moved onto the larger (never enlarged: that would blur what it shows)."""
    forward = np.vstack([np.asarray(affine, np.float64), [0.0, 0.0, 1.0]])
    if abs(np.linalg.det(forward[:2, :2])) > 1.0:  # the query is the smaller picture
        moving, target, move = candidate_thumb, query_thumb, np.linalg.inv(forward)[:2]
    else:
        moving, target, move = query_thumb, candidate_thumb, forward[:2]
    size = (THUMB_SIZE, THUMB_SIZE)
    moved = cv2.warpAffine(moving.astype(np.float32), move, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.ones(moving.shape, np.float32), move, size, flags=cv2.INTER_NEAREST)
    target = target.astype(np.float32)
    whole = covered > 0.5
    if whole.sum() < 2:
        return None
    # a global change of brightness and contrast (an edit) is not a difference: the moved picture's grey levels are
    # fitted to the other's over the area they share first (least squares)
    x, y = moved[whole], target[whole]
    spread = float(x.var())
    slope = float(np.mean((x - x.mean()) * (y - y.mean()))) / spread if spread > 1e-6 else 1.0
    moved = moved * slope + (float(y.mean()) - slope * float(x.mean()))
    a, b, inside = _blocks(moved), _blocks(target), _blocks(covered).min(axis=2) >= 1.0
    mean_a, mean_b, sd_a, sd_b = a.mean(axis=2), b.mean(axis=2), a.std(axis=2), b.std(axis=2)
    covariance = ((a - mean_a[..., None]) * (b - mean_b[..., None])).mean(axis=2)
    flat = np.maximum(sd_a, sd_b) < FLAT
    agree = np.where(flat, np.abs(mean_a - mean_b) < SAME_GREY, covariance > CORRELATION * sd_a * sd_b)
    shared = int(inside.sum())
    return float(agree[inside].sum()) / shared if shared >= MIN_BLOCKS else None


def _blocks(image: np.ndarray) -> np.ndarray:
    """A thumbnail's BLOCK x BLOCK blocks, (rows, columns, BLOCK * BLOCK)."""
    n = THUMB_SIZE // BLOCK
    return image.reshape(n, BLOCK, n, BLOCK).swapaxes(1, 2).reshape(n, n, BLOCK * BLOCK)


def thumb_affine(pixels: np.ndarray, query_box: tuple[float, ...], candidate_box: tuple[float, ...]) -> np.ndarray:
    """The 2 x 3 transform between the two thumbnails from one between the images' pixels (3 x 3 or 2 x 3); each
    box: (x0, y0, x1, y1), the content its image's thumbnail squashes to THUMB_SIZE x THUMB_SIZE."""

    def to_thumb(box: tuple[float, ...]) -> np.ndarray:
        x0, y0, x1, y1 = box
        sx, sy = THUMB_SIZE / max(x1 - x0, 1e-9), THUMB_SIZE / max(y1 - y0, 1e-9)
        # to the thumbnail's pixel indices (a pixel's centre at its index)
        return np.array([[sx, 0.0, -x0 * sx - 0.5], [0.0, sy, -y0 * sy - 0.5], [0.0, 0.0, 1.0]])

    full = np.vstack([np.asarray(pixels, np.float64)[:2], [0.0, 0.0, 1.0]])
    return (to_thumb(candidate_box) @ full @ np.linalg.inv(to_thumb(query_box)))[:2]


def shares_template(inliers: int, share: float | None) -> bool:
    """Whether a pair the geometric check aligned with `inliers` inliers, agreeing in `share` of its blocks
    (agreement), is a shared template rather than a copy."""
    return inliers >= TEMPLATE_INLIERS and share is not None and share < TEMPLATE_AGREEMENT
