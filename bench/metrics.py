"""Retrieval metrics and latency statistics (pure functions, tested in tests/unit/test_bench.py).

A query has a set of relevant ids (here: the entry of the original it was made from) and a ranking (ids, best
first) that may stop early: the search returns its reranked shortlist, so an original that did not survive the
cosine stage is simply absent. Definitions:

- rank: 1-based position of the first relevant id in the ranking, None when none is there;
- recall@k: the share of queries with rank <= k;
- average precision (AP): mean over the relevant ids of precision@(position of that id), counting relevant ids
  missing from the ranking as precision 0; with one relevant id this is 1/rank (0 when absent);
- mAP: the mean AP over the queries.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

KS = (1, 5, 10)


def first_rank(ranking: Sequence[str], relevant: Collection[str]) -> int | None:
    """1-based position of the first relevant id, or None."""
    for position, item in enumerate(ranking, start=1):
        if item in relevant:
            return position
    return None


def average_precision(ranking: Sequence[str], relevant: Collection[str]) -> float:
    """AP of one ranking: the mean of precision@i over the positions i of the relevant ids (missing ones count 0)."""
    if not relevant:
        raise ValueError("a query needs at least one relevant id")
    hits = 0
    total = 0.0
    seen: set[str] = set()
    for position, item in enumerate(ranking, start=1):
        if item in relevant and item not in seen:
            seen.add(item)
            hits += 1
            total += hits / position
    return total / len(relevant)


def recall_at(ranks: Iterable[int | None], k: int) -> float:
    """Share of queries whose first relevant id is within the top k (NaN for no queries)."""
    ranks = list(ranks)
    if not ranks:
        return math.nan
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean (NaN for nothing)."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    position = (len(data) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def summarise(ranks: Sequence[int | None], aps: Sequence[float], ks: Sequence[int] = KS) -> dict[str, float]:
    """recall@k for each k, mAP and the query count of one group of queries."""
    out: dict[str, float] = {f"recall@{k}": recall_at(ranks, k) for k in ks}
    out["mAP"] = mean(aps)
    out["queries"] = len(ranks)
    return out


# --- copy detection with negative queries (DISC2021) -------------------------------------------------------------


def micro_ap(predictions: Sequence[tuple[float, bool]], positives: int) -> float:
    """µAP as DISC2021 defines it: every query's predictions (score, correct) pooled into one list, sorted by
    score (best first), and the average precision of that one ranking over `positives` (the queries that have a
    true original; negative queries' predictions are all wrong). Ties keep their order (the sort is stable)."""
    if positives <= 0:
        return math.nan
    ranked = sorted(predictions, key=lambda p: -p[0])
    hits = 0
    total = 0.0
    for position, (_score, correct) in enumerate(ranked, start=1):
        if correct:
            hits += 1
            total += hits / position
    return total / positives


def precision_at_recall(predictions: Sequence[tuple[float, bool]], positives: int, recall: float) -> float:
    """The best precision of the pooled ranking at any cut whose recall is at least `recall` (0 if none reaches
    it): DISC2021's P@R."""
    if positives <= 0:
        return math.nan
    ranked = sorted(predictions, key=lambda p: -p[0])
    hits = 0
    best = 0.0
    for position, (_score, correct) in enumerate(ranked, start=1):
        if correct:
            hits += 1
            if hits / positives >= recall:
                best = max(best, hits / position)
    return best


def verdict_quality(called: Sequence[tuple[bool, bool]], positives: int) -> dict[str, float]:
    """Precision and recall of a copy verdict over predictions (called a copy, correct): precision = correct ones
    among those called a copy; recall = correct ones called a copy / positives (one true original per positive
    query)."""
    calls = [correct for is_copy, correct in called if is_copy]
    true = sum(calls)
    return {
        "precision": true / len(calls) if calls else math.nan,
        "recall": true / positives if positives else math.nan,
        "called": len(calls),
        "true": true,
    }


def threshold_for_precision(predictions: Sequence[tuple[float, bool]], precision: float) -> float:
    """The lowest score threshold at which the predictions scoring at least it have at least `precision`
    correct (the most recall that precision allows); halfway to the next lower score, so a score equal to a
    kept one passes. +inf when no threshold reaches the precision."""
    ranked = sorted(predictions, key=lambda p: -p[0])
    best_index = -1
    hits = 0
    for i, (_score, correct) in enumerate(ranked):
        hits += correct
        if correct and hits / (i + 1) >= precision:
            best_index = i
    if best_index < 0:
        return math.inf
    kept = ranked[best_index][0]
    lower = next((s for s, _c in ranked[best_index + 1 :] if s < kept), None)
    return kept if lower is None else (kept + lower) / 2
