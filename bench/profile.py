"""How much a bench run measures: the full profile (`make bench`) and the quick one (`make bench-quick`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """How much a run measures."""

    name: str
    index_size: int  # real images indexed through the real ingest path
    scan_n: int  # the latency pass at "N = 10,000" (real + synthetic vectors)
    faiss_n: int  # shortlist scan against faiss IndexFlatIP
    query_originals: int | None  # originals the quality queries are made from (None = all)
    latency_per_variant: int  # latency passes: queries per variant...
    latency_every: int  # ...then every k-th of those
    coldstarts: int
    tf_images: int
    large_images: int
    scan_reps: int
    capacity_n: tuple[int, ...]  # the segmented index's load and scan at these N, synthetic vectors (phases.capacity)
    held_out_share: float = 0.2  # originals kept out of the index: their queries are the negatives
    embed_images: int = 16  # originals each model embeds for its ms/image
    side_latency_every: int = 2  # the other models' latency pass: every k-th of the default model's queries


FULL = Profile("full", 1000, 10_000, 100_000, 16, 2, 1, 3, 8, 10, 30, (100_000,), embed_images=12)
QUICK = Profile("quick", 200, 2_000, 20_000, 6, 1, 3, 1, 0, 5, 15, (20_000,), embed_images=6)
