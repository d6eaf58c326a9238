"""Fit the final-score weights on half of the benchmark's queries and report them on the other half.

`python -m bench.fit_fusion` (or `make fit-fusion`): every variant of every original against the originals plus
500 real distractors, through the production code (decode, trim_border, LiteRT embedding, EmbeddingIndex
candidates, rerank.score with geometry for the `verify` best). Train: originals with an even position; test: odd.
Features and signals are cached in build/fit_fusion/ so a rerun only refits.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from pictrace.embedding import LiteRTEmbedder
from pictrace.images import decode_image
from pictrace.index import EmbeddingIndex, IndexStore, Loaded, Row
from pictrace.rerank import (
    GEO_INLIERS,
    Weights,
    compute_features,
    describe_query,
    gist,
    score,
    to_verify,
    trim_border,
    with_mirror,
)
from pictrace.settings import Settings

from bench.run import SAMPLES, images_in, pick_distractors
from bench.transforms import FAMILIES, VARIANTS, make_query

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "fit_fusion"
LIMITS = {"max_bytes": 10**9, "max_pixels": 10**9}
SHORTLIST = 50


def build_signals(distractors: int) -> dict[str, Any]:
    """Per query: family, and per shortlisted candidate: is-original, cosine, gist, ssim, geometry."""
    originals = images_in(SAMPLES / "photos") + images_in(SAMPLES / "wallpapers")
    ids = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in originals}
    chosen, _ = pick_distractors(SAMPLES / "distractors", distractors, set(ids.values()))
    embedder = LiteRTEmbedder(str(ROOT / "layers/model/model"))
    index = EmbeddingIndex(cast(IndexStore, None), refresh_seconds=1e9)  # filled directly, never refreshed
    features = {}
    rows: dict[str, Row | None] = {}
    for path in originals + chosen:
        bgr = trim_border(decode_image(path.read_bytes(), **LIMITS).bgr)
        f = compute_features(bgr)
        features[path.name] = f
        vectors = {"embedding": embedder.embed([bgr])[0], "gist": gist(f.thumb)}
        rows[path.name] = Row((path.name,), vectors)
    index._apply(Loaded(rows), set(), {name: name for name in rows})  # version: the name (never compared)
    signals = []
    for o, path in enumerate(originals):
        src = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
        for variant in VARIANTS:
            bgr = trim_border(decode_image(make_query(src, path.name, variant), **LIMITS).bgr)
            query = describe_query(bgr)
            cands = index.candidates(embedder.embed([bgr])[0], query.gists, SHORTLIST // 2)
            if any(c.transform >= 4 for c in cands):
                query = with_mirror(query, bgr)
            per = []
            for c in cands:
                s = score(c.cosine, query, features[c.id], c.gist, c.transform, Weights())
                per.append((c.id == path.name, c.cosine, c.gist, s.ssim, s.inliers))
            signals.append({"original": o, "family": variant.family, "variant": variant.name, "cands": per})
    return {"signals": signals, "originals": len(originals), "distractors": len(chosen)}


def recall_at_1(signals: list[dict[str, Any]], w: Weights, verify: int, scale: float) -> dict[str, float]:
    """Recall@1 per family under weights w, geometry = min(1, inliers/scale) for the candidates to_verify picks."""
    hits: dict[str, list[bool]] = defaultdict(list)
    total = w.cosine + w.gist + w.ssim + w.geometry
    for q in signals:
        arr = np.array([c[1:] for c in q["cands"]], dtype=np.float64)
        if len(arr) == 0:
            hits[q["family"]].append(False)
            continue
        cos, gis, ssi = np.clip(arr[:, 0], 0, None), np.clip(arr[:, 1], 0, None), arr[:, 2]
        quick = (w.cosine * cos + w.gist * gis + w.ssim * ssi) / total
        geo = np.zeros(len(arr))
        checked = list(to_verify(arr[:, 0], arr[:, 1], quick, verify))
        geo[checked] = np.minimum(1.0, arr[checked, 3] / scale)
        final = quick + w.geometry * geo / total
        hits[q["family"]].append(bool(q["cands"][int(np.argmax(final))][0]))
    return {f: float(np.mean(v)) for f, v in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distractors", type=int, default=500)
    parser.add_argument("--fresh", action="store_true", help="recompute the cached signals")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"signals-{args.distractors}.pkl"
    started = time.time()
    if args.fresh or not cache.exists():
        data = build_signals(args.distractors)
        cache.write_bytes(pickle.dumps(data))
    data = pickle.loads(cache.read_bytes())
    signals = data["signals"]
    train = [q for q in signals if q["original"] % 2 == 0]
    test = [q for q in signals if q["original"] % 2 == 1]
    verify = Settings(bucket="fit").verify
    scale = float(GEO_INLIERS)
    grid = [0.0, 0.1, 0.2, 0.3, 0.5]
    best: tuple[float, float, Weights] | None = None
    for wc, wg, ws, wgeo in itertools.product(grid, grid, grid, [0.0, 0.2, 0.5, 1.0, 2.0]):
        if wc + wg + ws + wgeo == 0:
            continue
        w = Weights(wc, wg, ws, wgeo)
        r = recall_at_1(train, w, verify, scale)
        key = (min(r.values()), float(np.mean(list(r.values()))))
        if best is None or key > best[:2]:
            best = (*key, w)
    assert best is not None
    fitted = best[2]
    previous = Weights(cosine=0.5, gist=0.0, ssim=0.25, geometry=0.25)  # issue 2's weights, no gist
    report = {
        "originals": data["originals"],
        "distractors": data["distractors"],
        "queries": {"train": len(train), "test": len(test)},
        "verify": verify,
        "geo_inliers_scale": GEO_INLIERS,
        "fitted": fitted.__dict__,
        "previous": previous.__dict__,
        "test_recall@1": {
            "fitted": recall_at_1(test, fitted, verify, scale),
            "previous": recall_at_1(test, previous, verify, scale),
        },
        "train_recall@1": {"fitted": recall_at_1(train, fitted, verify, scale)},
        "shortlist_recall": {
            f: float(np.mean([any(c[0] for c in q["cands"]) for q in signals if q["family"] == f])) for f in FAMILIES
        },
        "seconds": round(time.time() - started, 1),
    }
    (ROOT / "bench" / "fusion.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"fitted on {len(train)} queries (even originals), reported on {len(test)} (odd originals)")
    print(f"weights fitted: {fitted}  (in Settings: {Weights()}; previous: {previous})")
    print(f"| family | shortlist R@{SHORTLIST} | test R@1 fitted | test R@1 previous weights |")
    print("|---|---:|---:|---:|")
    for f in FAMILIES:
        print(
            f"| {f} | {report['shortlist_recall'][f]:.3f} | {report['test_recall@1']['fitted'].get(f, 0):.3f}"
            f" | {report['test_recall@1']['previous'].get(f, 0):.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
