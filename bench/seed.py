"""The seed's method, as the seed ran it: the baseline PicTrace is measured against.

For every indexed image: fetch it from the store, decode it, make both images 256x256 grayscale, then
    ssim  = skimage.metrics.structural_similarity (its defaults: 7x7 uniform window, data range 255)
    orb   = cross-checked Hamming matches of OpenCV ORB (default 500 features) / the query's keypoints
    final = (orb + ssim) / 2
and rank every indexed image by final (no embedding, no shortlist).

`SeedIndex` is the same method with every indexed image's features computed once ("precomputed"). Its batch
scorer (`SeedIndex.scores`) computes scikit-image's SSIM formula for all images at once with the same filter
(scipy's uniform_filter, reflect borders, float64) and agrees with structural_similarity to ~1e-15 (a unit test
checks it); it exists only so the seed's recall can be measured on enough queries within the time limit.

`python -m bench.seed INDEX.npz QUERIES.txt OUT.json` scores a list of query files against a saved SeedIndex
(run as two processes side by side by bench.run, one per core).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import uniform_filter
from skimage.metrics import structural_similarity

SIZE = 256
WIN = 7
_COV = WIN * WIN / (WIN * WIN - 1)  # sample covariance, as structural_similarity's default
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_PAD = (WIN - 1) // 2
_CHUNK = 16


@dataclass(frozen=True)
class SeedFeatures:
    """What the seed computes per image."""

    gray: np.ndarray  # (256, 256) uint8
    descriptors: np.ndarray  # (n, 32) uint8, n may be 0
    keypoints: int


def decode(data: bytes) -> np.ndarray:
    """Full-resolution BGR decode, as the seed read images (no reduced JPEG decoding)."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    return bgr


def features(bgr: np.ndarray) -> SeedFeatures:
    """256x256 grayscale (squashed) and its ORB keypoints/descriptors."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    small = cv2.resize(gray, (SIZE, SIZE))
    orb = cv2.ORB.create()
    kps, desc = orb.detectAndCompute(small, None)  # type: ignore[call-overload]
    if desc is None or not kps:
        return SeedFeatures(small, np.zeros((0, 32), np.uint8), 0)
    return SeedFeatures(small, desc, len(kps))


def orb_matches(query: np.ndarray, candidate: np.ndarray) -> int:
    """Cross-checked Hamming matches between two descriptor sets."""
    if len(query) == 0 or len(candidate) == 0:
        return 0
    return len(cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(query, candidate))


def pair_score(query: SeedFeatures, candidate: SeedFeatures) -> tuple[float, float, float]:
    """(ssim, orb, final) of one pair, exactly as the seed computed it."""
    s = float(structural_similarity(query.gray, candidate.gray))
    o = orb_matches(query.descriptors, candidate.descriptors) / query.keypoints if query.keypoints else 0.0
    return s, o, (o + s) / 2


def _box(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    result: np.ndarray = uniform_filter(x, size=WIN, axes=axes)
    return result


def batch_ssim(query: np.ndarray, grays: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """structural_similarity(query, grays[i]) for every i; mu/var are the candidates' local means and
    (population) variances from `local_stats`."""
    x = query.astype(np.float64)
    ux = _box(x, (0, 1))
    vx = _box(x * x, (0, 1)) - ux * ux
    out = np.empty(len(grays), dtype=np.float64)
    for start in range(0, len(grays), _CHUNK):
        c = grays[start : start + _CHUNK].astype(np.float64)
        uy = mu[start : start + _CHUNK]
        vy = var[start : start + _CHUNK]
        vxy = _COV * (_box(c * x, (1, 2)) - ux * uy)
        s = ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (_COV * vx + _COV * vy + _C2))
        out[start : start + _CHUNK] = s[:, _PAD:-_PAD, _PAD:-_PAD].mean(axis=(1, 2), dtype=np.float64)
    return out


def local_stats(grays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local means and population variances (7x7 uniform window) of a stack of grayscale images."""
    mu = np.empty(grays.shape, dtype=np.float64)
    var = np.empty(grays.shape, dtype=np.float64)
    for start in range(0, len(grays), _CHUNK):
        c = grays[start : start + _CHUNK].astype(np.float64)
        m = _box(c, (1, 2))
        mu[start : start + _CHUNK] = m
        var[start : start + _CHUNK] = _box(c * c, (1, 2)) - m * m
    return mu, var


class SeedIndex:
    """Every indexed image's seed features, computed once."""

    def __init__(self, ids: list[str], grays: np.ndarray, descriptors: list[np.ndarray]) -> None:
        self.ids = ids
        self.grays = grays
        self.descriptors = descriptors
        self._stats: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_features(cls, items: dict[str, SeedFeatures]) -> SeedIndex:
        """From per-id features."""
        ids = list(items)
        grays = np.stack([items[i].gray for i in ids]) if ids else np.zeros((0, SIZE, SIZE), np.uint8)
        return cls(ids, grays, [items[i].descriptors for i in ids])

    def pairwise(self, query: SeedFeatures) -> list[tuple[str, float]]:
        """The seed's loop over precomputed features (one structural_similarity + one match per image), best first."""
        scored = []
        for i, entry_id in enumerate(self.ids):
            candidate = SeedFeatures(self.grays[i], self.descriptors[i], len(self.descriptors[i]))
            scored.append((entry_id, pair_score(query, candidate)[2]))
        scored.sort(key=lambda t: t[1], reverse=True)
        return scored

    def scores(self, query: SeedFeatures) -> np.ndarray:
        """Final scores of every indexed image (batched SSIM, same numbers as `pairwise`)."""
        if self._stats is None:
            self._stats = local_stats(self.grays)
        ssim = batch_ssim(query.gray, self.grays, *self._stats)
        if query.keypoints:
            orb = np.array([orb_matches(query.descriptors, d) for d in self.descriptors], dtype=np.float64)
            orb /= query.keypoints
        else:
            orb = np.zeros(len(self.ids))
        result: np.ndarray = (orb + ssim) / 2
        return result

    def ranking(self, query: SeedFeatures, k: int = 50) -> list[tuple[str, float]]:
        """The top k ids by final score, best first (ties keep index order)."""
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(self.ids[i], float(s[i])) for i in order]

    def save(self, path: Path) -> None:
        """One .npz (no pickles)."""
        lengths = np.array([len(d) for d in self.descriptors], dtype=np.int64)
        flat = np.concatenate(self.descriptors) if self.descriptors else np.zeros((0, 32), np.uint8)
        np.savez(
            path,
            ids=np.array(self.ids, dtype="U64"),
            grays=self.grays,
            lengths=lengths,
            descriptors=flat.astype(np.uint8),
        )

    @classmethod
    def load(cls, path: Path) -> SeedIndex:
        """What save wrote."""
        with np.load(path, allow_pickle=False) as npz:
            ids = [str(i) for i in npz["ids"]]
            offsets = np.concatenate([[0], np.cumsum(npz["lengths"])])
            flat = npz["descriptors"]
            descriptors = [flat[offsets[i] : offsets[i + 1]] for i in range(len(ids))]
            return cls(ids, npz["grays"], descriptors)


def main(argv: list[str]) -> int:
    """Worker: score the query files listed in QUERIES.txt against INDEX.npz, write rankings as JSON."""
    index_path, queries_path, out_path = (Path(a) for a in argv)
    cv2.setNumThreads(1)
    index = SeedIndex.load(index_path)
    out = {}
    for line in queries_path.read_text().splitlines():
        if not line.strip():
            continue
        started = time.perf_counter()
        q = features(decode(Path(line).read_bytes()))
        ranking = index.ranking(q)
        out[line] = {"ranking": [i for i, _ in ranking], "ms": (time.perf_counter() - started) * 1000}
    Path(out_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
