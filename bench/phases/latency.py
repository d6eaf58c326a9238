"""Phase "latency": the search's latency by stage, as a client that names neither top_k nor shortlist sees it, at
the index's real size (cold feature cache) and, for each model, padded with synthetic rows up to N = scan_n (cold,
then for the default model warm)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bench import models
from bench.profile import Profile
from bench.searching import LatencySummary, QueryCase, latency_pass, latency_summary


@dataclass(frozen=True)
class SyntheticCounts:  # how often a synthetic row reached a shortlist (fetched as a stand-in: a real entry's object)
    searches: int
    with_any: int
    total: int


@dataclass(frozen=True)
class LatencyPass:  # summaries by name ("N=1000 cold", ...), the report's keys (cold, large, large_warm) to them
    latency: dict[str, LatencySummary]
    keys: dict[str, str]
    synthetic_in_shortlists: SyntheticCounts | None = field(default=None)


def indexed_latency(service: Any, cases: list[QueryCase], loop: asyncio.AbstractEventLoop, n: int) -> LatencyPass:
    """The latency queries against the real index (n entries), cold feature cache."""
    cold, _ = latency_pass(service, cases, loop, warm=False)
    return LatencyPass({f"N={n} cold": latency_summary(cold)}, {"cold": f"N={n} cold"})


def padded_latency(
    profile: Profile, config: models.ModelConfig, cases: list[QueryCase], loop: asyncio.AbstractEventLoop
) -> LatencyPass:
    """The latency queries against the model's entries plus synthetic rows up to scan_n: cold, then (default) warm."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.backend import MemoryBackend
    from pictrace.index.store import IndexStore
    from pictrace.search import SearchService
    from pictrace.settings import Settings
    from pictrace.storage import Store

    from bench.stack import PaddedIndex

    settings = Settings.from_env(model_dir=str(config.model_dir), index_prefix=config.index_prefix)
    store, prefix = Store(settings.bucket), settings.index_prefix
    index_store = IndexStore(store, prefix)
    entries = sorted(index_store.entry_ids())
    template = index_store.get_entry(entries[0])[0]
    padding = max(0, profile.scan_n - len(entries))
    index = PaddedIndex(store, prefix, padding, template, settings.refresh_seconds, settings.fetch_concurrency)
    padded = SearchService(settings, store, OnnxEmbedder(config.model_dir), backend=MemoryBackend(index))
    # a synthetic row that reaches a shortlist is fetched as a stand-in, a real entry's objects (the template's entry
    # and details), and reranked like one: fetch and rerank do the work an index of N real entries would make them do
    layout = index_store.layout
    for fetcher, key_of in ((padded.fetcher, layout.entry_key), (padded.details, layout.details_key)):
        stand_ins, real, presign = {key_of(i) for i in index.padding.rows}, key_of(template.id), fetcher.presign
        fetcher.presign = lambda key, s=stand_ins, r=real, p=presign: p(r if key in s else key)  # type: ignore[misc]
    index.refresh(force=True)
    index.synthetic_per_call.clear()
    cold, warm = latency_pass(padded, cases, loop, warm=config.default)
    counts, names = index.synthetic_per_call, {"large": f"N={len(index)} cold", "large_warm": f"N={len(index)} warm"}
    latency = {names["large"]: latency_summary(cold)} | ({names["large_warm"]: latency_summary(warm)} if warm else {})
    return LatencyPass(latency, names, SyntheticCounts(len(counts), sum(1 for c in counts if c), sum(counts)))
