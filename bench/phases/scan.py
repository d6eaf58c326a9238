"""Phase "scan vs faiss": the search's scan (EmbeddingIndex.candidates: top 25 by embedding, top 25 by gist over 8
turns) against faiss IndexFlatIP doing the same work, one query at a time, at N = faiss_n; and the plain cosine top
50 (EmbeddingIndex.shortlist) against faiss on the embeddings alone."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from bench import metrics
from bench.common import SHORTLIST
from bench.profile import Profile


@dataclass(frozen=True)
class ScanResult:  # results.json's "scan"
    n: int
    real: int
    synthetic: int
    load_s: float
    vectors: dict[str, list[int]]  # matrix name -> shape
    scan_p50_ms: float
    faiss_same_work_p50_ms: float
    ratio: float  # faiss's time for the same work over the scan's: > 1 means the scan is faster
    cosine_top50_p50_ms: float
    faiss_top50_p50_ms: float
    cosine_ratio: float
    same_top50: float
    threads: dict[str, int | None]


def scan_vs_faiss(profile: Profile, base_store: Any, settings: Any, template: Any, probes: list[Any]) -> ScanResult:
    """Both scans over the real entries plus synthetic rows up to faiss_n; probes: entries whose vectors query."""
    import faiss
    from pictrace.index.store import IndexStore
    from pictrace.rerank import gist_variants

    from bench.stack import PaddedIndex

    real = len(IndexStore(base_store, settings.index_prefix).entry_ids())
    index = PaddedIndex(base_store, settings.index_prefix, max(0, profile.faiss_n - real), template, 1e9, 16, seed=777)
    started = time.perf_counter()
    index.refresh(force=True)
    load_s = time.perf_counter() - started
    flat = faiss.IndexFlatIP(index.matrix.shape[1])
    flat.add(index.matrix)
    gists = index.matrices.get("gist")
    flat_gist = None if gists is None else faiss.IndexFlatIP(gists.shape[1])
    if flat_gist is not None:
        flat_gist.add(gists)
    half = (SHORTLIST + 1) // 2
    queries = [(np.asarray(e.embedding, np.float32), gist_variants(e.features.thumb)) for e in probes]
    reps = [queries[i % len(queries)] for i in range(profile.scan_reps)]
    laps: list[list[float]] = []
    same = 0
    for i, (q, g) in enumerate([reps[0], *reps]):
        t = time.perf_counter()
        index.candidates(q, g, half)
        t1 = time.perf_counter()
        top = index.shortlist(q, SHORTLIST)
        t2 = time.perf_counter()
        _d, found = flat.search(q[None], SHORTLIST)
        t3 = time.perf_counter()
        flat.search(q[None], half)
        if flat_gist is not None:
            flat_gist.search(np.ascontiguousarray(g, dtype=np.float32), half)
        t4 = time.perf_counter()
        if i == 0:
            continue  # warm-up (the centring cache is computed once per snapshot)
        laps.append([(b - a) * 1000 for a, b in pairwise((t, t1, t2, t3, t4))])
        same += {i for i, _ in top} == {index.ids[j] for j in found[0]}
    ours_ms, cosine_ms, faiss_ms, faiss_both_ms = (list(lap) for lap in zip(*laps, strict=True))
    scan, cosine = metrics.percentile(ours_ms, 50), metrics.percentile(cosine_ms, 50)
    faiss_top, faiss_same = metrics.percentile(faiss_ms, 50), metrics.percentile(faiss_both_ms, 50)
    out: dict[str, Any] = dict(n=len(index), real=real, synthetic=len(index) - real, load_s=load_s)
    out |= dict(vectors={name: list(m.shape) for name, m in index.matrices.items()}, scan_p50_ms=scan)
    out |= dict(faiss_same_work_p50_ms=faiss_same, ratio=faiss_same / scan, cosine_top50_p50_ms=cosine)
    out |= dict(faiss_top50_p50_ms=faiss_top, cosine_ratio=faiss_top / cosine, same_top50=same / len(reps))
    result = ScanResult(**out, threads={"faiss": faiss.omp_get_max_threads(), "cores": os.cpu_count()})
    del flat, flat_gist, index
    return result
