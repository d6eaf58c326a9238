"""Rerank features and scores.

Signals, each in [0, 1] (documented in docs/scoring.md):
- cosine: the model's embeddings' cosine (SSCD by default), centred on the model's reference (pictrace.verdict);
- gist: correlation of 16x16 zero-mean grayscale layouts, the best of the query's 8 flips/90-degree rotations
  (robust to brightness/contrast, grayscale, flips and quarter turns);
- ssim: Gaussian-window SSIM of 128x128 grayscale thumbnails, the query turned the way gist found;
- geometry: ORB matches that pass a ratio test and agree on one affine transform (RANSAC), as
  min(1, inliers / GEO_INLIERS), computed for the best candidates by the other signals (Settings.verify);
  the seed-style ratio (ratio-test matches / query keypoints) is reported as `orb`.
final = sum(w_i * signal_i) / sum(w_i), weights in Settings (fitted on half of the benchmark's queries).
Images are compared without uniform borders (trim_border), so padding does not count as content.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pictrace.verdict import Weights

THUMB_SIZE = 128
GIST_SIDE = 16
ORB_LONG_SIDE = 512
ORB_FEATURES = 500
ORB_RATIO = 0.8
GEO_INLIERS = 30
RANSAC_PX = 6.0
#: the dihedral group D4 as (quarter turns, mirrored first); index t is what Candidate.transform names
D4 = ((0, False), (1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True))
D4_NAMES = ("identity", "rot90", "rot180", "rot270", "flip", "flip+rot90", "flip+rot180", "flip+rot270")
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
    inner: np.ndarray | None = None  # the embedding of the photo the image frames (pictrace.frames), if it frames one


@dataclass(frozen=True)
class Scores:
    """Per-signal similarity of a candidate to the query."""

    cosine: float
    ssim: float
    orb: float
    orb_matches: int
    final: float
    gist: float = 0.0
    geometry: float = 0.0
    inliers: int = 0
    transform: str = "identity"
    explain: str = ""
    region: float = 0.0  # the best centred cosine of a region of the query with it (pictrace.regions; 0: not run)
    region_inliers: int = 0  # ORB inliers of that region with it (0: not verified)
    detail: float = 0.0  # the best centred cosine of the query with a detail of it (pictrace.details; 0: none)
    template: bool = False  # the geometric check found a template shared around different pictures: never a copy


def centred_cosine(query: np.ndarray, embedding: np.ndarray, centre: np.ndarray | None) -> float:
    """The cosine of two embeddings, both centred on centre (the model's reference; None: the plain cosine)."""
    a, b = query.astype(np.float32), embedding.astype(np.float32)
    if centre is not None:
        a, b = a - centre, b - centre
    return float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


def d4(a: np.ndarray, t: int) -> np.ndarray:
    """The array turned by element t of D4 (mirror left-right first, then quarter turns counter-clockwise)."""
    turns, mirrored = D4[t]
    return np.rot90(a[:, ::-1] if mirrored else a, turns)


def trim_border(bgr: np.ndarray, tolerance: float = 3.0) -> np.ndarray:
    """The image without uniform (near-constant) rows and columns at its edges; at most a quarter per side."""
    top, bottom, left, right = content_box(bgr, tolerance)
    return bgr[top:bottom, left:right]


def content_box(bgr: np.ndarray, tolerance: float = 3.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): the rows and columns trim_border keeps, as slice bounds."""
    gray = to_gray(bgr).astype(np.float32)
    h, w = gray.shape
    top, bottom, left, right = 0, h, 0, w
    while top < h // 4 and gray[top, left:right].std() < tolerance:
        top += 1
    while bottom > h - h // 4 and gray[bottom - 1, left:right].std() < tolerance:
        bottom -= 1
    while left < w // 4 and gray[top:bottom, left].std() < tolerance:
        left += 1
    while right > w - w // 4 and gray[top:bottom, right - 1].std() < tolerance:
        right -= 1
    return top, bottom, left, right


def gist(thumb: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-length 16x16 layout of a grayscale thumbnail (256 float32)."""
    small = cv2.resize(thumb, (GIST_SIDE, GIST_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return (small / norm).ravel() if norm > 1e-6 else np.zeros(GIST_SIDE * GIST_SIDE, np.float32)


def gist_variants(thumb: np.ndarray) -> np.ndarray:
    """The gist of each of the 8 D4 turns of a thumbnail, shape (8, 256)."""
    base = cv2.resize(thumb, (GIST_SIDE, GIST_SIDE), interpolation=cv2.INTER_AREA)
    return np.stack([gist(np.ascontiguousarray(d4(base, t))) for t in range(len(D4))])


@dataclass(frozen=True)
class QueryFeatures:
    """The query's features, its gists under D4, and (made on demand) ORB features of its mirror image."""

    features: Features
    gists: np.ndarray
    mirrored: Features | None = None


def to_gray(bgr: np.ndarray) -> np.ndarray:
    """Grayscale uint8 of a BGR image."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def orb_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the image ORB runs on for an image of this size: its long side scaled to ORB_LONG_SIDE."""
    scale = ORB_LONG_SIDE / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def compute_features(bgr: np.ndarray) -> Features:
    """Thumbnail and ORB keypoints/descriptors of a BGR image."""
    gray = to_gray(bgr)
    thumb = cv2.resize(gray, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    h, w = gray.shape
    orb_img = cv2.resize(gray, orb_size(w, h), interpolation=cv2.INTER_AREA)
    orb = cv2.ORB.create(nfeatures=ORB_FEATURES)
    kps, desc = orb.detectAndCompute(orb_img, None)  # type: ignore[call-overload]  # OpenCV 4 stubs: no None mask
    if desc is None or not kps:
        return Features(thumb, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    points = np.array([kp.pt for kp in kps], dtype=np.float32)
    return Features(thumb, points, desc.astype(np.uint8))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two equal-size grayscale images (Gaussian window, sigma 1.5)."""
    x = a.astype(np.float32)
    y = b.astype(np.float32)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (_SSIM_WIN, _SSIM_WIN), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + _SSIM_C1) * (2 * cxy + _SSIM_C2)) / ((mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2))
    pad = (_SSIM_WIN - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


@dataclass(frozen=True)
class Correspondences:
    """ORB matches between two images that pass Lowe's ratio test, and which of them RANSAC kept.

    Points are in each image's ORB coordinates (Features.keypoints); affine maps query points to candidate points.
    """

    query_points: np.ndarray  # (n, 2) float32
    candidate_points: np.ndarray  # (n, 2) float32
    inlier: np.ndarray  # (n,) bool: agrees with the affine transform
    affine: np.ndarray | None  # (2, 3) float64, None when fewer than 4 matches or RANSAC found none

    @property
    def matches(self) -> int:
        """Matches passing the ratio test."""
        return len(self.inlier)

    @property
    def inliers(self) -> int:
        """Matches that agree on the affine transform."""
        return int(self.inlier.sum())


def correspondences(query: Features, candidate: Features) -> Correspondences:
    """The ratio-test ORB matches of query against candidate and the affine transform RANSAC fits to them."""
    none = np.zeros((0, 2), np.float32)
    if len(query.descriptors) < 2 or len(candidate.descriptors) < 2:
        return Correspondences(none, none, np.zeros(0, bool), None)
    # each query descriptor's two nearest candidate descriptors (Hamming; what BFMatcher.knnMatch(k=2) finds, as
    # arrays rather than DMatch objects), then Lowe's ratio test
    distances, nearest = cv2.batchDistance(
        query.descriptors, candidate.descriptors, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2
    )
    good = np.flatnonzero(distances[:, 0] < ORB_RATIO * distances[:, 1])
    src = query.keypoints[good].reshape(-1, 2)
    dst = candidate.keypoints[nearest[good, 0]].reshape(-1, 2)
    if len(good) < 4:
        return Correspondences(src, dst, np.zeros(len(good), bool), None)
    affine, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    inlier = mask.ravel().astype(bool) if mask is not None else np.zeros(len(good), bool)
    return Correspondences(src, dst, inlier, affine if affine is not None and inlier.any() else None)


def geometric_inliers(query: Features, candidate: Features) -> tuple[int, int]:
    """(matches passing Lowe's ratio test, those of them that agree on one affine transform under RANSAC)."""
    found = correspondences(query, candidate)
    return found.matches, found.inliers


def to_verify(cosine: np.ndarray, gist_scores: np.ndarray | None, quick: np.ndarray, verify: int) -> set[int]:
    """Which candidates get the geometric check: the best `verify` by the other signals together, plus the
    best verify/2 by cosine and by gist alone (so a copy strong in one signal only is still checked); gist_scores
    None (the fusion does not weigh gist): by the other signals and by cosine only."""
    chosen: set[int] = set()
    ranked = [(quick, verify), (cosine, verify // 2)]
    if gist_scores is not None:
        ranked.append((gist_scores, verify // 2))
    for values, count in ranked:
        chosen.update(int(i) for i in np.argsort(-np.asarray(values), kind="stable")[:count])
    return chosen


def turned_ssim(query: QueryFeatures, candidate: Features, transform: int) -> float:
    """SSIM in [0, 1] of the query's thumbnail, turned by D4 element `transform`, against the candidate's."""
    return max(0.0, min(1.0, ssim(np.ascontiguousarray(d4(query.features.thumb, transform)), candidate.thumb)))


def quick_score(cosine: float, gist_score: float, ssim_score: float, weights: Weights) -> float:
    """The final score without geometry (which is the costly signal): what decides which candidates get it."""
    w = weights
    return (w.cosine * max(0.0, cosine) + w.gist * max(0.0, gist_score) + w.ssim * ssim_score) / w.total


def score(
    cosine: float,
    query: QueryFeatures,
    candidate: Features,
    gist_score: float = 0.0,
    transform: int = 0,
    weights: Weights | None = None,
    geometry: bool = True,
    ssim_score: float | None = None,
) -> Scores:
    """All signals for one candidate, fused into the final score (see module docstring).

    transform: the D4 turn of the query that best matched the candidate's layout (from the shortlist).
    geometry=False skips the ORB matching (geometry and orb count as 0): for candidates the rerank does not verify.
    ssim_score: turned_ssim of this pair when the caller has it already (it is not computed again).
    """
    w = weights or Weights()
    s = turned_ssim(query, candidate, transform) if ssim_score is None else ssim_score
    orb_query = query.mirrored if D4[transform][1] and query.mirrored is not None else query.features
    matches, inliers = geometric_inliers(orb_query, candidate) if geometry else (0, 0)
    o = min(1.0, matches / len(orb_query.descriptors)) if len(orb_query.descriptors) else 0.0
    geo = min(1.0, inliers / GEO_INLIERS)
    signals = {"cosine": max(0.0, cosine), "gist": max(0.0, gist_score), "ssim": s, "geometry": geo}
    weighted = {name: getattr(w, name) * value for name, value in signals.items()}
    final = sum(weighted.values()) / w.total
    decider = max(weighted, key=lambda name: weighted[name])
    explain = {
        "geometry": f"{inliers} ORB keypoints agree on one affine transform",
        "gist": f"same layout ({D4_NAMES[transform]}), independent of brightness and colour",
        "ssim": "same structure pixel by pixel (SSIM)",
        "cosine": "close embeddings (the model sees the same picture)",
    }[decider]
    return Scores(
        cosine=float(cosine),
        ssim=s,
        orb=o,
        orb_matches=matches,
        final=float(final),
        gist=float(gist_score),
        geometry=geo,
        inliers=inliers,
        transform=D4_NAMES[transform],
        explain=explain,
    )


def as_query(features: Features) -> QueryFeatures:
    """An image's features as a query uses them: with the gists of its D4 turns."""
    return QueryFeatures(features, gist_variants(features.thumb))


def mirrored_features(bgr: np.ndarray) -> Features:
    """The features of a BGR image's mirror image (left-right), which a query's candidates that matched it mirrored
    are scored against."""
    return compute_features(np.ascontiguousarray(bgr[:, ::-1]))
