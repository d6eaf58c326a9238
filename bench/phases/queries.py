"""Phase "make queries": every edit (bench.transforms.VARIANTS) of the query originals, as JPEG files."""

from __future__ import annotations

import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.profile import Profile
from bench.searching import QueryCase
from bench.transforms import VARIANTS, make_query, pick_others


@dataclass(frozen=True)
class QueriesSummary:  # results.json's "queries"
    count: int
    originals: int
    positive: int
    negative: int
    variants: list[str]
    mean_bytes: float


@dataclass(frozen=True)
class QuerySet:  # the phase's result
    cases: list[QueryCase]
    summary: QueriesSummary


def query_originals(profile: Profile, usable: list[Path], held_out: set[str]) -> list[Path]:
    """The originals to make queries of: all, or profile.query_originals spread over the names, held-out in share."""
    if profile.query_originals is None:
        return usable
    pos, neg = [p for p in usable if p.name not in held_out], [p for p in usable if p.name in held_out]
    n_neg = min(len(neg), round(profile.query_originals * profile.held_out_share))
    n_pos = min(len(pos), profile.query_originals - n_neg)
    return sorted(pos[:: max(1, len(pos) // max(1, n_pos))][:n_pos] + neg[:: max(1, len(neg) // max(1, n_neg))][:n_neg])


def _read(path: str | Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)


def _queries_for(args: tuple[str, str, str, dict[str, str]]) -> list[tuple[str, int, str, int]]:
    """Worker: every variant of one original as JPEGs (pool: photos that may surround it); (name, v, path, bytes)."""
    path, name, out_dir, pool = args
    img, out = _read(path), []
    for v, variant in enumerate(VARIANTS):
        data = make_query(img, name, variant, [_read(pool[n]) for n in pick_others(list(pool), name, variant)])
        target = Path(out_dir) / f"v{v:02d}" / f"{Path(name).stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.append((name, v, str(target), len(data)))
    return out


def make_queries(originals: list[Path], ids: dict[str, str], out_dir: Path, held_out: set[str]) -> QuerySet:
    """All variants of the originals, two processes; held-out originals' queries are negatives, and surround others."""
    around = {n: str(d / n) for d in {p.parent for p in originals} for n in held_out if (d / n).is_file()}
    cases = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for done in pool.map(_queries_for, [(str(p), p.name, str(out_dir), around) for p in originals]):
            cases += [QueryCase(name, ids[name], v, path, size, name not in held_out) for name, v, path, size in done]
    cases.sort(key=lambda c: (c.variant, c.original))
    positive = sum(c.positive for c in cases)
    variants, mean_bytes = [v.name for v in VARIANTS], statistics.mean(c.bytes for c in cases)
    summary = QueriesSummary(len(cases), len(originals), positive, len(cases) - positive, variants, mean_bytes)
    return QuerySet(cases, summary)
