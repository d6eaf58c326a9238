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


class SearchRecord(TypedDict):
    """One query through SearchService.search: which original and variant, where the ranking put the original (a
    negative: rank None, AP 0), and what the search returned."""

    original: str
    variant: str
    family: str
    positive: bool
    rank: int | None
    ap: float
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
        if (wanted := self.target) is not None:  # the query's own call (the region search's later calls are not)
            self.target = None
            self.index.refresh()
            everything = self.index.candidates(query, gists, len(self.index), prefix, centre=centre)  # both scores
            if (target := next((c for c in everything if c.id == wanted), None)) is not None:
                cos = 1 + sum(1 for c in everything if c.cosine > target.cosine)
                self.ranks = (cos, 1 + sum(1 for c in everything if c.gist > target.gist))
        return super().candidates(query, gists, shortlist, prefix, by_layout, centre)


def hit_row(hit: Any, original_id: str | None) -> list[float]:
    """One reranked candidate as metrics.HIT_FIELDS (match: 1, 0, or -1 where the model has no calibration)."""
    s, match = hit.scores, -1 if hit.match is None else int(hit.match)
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
    size = None if deployed else SHORTLIST
    for case in cases:
        if cold:
            for cache in (service.fetcher, service.details, service.entry_links, service.links):
                cache.clear()
        original = case.original_id if case.positive else None
        if rank_probe is not None:
            rank_probe.target, rank_probe.ranks = original, (None, None)
        query = SearchQuery(image=Path(case.path).read_bytes())
        result = loop.run_until_complete(service.search(query, top_k=size, shortlist=size))
        ranking, relevant = [h.id for h in result.results], {case.original_id} if case.positive else set()
        hit = next((h for h in result.results if h.id == original), None)  # a negative's: None
        top = result.results[0] if result.results else None
        record: SearchRecord = {
            "original": case.original,
            "variant": case.variant_name,
            "family": case.family,
            "positive": case.positive,
            "rank": metrics.first_rank(ranking, relevant),
            "ap": metrics.average_precision(ranking, relevant) if relevant else 0.0,
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
            record["hits"] = [hit_row(h, original) for h in result.results]
        records.append(record)
    return records


def latency_summary(records: Sequence[SearchRecord]) -> LatencySummary:
    """p50/p95 of every stage and the total, in ms."""
    out: LatencySummary = {"queries": len(records)}
    for stage in dict.fromkeys(k for r in records for k in r["timings"]):
        values = [r["timings"].get(stage, 0.0) for r in records]
        out[stage] = {"p50": metrics.percentile(values, 50), "p95": metrics.percentile(values, 95)}
    return out


def latency_pass(
    service: Any, cases: Sequence[QueryCase], loop: asyncio.AbstractEventLoop, warm: bool = True
) -> tuple[list[SearchRecord], list[SearchRecord]]:
    """Each query as a client naming no top_k or shortlist sends it, caches emptied (cold), then again (warm)."""
    passes: tuple[list[SearchRecord], list[SearchRecord]] = ([], [])
    for case in cases:
        passes[0].extend(run_searches(service, [case], loop, cold=True, deployed=True))
        passes[1].extend(run_searches(service, [case], loop, deployed=True) if warm else [])
    return passes
