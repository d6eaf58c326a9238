"""Queries (QueryCase: an edited original saved as a file) through the product's search, as the quality and latency
phases and `bench.worker search` run them: one SearchRecord per query (where the original ranked, its scores, the top
hit, the stage timings; with a RankProbe, its rank over the whole index and every candidate's signals)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from pictrace.index.backend import MemoryBackend
from pictrace.index.rows import Candidate

from bench import metrics
from bench.common import SHORTLIST
from bench.transforms import VARIANTS


@dataclass
class QueryCase:
    """One copy-detection query: a transformed original, saved as a file."""

    original: str
    original_id: str
    variant: int
    path: str
    bytes: int
    positive: bool = True  # False: its original was held out of the index (the right answer is "no copy")

    @property
    def family(self) -> str:
        return VARIANTS[self.variant].family

    @property
    def variant_name(self) -> str:
        return VARIANTS[self.variant].name


def stratified(cases: list[QueryCase], per_variant: int, salt: int = 0) -> list[QueryCase]:
    """per_variant queries of every variant, each variant from different originals (deterministic)."""
    by_variant: dict[int, list[QueryCase]] = {}
    for c in cases:
        by_variant.setdefault(c.variant, []).append(c)
    out = []
    for v, group in sorted(by_variant.items()):
        group = sorted(group, key=lambda c: c.original)
        out += [group[(v * per_variant + j + salt) % len(group)] for j in range(min(per_variant, len(group)))]
    return out


class RankedRecord(TypedDict):
    """Where a ranking put a query's original."""

    original: str
    variant: str
    family: str
    positive: bool
    rank: int | None
    ap: float


class SearchRecord(RankedRecord):
    """One query through SearchService.search."""

    cosine_rank: int | None
    scores: dict[str, float] | None
    top1: str | None
    top1_key: str | None
    top1_final: float | None
    top1_match: bool | None
    returned: int
    timings: dict[str, float]
    cos_rank: NotRequired[int | None]  # with a RankProbe
    gist_rank: NotRequired[int | None]
    hits: NotRequired[list[list[float]]]


#: p50/p95 in ms of every stage and the total, and "queries": the count
LatencySummary = dict[str, Any]


def ranked(case: QueryCase, ranking: list[str]) -> RankedRecord:
    """Which original and variant, and where the ranking put the original (a negative: rank None, AP 0)."""
    relevant = {case.original_id} if case.positive else set()
    return {
        "original": case.original,
        "variant": case.variant_name,
        "family": case.family,
        "positive": case.positive,
        "rank": metrics.first_rank(ranking, relevant),
        "ap": metrics.average_precision(ranking, relevant) if relevant else 0.0,
    }


class RankProbe(MemoryBackend):
    """The in-memory shortlist backend, also recording where the target id ranks over the whole index by cosine and
    by gist (what a shortlist of any size would keep)."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner.index)
        self.on_change = inner.on_change
        self.target: str | None = None
        self.ranks: tuple[int | None, int | None] = (None, None)

    def candidates(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        shortlist: int,
        prefix: str | None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """The memory backend's candidates; the target's ranks over every row on the side."""
        self.ranks = (None, None)
        if self.target is not None:
            self.index.refresh()
            everything = self.index.candidates(query, gists, len(self.index), prefix, centre=centre)  # both scores
            if (target := next((c for c in everything if c.id == self.target), None)) is not None:
                cos = 1 + sum(1 for c in everything if c.cosine > target.cosine)
                self.ranks = (cos, 1 + sum(1 for c in everything if c.gist > target.gist))
        return super().candidates(query, gists, shortlist, prefix, by_layout, centre)


def hit_row(hit: Any, original_id: str | None) -> list[float]:
    """One reranked candidate as metrics.HIT_FIELDS (match: 1, 0, or -1 where the model has no calibration)."""
    s = hit.scores
    match = -1 if hit.match is None else int(hit.match)
    cosine, gist, ssim = (round(x, 5) for x in (s.cosine, s.gist, s.ssim))
    return [float(hit.id == original_id), cosine, gist, ssim, float(s.inliers), round(s.final, 6), float(match)]


def run_searches(
    service: Any,
    cases: Sequence[QueryCase],
    loop: asyncio.AbstractEventLoop,
    cold: bool = False,
    rank_probe: RankProbe | None = None,
    deployed: bool = False,
) -> list[SearchRecord]:
    """Each query through SearchService.search, top_k = shortlist = 50 (deployed: the settings' own); cold: the
    caches emptied before each; rank_probe: the whole-index ranks and every candidate's signals too."""
    from pictrace.search import SearchQuery

    records: list[SearchRecord] = []
    for case in cases:
        if cold:
            service.fetcher.clear()
            service.entry_links.clear()
            service.links.clear()
        if rank_probe is not None:
            rank_probe.target = case.original_id if case.positive else None
        data = Path(case.path).read_bytes()
        size = None if deployed else SHORTLIST
        result = loop.run_until_complete(service.search(SearchQuery(image=data), top_k=size, shortlist=size))
        ranking = [h.id for h in result.results]
        hit = next((h for h in result.results if h.id == case.original_id), None) if case.positive else None
        top = result.results[0] if result.results else None
        record: SearchRecord = {
            **ranked(case, ranking),
            "cosine_rank": hit.rank_cosine if hit else None,
            "scores": asdict(hit.scores) if hit else None,
            "top1": ranking[0] if ranking else None,
            "top1_key": top.keys[0] if top else None,
            "top1_final": top.scores.final if top else None,
            "top1_match": top.match if top else None,
            "returned": len(ranking),
            "timings": dict(result.timings),
        }
        if rank_probe is not None:
            record["cos_rank"], record["gist_rank"] = rank_probe.ranks
            original = case.original_id if case.positive else None
            record["hits"] = [hit_row(h, original) for h in result.results]
        records.append(record)
    return records


def latency_summary(records: Sequence[SearchRecord]) -> LatencySummary:
    """p50/p95 of every stage and the total, in ms."""
    stages = list(dict.fromkeys(k for r in records for k in r["timings"]))
    out: LatencySummary = {"queries": len(records)}
    for stage in stages:
        values = [r["timings"].get(stage, 0.0) for r in records]
        out[stage] = {"p50": metrics.percentile(values, 50), "p95": metrics.percentile(values, 95)}
    return out


def latency_pass(
    service: Any, cases: Sequence[QueryCase], loop: asyncio.AbstractEventLoop, warm: bool = True
) -> tuple[list[SearchRecord], list[SearchRecord]]:
    """Each query as a client naming no top_k or shortlist sends it, caches emptied (cold), then again (warm)."""
    cold_records: list[SearchRecord] = []
    warm_records: list[SearchRecord] = []
    for case in cases:
        cold_records.extend(run_searches(service, [case], loop, cold=True, deployed=True))
        if warm:
            warm_records.extend(run_searches(service, [case], loop, deployed=True))
    return cold_records, warm_records
