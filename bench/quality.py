"""Per-model quality from the search records: recall and mAP per family, shortlist recall per size, µAP (DISC2021)
and precision at recall 0.9, the copy verdict's precision and recall, and the rerank replayed offline under other
fusion weights (for the gist question and for `make fit-fusion`).

A record is one query through SearchService.search (bench.searching.run_searches, top_k = shortlist = 50):
``positive`` (its original is indexed) or not (held out), ``family``/``variant``, ``rank``/``ap`` of the original
in the final ranking, ``cos_rank``/``gist_rank`` (the original's rank over the whole index by centred embedding
cosine and by gist correlation: what decides whether a shortlist of any size keeps it), and ``hits``: every
reranked candidate, best first, as HIT_FIELDS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pictrace.rerank import GEO_INLIERS, to_verify
from pictrace.verdict import Weights

from bench import metrics

#: one reranked candidate of a record: is it the query's original, its signals, its final score and verdict
HIT_FIELDS = ("correct", "cosine", "gist", "ssim", "inliers", "final", "match")
#: shortlist sizes whose recall is reported (the product's shortlist: the top size/2 by cosine ∪ by gist)
SHORTLIST_SIZES = (5, 10, 25, 50, 100)
#: each query's predictions pooled for µAP and judged for the verdict: its top 10 (the API's default top_k)
TOP_PREDICTIONS = 10
PRODUCT_SHORTLIST = 50


def in_shortlist(record: Mapping[str, Any], size: int, gist_half: bool = True) -> bool:
    """Whether a shortlist of `size` keeps the original: the product's (top ceil(size/2) by cosine ∪ by gist), or
    with gist_half False the top `size` by cosine alone."""
    cos, gis = record.get("cos_rank"), record.get("gist_rank")
    if not gist_half:
        return cos is not None and cos <= size
    half = (size + 1) // 2
    return (cos is not None and cos <= half) or (gis is not None and gis <= half)


def _group(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    out = metrics.summarise([r["rank"] for r in records], [r["ap"] for r in records])
    for k in (1, 10, PRODUCT_SHORTLIST):
        out[f"shortlist@{k}"] = metrics.recall_at([r.get("cos_rank") for r in records], k)
    out["shortlisted"] = _share(in_shortlist(r, PRODUCT_SHORTLIST) for r in records)
    return out


def _share(flags: Any) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else math.nan


def predictions(records: Sequence[Mapping[str, Any]], top: int = TOP_PREDICTIONS) -> list[tuple[float, bool]]:
    """(final score, is the original) of every query's top predictions, pooled."""
    out = []
    for r in records:
        for hit in r["hits"][:top]:
            out.append((float(hit[5]), bool(hit[0])))
    return out


def summarise(records: Sequence[Mapping[str, Any]], families: Sequence[str], variants: Sequence[str]) -> dict[str, Any]:
    """Everything one model's records say (see the module docstring)."""
    positives = [r for r in records if r["positive"]]
    negatives = [r for r in records if not r["positive"]]
    by_family = {f: _group([r for r in positives if r["family"] == f]) for f in families}
    by_variant = {v: _group([r for r in positives if r["variant"] == v]) for v in variants}
    pooled = predictions(records)
    called = [(bool(h[6] == 1), bool(h[0])) for r in records for h in r["hits"][:TOP_PREDICTIONS]]
    calibrated = any(h[6] != -1 for r in records for h in r["hits"][:1])
    sizes = {
        str(s): {
            "product": _share(in_shortlist(r, s) for r in positives),
            "cosine_only": _share(in_shortlist(r, s, gist_half=False) for r in positives),
        }
        for s in SHORTLIST_SIZES
    }
    worst_negative = max((float(r["hits"][0][5]) for r in negatives if r["hits"]), default=math.nan)
    return {
        "families": {k: v for k, v in by_family.items() if v["queries"]},
        "variants": {k: v for k, v in by_variant.items() if v["queries"]},
        "overall": _group(positives),
        "queries": {"positive": len(positives), "negative": len(negatives)},
        "micro_ap": metrics.micro_ap(pooled, len(positives)),
        "precision_at_recall_0.9": metrics.precision_at_recall(pooled, len(positives), 0.9),
        "verdict": metrics.verdict_quality(called, len(positives)) if calibrated else None,
        "shortlist_sizes": sizes,
        "negatives_top1_final_max": worst_negative,
        "positives_top1_final_min": min(
            (float(r["hits"][0][5]) for r in positives if r["hits"] and r["hits"][0][0]), default=math.nan
        ),
    }


# --- the rerank replayed offline ---------------------------------------------------------------------------------


def replay(hits: np.ndarray, weights: Weights, verify: int) -> np.ndarray:
    """The final scores the rerank would give these candidates (rows of HIT_FIELDS) under other weights: the
    quick score, geometry for the candidates rerank.to_verify picks. Only the inliers the recorded run measured
    are known (the candidates it verified); a candidate these weights would verify but the run did not counts 0."""
    if len(hits) == 0:
        return np.zeros(0)
    cos, gis, ssim, inliers = hits[:, 1], hits[:, 2], hits[:, 3], hits[:, 4]
    total = weights.cosine + weights.gist + weights.ssim + weights.geometry
    quick = (weights.cosine * np.clip(cos, 0, None) + weights.gist * np.clip(gis, 0, None) + weights.ssim * ssim) / (
        total
    )
    geo = np.zeros(len(hits))
    checked = sorted(to_verify(cos, gis if weights.gist > 0 else None, quick, verify))
    geo[checked] = np.minimum(1.0, inliers[checked] / GEO_INLIERS)
    result: np.ndarray = quick + weights.geometry * geo / total
    return result


def replayed(records: Sequence[Mapping[str, Any]], weights: Weights, verify: int) -> list[dict[str, Any]]:
    """The records re-ranked under other weights: hits re-sorted by the replayed final score, rank recomputed."""
    out = []
    for r in records:
        hits = np.asarray(r["hits"], dtype=np.float64).reshape(-1, len(HIT_FIELDS))
        final = replay(hits, weights, verify)
        order = np.argsort(-final, kind="stable")
        new_hits = hits[order].copy()
        if len(new_hits):
            new_hits[:, 5] = final[order]
            new_hits[:, 6] = -1
        rank = next((i + 1 for i, h in enumerate(new_hits) if h[0]), None)
        out.append({**r, "hits": new_hits.tolist(), "rank": rank, "ap": 1.0 / rank if rank else 0.0})
    return out


def recall_and_micro_ap(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], float]:
    """recall@1 per family (positives) and µAP (all) of records."""
    positives = [r for r in records if r["positive"]]
    fams: dict[str, list[bool]] = {}
    for r in positives:
        fams.setdefault(r["family"], []).append(r["rank"] == 1)
    recall = {f: sum(v) / len(v) for f, v in fams.items()}
    return recall, metrics.micro_ap(predictions(records), len(positives))
