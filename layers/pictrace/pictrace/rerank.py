"""Rerank features and scores: a grayscale thumbnail for SSIM, ORB keypoints for geometric agreement.

Final score (documented in README "Scoring"):
    final = (w_cos * cosine + w_ssim * ssim + w_orb * orb) / (w_cos + w_ssim + w_orb)
with ssim clipped to [0, 1] and orb = good cross-checked ORB matches / query keypoints (the seed's ratio,
where "good" also requires a Hamming distance <= ORB_MAX_DISTANCE), capped at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB_SIZE = 128
ORB_LONG_SIDE = 512
ORB_FEATURES = 500
ORB_MAX_DISTANCE = 64
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5


@dataclass(frozen=True)
class Features:
    """What the rerank needs of one image."""

    thumb: np.ndarray  # (THUMB_SIZE, THUMB_SIZE) uint8 grayscale, squashed
    keypoints: np.ndarray  # (n, 2) float32 x, y in the ORB image
    descriptors: np.ndarray  # (n, 32) uint8


@dataclass(frozen=True)
class Scores:
    """Per-signal similarity of a candidate to the query."""

    cosine: float
    ssim: float
    orb: float
    orb_matches: int
    final: float


def to_gray(bgr: np.ndarray) -> np.ndarray:
    """Grayscale uint8 of a BGR image."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def compute_features(bgr: np.ndarray) -> Features:
    """Thumbnail and ORB keypoints/descriptors of a BGR image."""
    gray = to_gray(bgr)
    thumb = cv2.resize(gray, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    h, w = gray.shape
    scale = ORB_LONG_SIDE / max(h, w)
    orb_img = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    orb = cv2.ORB.create(nfeatures=ORB_FEATURES)
    kps, desc = orb.detectAndCompute(orb_img, None)  # type: ignore[call-overload]  # OpenCV 4 stubs: no None mask
    if desc is None or not kps:
        return Features(thumb, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    points = np.array([kp.pt for kp in kps], dtype=np.float32)
    return Features(thumb, points, desc.astype(np.uint8))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two equal-size grayscale images (Gaussian window, sigma 1.5)."""
    x = a.astype(np.float64)
    y = b.astype(np.float64)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + _SSIM_C1) * (2 * cxy + _SSIM_C2)) / ((mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2))
    pad = (_SSIM_WIN - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def orb_matches(query: Features, candidate: Features) -> int:
    """Number of good cross-checked Hamming matches between two descriptor sets."""
    if len(query.descriptors) == 0 or len(candidate.descriptors) == 0:
        return 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    matches = matcher.match(query.descriptors, candidate.descriptors)
    return sum(1 for m in matches if m.distance <= ORB_MAX_DISTANCE)


def score(
    cosine: float, query: Features, candidate: Features, weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
) -> Scores:
    """All signals for one candidate, fused into the final score (see module docstring)."""
    s = max(0.0, min(1.0, ssim(query.thumb, candidate.thumb)))
    matches = orb_matches(query, candidate)
    o = min(1.0, matches / len(query.descriptors)) if len(query.descriptors) else 0.0
    w_cos, w_ssim, w_orb = weights
    final = (w_cos * max(0.0, cosine) + w_ssim * s + w_orb * o) / (w_cos + w_ssim + w_orb)
    return Scores(cosine=float(cosine), ssim=s, orb=o, orb_matches=matches, final=float(final))
