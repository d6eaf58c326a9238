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
