"""Phase "seed": the seed's method (issue 4's baseline, bench.seed): its latency as-is (list, fetch, decode, SSIM +
ORB for every image) and with precomputed features, and its recall on a stratified sample (worker processes), next
to PicTrace's on the same queries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from bench import metrics, seed
from bench.common import ROOT
from bench.phases.queries import QueryCase, stratified
from bench.profile import Profile
from bench.searching import RankedRecord, ranked
from bench.transforms import FAMILIES, VARIANTS


class Agreement(TypedDict):
    """Does the precomputed seed rank like the as-is one, and the batched SSIM like scikit-image's?"""

    query: str
    same_top10_as_is: bool
    same_top10_batched: bool
    max_abs_score_diff_batched: float | None


@dataclass(frozen=True)
class SeedLatency:
    """The seed's latency at the index's size."""

    n: int
    as_is_queries: int
    as_is_ms: list[float]
    as_is_p50: float
    precomputed_queries: int
    precomputed_ms: list[float]
    precomputed_p50: float
    agreement: list[Agreement]


@dataclass(frozen=True)
class SeedResult:
    """results.json's "seed"."""

    latency: SeedLatency
    sample: list[tuple[str, str]]  # (variant, original)
    records: list[RankedRecord]
    recall: dict[str, float]
    recall_by_family: dict[str, dict[str, float]]
    pictrace_on_sample: dict[str, float]


def seed_as_is(
    store: Any, key_ids: dict[str, str], query: seed.SeedFeatures
) -> tuple[list[tuple[str, float]], dict[str, seed.SeedFeatures]]:
    """The seed's search: list the images, and for each: fetch, decode, 256x256 gray, SSIM + ORB. Ranking by id."""
    keys = [k for k, _etag, _size in store.list("images/")]
    best: dict[str, float] = {}
    features: dict[str, seed.SeedFeatures] = {}
    for key in keys:
        body = store.get(key).body
        f = seed.features(seed.decode(body))
        final = seed.pair_score(query, f)[2]
        entry = key_ids[key]
        features[entry] = f
        best[entry] = max(final, best.get(entry, -1.0))
    ranking = sorted(best.items(), key=lambda t: t[1], reverse=True)
    return ranking, features


def seed_latency(
    profile: Profile, store: Any, key_ids: dict[str, str], cases: list[QueryCase]
) -> tuple[SeedLatency, seed.SeedIndex]:
    """Latency of the seed as-is and with precomputed features; the index of the features it computed."""
    timing_cases = stratified(cases, 1, salt=7)[:: max(1, len(VARIANTS) // max(profile.seed_asis, 1))]
    timing_cases = timing_cases[: max(profile.seed_asis, profile.seed_pairwise)]
    as_is_ms = []
    rankings: dict[str, list[tuple[str, float]]] = {}
    index_features: dict[str, seed.SeedFeatures] = {}
    for case in timing_cases[: profile.seed_asis]:
        started = time.perf_counter()
        q = seed.features(seed.decode(Path(case.path).read_bytes()))
        ranking, index_features = seed_as_is(store, key_ids, q)
        as_is_ms.append((time.perf_counter() - started) * 1000)
        rankings[case.path] = ranking
        print(f"    seed as-is: {as_is_ms[-1] / 1000:.1f} s for one query over {len(ranking)} images", flush=True)
    index = seed.SeedIndex.from_features(index_features)
    pairwise_ms = []
    agreement: list[Agreement] = []
    for case in timing_cases[: profile.seed_pairwise]:
        started = time.perf_counter()
        q = seed.features(seed.decode(Path(case.path).read_bytes()))
        ranking = index.pairwise(q)
        pairwise_ms.append((time.perf_counter() - started) * 1000)
        batch = index.ranking(q, k=len(ranking))
        reference = rankings.get(case.path, ranking)
        agreement.append(
            {
                "query": case.variant_name + " " + case.original,
                "same_top10_as_is": [i for i, _ in reference[:10]] == [i for i, _ in ranking[:10]],
                "same_top10_batched": [i for i, _ in batch[:10]] == [i for i, _ in ranking[:10]],
                "max_abs_score_diff_batched": max(abs(a - b) for (_, a), (_, b) in zip(ranking, batch, strict=True))
                if len(batch) == len(ranking)
                else None,
            }
        )
    latency = SeedLatency(
        n=len(index.ids),
        as_is_queries=len(as_is_ms),
        as_is_ms=as_is_ms,
        as_is_p50=metrics.percentile(as_is_ms, 50),
        precomputed_queries=len(pairwise_ms),
        precomputed_ms=pairwise_ms,
        precomputed_p50=metrics.percentile(pairwise_ms, 50),
        agreement=agreement,
    )
    return latency, index


def seed_rankings(index: seed.SeedIndex, sample: list[QueryCase], work: Path) -> dict[str, Any]:
    """The seed's ranking of every sample query, in two processes (bench.seed) over the saved index."""
    index_path = work / "seed-index.npz"
    index.save(index_path)
    halves = [sample[0::2], sample[1::2]]
    procs = []
    for i, half in enumerate(halves):
        listing = work / f"seed-queries-{i}.txt"
        listing.write_text("\n".join(c.path for c in half) + "\n")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.seed", str(index_path), str(listing), str(work / f"seed-out-{i}.json")],
                cwd=ROOT,
            )
        )
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"a seed worker failed with exit code {p.returncode}")
    results: dict[str, Any] = {}
    for i in range(len(halves)):
        results.update(json.loads((work / f"seed-out-{i}.json").read_text()))
    return results


def seed_phase(
    profile: Profile,
    store: Any,
    key_ids: dict[str, str],
    cases: list[QueryCase],
    work: Path,
    pictrace_records: Sequence[RankedRecord],
    announce: Callable[[str], None],
) -> SeedResult:
    """Latency of the seed as-is and with precomputed features, its recall on a stratified sample, and PicTrace's
    (pictrace_records: the default model's quality records) on the same queries. announce: the next step's name."""
    latency, index = seed_latency(profile, store, key_ids, cases)
    announce(f"seed's recall: {profile.seed_per_variant} queries per variant, precomputed features, two processes")
    sample = stratified(cases, profile.seed_per_variant, salt=3)
    results = seed_rankings(index, sample, work)
    records = [ranked(case, results[case.path]["ranking"]) for case in sample]
    chosen = {(c.variant_name, c.original) for c in sample}
    same = [r for r in pictrace_records if (r["variant"], r["original"]) in chosen]
    return SeedResult(
        latency=latency,
        sample=[(c.variant_name, c.original) for c in sample],
        records=records,
        recall=metrics.summarise([r["rank"] for r in records], [r["ap"] for r in records]),
        recall_by_family={
            f: metrics.summarise(
                [r["rank"] for r in records if r["family"] == f], [r["ap"] for r in records if r["family"] == f]
            )
            for f in FAMILIES
        },
        pictrace_on_sample=metrics.summarise([r["rank"] for r in same], [r["ap"] for r in same]),
    )
