"""Retrieval metrics (rank, AP, recall@k, DISC2021's µAP and P@R), latency statistics, one model's quality from its
search records (bench.searching.SearchRecord) and their replay under other fusion weights (docs/benchmarks.md)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pictrace.rerank import GEO_INLIERS, to_verify
from pictrace.verdict import Weights

KS = (1, 5, 10)
#: one reranked candidate of a record: is it the query's original, its signals, its final score and verdict
HIT_FIELDS = ("correct", "cosine", "gist", "ssim", "inliers", "final", "match")
#: shortlist sizes whose recall is reported (the product's shortlist: the top size/2 by cosine ∪ by gist)
SHORTLIST_SIZES = (5, 10, 25, 50, 100)
#: each query's predictions pooled for µAP and judged for the verdict: its top 10 (the API's default top_k)
TOP_PREDICTIONS = 10
PRODUCT_SHORTLIST = 50


def first_rank(ranking: Sequence[str], relevant: Collection[str]) -> int | None:
    """1-based position of the first relevant id, or None."""
    return next((position for position, item in enumerate(ranking, start=1) if item in relevant), None)


def average_precision(ranking: Sequence[str], relevant: Collection[str]) -> float:
    """AP of one ranking (missing relevant ids count 0)."""
    if not relevant:
        raise ValueError("a query needs at least one relevant id")
    hits, total, seen = 0, 0.0, set()
    for position, item in enumerate(ranking, start=1):
        if item in relevant and item not in seen:
            seen.add(item)
            hits += 1
            total += hits / position
    return total / len(relevant)


def recall_at(ranks: Iterable[int | None], k: int) -> float:
    """Share of queries whose first relevant id is within the top k (NaN for no queries)."""
    ranks = list(ranks)
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else math.nan


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean (NaN for nothing)."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100), numpy's linear interpolation (NaN for nothing)."""
    return float(np.percentile(data, p)) if (data := list(values)) else math.nan


def summarise(ranks: Sequence[int | None], aps: Sequence[float], ks: Sequence[int] = KS) -> dict[str, float]:
    """recall@k for each k, mAP and the query count of one group of queries."""
    return {**{f"recall@{k}": recall_at(ranks, k) for k in ks}, "mAP": mean(aps), "queries": len(ranks)}


def _cuts(predictions: Sequence[tuple[float, bool]]) -> list[tuple[int, int]]:
    """(hits so far, position) at each correct prediction of the pooled ranking, best score first."""
    ranked = enumerate(sorted(predictions, key=lambda p: -p[0]), start=1)
    return [(hits, position) for hits, (position, _) in enumerate((x for x in ranked if x[1][1]), start=1)]


def micro_ap(predictions: Sequence[tuple[float, bool]], positives: int) -> float:
    """DISC2021's µAP: every query's (score, correct) pooled, sorted by score, one AP over `positives`."""
    total = 0.0  # summed in order (sum() compensates, which changes the last digits)
    for hits, position in _cuts(predictions):
        total += hits / position
    return total / positives if positives > 0 else math.nan


def precision_at_recall(predictions: Sequence[tuple[float, bool]], positives: int, recall: float) -> float:
    """DISC2021's P@R: the best precision of the pooled ranking at any cut with at least `recall` (else 0)."""
    if positives <= 0:
        return math.nan
    return max((h / p for h, p in _cuts(predictions) if h / positives >= recall), default=0.0)


def verdict_quality(called: Sequence[tuple[bool, bool]], positives: int) -> dict[str, float]:
    """Precision and recall of a copy verdict over (called a copy, correct) predictions (one original a positive)."""
    calls = [correct for is_copy, correct in called if is_copy]
    true, recall = sum(calls), sum(calls) / positives if positives else math.nan
    return {"precision": true / len(calls) if calls else math.nan, "recall": recall, "called": len(calls), "true": true}


def threshold_for_precision(predictions: Sequence[tuple[float, bool]], precision: float) -> float:
    """The lowest threshold keeping `precision` (halfway to the next lower score; +inf when none reaches it)."""
    ranked = sorted(predictions, key=lambda p: -p[0])
    best_index, hits = -1, 0
    for i, (_score, correct) in enumerate(ranked):
        hits += correct
        if correct and hits / (i + 1) >= precision:
            best_index = i
    if best_index < 0:
        return math.inf
    kept = ranked[best_index][0]
    lower = next((s for s, _c in ranked[best_index + 1 :] if s < kept), None)
    return kept if lower is None else (kept + lower) / 2


@dataclass(frozen=True)
class Quality:
    """One model's quality pass (results.json's models[label].quality; verdict None: no calibration)."""

    families: dict[str, dict[str, float]]
    variants: dict[str, dict[str, float]]
    overall: dict[str, float]
    queries: dict[str, int]
    micro_ap: float
    precision_at_recall_90: float
    verdict: dict[str, float] | None
    shortlist_sizes: dict[str, dict[str, float]]
    negatives_top1_final_max: float
    positives_top1_final_min: float

    @property
    def lowest_family(self) -> tuple[str, dict[str, float]]:
        """The family with the lowest recall@1 (the first of equals) and its figures."""
        return min(self.families.items(), key=lambda kv: kv[1]["recall@1"])


def in_shortlist(record: Mapping[str, Any], size: int, gist_half: bool = True) -> bool:
    """Whether a shortlist of `size` keeps the original: top size/2 by cosine ∪ by gist, or by cosine alone."""
    cos, gis = record.get("cos_rank"), record.get("gist_rank")
    if not gist_half:
        return cos is not None and cos <= size
    half = (size + 1) // 2
    return (cos is not None and cos <= half) or (gis is not None and gis <= half)


def _share(flags: Iterable[bool]) -> float:
    return mean(map(float, flags))


def _group(records: Sequence[Mapping[str, Any]], calibrated: bool = False) -> dict[str, float]:
    out = summarise([r["rank"] for r in records], [r["ap"] for r in records])
    if calibrated:  # the verdict's recall: share of queries whose original is among the top predictions called a copy
        out["verdict_recall"] = _share(any(h[6] == 1 and h[0] for h in r["hits"][:TOP_PREDICTIONS]) for r in records)
    for k in (1, 10, PRODUCT_SHORTLIST):
        out[f"shortlist@{k}"] = recall_at([r.get("cos_rank") for r in records], k)
    out["shortlisted"] = _share(in_shortlist(r, PRODUCT_SHORTLIST) for r in records)
    out["search_p50_ms"] = float(np.median([r["timings"]["total"] for r in records])) if records else math.nan
    return out


def predictions(records: Sequence[Mapping[str, Any]], top: int = TOP_PREDICTIONS) -> list[tuple[float, bool]]:
    """(final score, is the original) of every query's top predictions, pooled."""
    return [(float(hit[5]), bool(hit[0])) for r in records for hit in r["hits"][:top]]


def quality(records: Sequence[Mapping[str, Any]], families: Sequence[str], variants: Sequence[str]) -> Quality:
    """Everything one model's records say (see the module docstring)."""
    positives = [r for r in records if r["positive"]]
    negatives = [r for r in records if not r["positive"]]
    calibrated = any(h[6] != -1 for r in records for h in r["hits"][:1])
    by_family = {f: _group([r for r in positives if r["family"] == f], calibrated) for f in families}
    by_variant = {v: _group([r for r in positives if r["variant"] == v], calibrated) for v in variants}
    pooled = predictions(records)
    called = [(bool(h[6] == 1), bool(h[0])) for r in records for h in r["hits"][:TOP_PREDICTIONS]]
    kept = {"product": True, "cosine_only": False}  # the product's shortlist, or cosine's alone
    sizes = {
        str(s): {k: _share(in_shortlist(r, s, g) for r in positives) for k, g in kept.items()} for s in SHORTLIST_SIZES
    }
    first_right = [float(r["hits"][0][5]) for r in positives if r["hits"] and r["hits"][0][0]]
    return Quality(
        families={k: v for k, v in by_family.items() if v["queries"]},
        variants={k: v for k, v in by_variant.items() if v["queries"]},
        overall=_group(positives, calibrated),
        queries={"positive": len(positives), "negative": len(negatives)},
        micro_ap=micro_ap(pooled, len(positives)),
        precision_at_recall_90=precision_at_recall(pooled, len(positives), 0.9),
        verdict=verdict_quality(called, len(positives)) if calibrated else None,
        shortlist_sizes=sizes,
        negatives_top1_final_max=max((float(r["hits"][0][5]) for r in negatives if r["hits"]), default=math.nan),
        positives_top1_final_min=min(first_right, default=math.nan),
    )


def replay(hits: np.ndarray, weights: Weights, verify: int) -> np.ndarray:
    """The rerank's final scores of these candidates (rows of HIT_FIELDS) under other weights (unknown inliers: 0)."""
    if len(hits) == 0:
        return np.zeros(0)
    cos, gis, ssim, inliers = hits[:, 1], hits[:, 2], hits[:, 3], hits[:, 4]
    total = weights.total
    quick = (
        weights.cosine * np.clip(cos, 0, None) + weights.gist * np.clip(gis, 0, None) + weights.ssim * ssim
    ) / total
    geo = np.zeros(len(hits))
    checked = sorted(to_verify(cos, gis if weights.gist > 0 else None, quick, verify))
    geo[checked] = np.minimum(1.0, inliers[checked] / GEO_INLIERS)
    return np.asarray(quick + weights.geometry * geo / total)


def replayed(records: Sequence[Mapping[str, Any]], weights: Weights, verify: int) -> list[dict[str, Any]]:
    """The records re-ranked under other weights (hits re-sorted, rank recomputed)."""
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
    families = dict.fromkeys(r["family"] for r in positives)
    recall = {f: _share(r["rank"] == 1 for r in positives if r["family"] == f) for f in families}
    return recall, micro_ap(predictions(records), len(positives))
