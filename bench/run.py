"""`python -m bench.run [--quick]`: PicTrace's retrieval quality and speed on real images, with the seed's method as
the baseline, in one run (issue 4). `make bench` / `make bench-quick` run it after their set-up.

Prints the tables, writes bench/results.json, bench/recall_by_family.png and bench/latency_by_stage.png, and
(full runs only) docs/benchmarks.md. What is measured, and how, is described in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import cv2
import numpy as np

from bench import metrics, models, quality, report, seed
from bench.transforms import FAMILIES, VARIANTS, make_query

if TYPE_CHECKING:  # pictrace is imported where it is used (the bench sets up its environment first)
    from pictrace.index.backend import MemoryBackend
    from pictrace.index.layout import Entry
    from pictrace.index.rows import Candidate
    from pictrace.index.store import ChangeObserver

ROOT = Path(__file__).resolve().parent.parent
SIGNALS_DIR = ROOT / "build" / "bench"
SAMPLES = ROOT / "data/samples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
#: Doxygen class/struct diagrams of opencv-doc: ~1,300 near-identical small box drawings, left out of the
#: distractors (used only to top the index up to its size when the other distractors run out)
DIAGRAM = re.compile(r"html_d._d.*_(class|struct)")
SHORTLIST = 50
GOAL_RECALL = 0.97

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Profile:
    """How much a run measures."""

    name: str
    index_size: int  # real images indexed through the real ingest path
    scan_n: int  # the latency pass at "N = 10,000" (real + synthetic vectors)
    faiss_n: int  # shortlist scan against faiss IndexFlatIP
    query_originals: int | None  # originals the quality queries are made from (None = all)
    seed_per_variant: int  # seed recall sample: queries per variant
    seed_asis: int  # seed as-is latency: queries
    seed_pairwise: int  # seed with precomputed features: queries
    latency_per_variant: int  # latency passes: queries per variant...
    latency_every: int  # ...then every k-th of those
    coldstarts: int
    tf_images: int
    large_images: int
    scan_reps: int
    capacity_n: tuple[int, ...]  # the segmented index's load and scan at these N, synthetic vectors (bench.capacity)
    held_out_share: float = 0.2  # originals kept out of the index: their queries are the negatives
    embed_images: int = 16  # originals each model embeds for its ms/image
    side_latency_every: int = 2  # the other models' latency pass: every k-th of the default model's queries


FULL = Profile("full", 1000, 10_000, 100_000, 16, 0, 0, 0, 2, 1, 3, 8, 4, 30, (100_000,), embed_images=12)
QUICK = Profile("quick", 200, 2_000, 20_000, 6, 0, 0, 0, 1, 3, 1, 0, 2, 15, (20_000,), embed_images=6)


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


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) so far of this process (and its finished children) and of the moto server."""
    import psutil

    from bench.stack import ProcessMotoServer

    me = psutil.Process()
    t = me.cpu_times()
    machine_times = psutil.cpu_times()
    busy = sum(machine_times) - machine_times.idle - getattr(machine_times, "iowait", 0.0)
    out = {"bench": t.user + t.system, "children": t.children_user + t.children_system, "machine": busy}
    for server in ProcessMotoServer.running:
        if server.pid is not None:
            try:
                s = psutil.Process(server.pid).cpu_times()
                out["s3 (moto)"] = s.user + s.system
            except psutil.Error:
                pass
    return out


class Clock:
    """Phase timer and progress printer; also the CPU time each phase took in the bench and in moto's server."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self._phase: tuple[str, float, dict[str, float]] | None = None

    def phase(self, name: str) -> None:
        self.end()
        print(f"[{time.perf_counter() - self.started:6.1f} s] {name}", flush=True)
        self._phase = (name, time.perf_counter(), cpu_seconds())

    def end(self) -> None:
        if self._phase:
            name, started, cpu = self._phase
            self.phases[name] = round(time.perf_counter() - started, 2)
            now = cpu_seconds()
            self.cpu[name] = {k: round(now[k] - cpu.get(k, 0.0), 2) for k in now}
            self._phase = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# --- data --------------------------------------------------------------------------------------------------------


def images_in(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def pick_distractors(folder: Path, n: int, exclude: set[str]) -> tuple[list[Path], dict[str, int]]:
    """n distractors: a seeded shuffle of the non-diagram images, then diagrams only if those run out.
    Files whose bytes equal an original's (exclude: ids) are left out."""
    files = images_in(folder)
    rng = np.random.default_rng(0)
    plain = [p for p in files if not DIAGRAM.search(p.name)]
    diagrams = [p for p in files if DIAGRAM.search(p.name)]
    rng.shuffle(plain)
    rng.shuffle(diagrams)
    chosen: list[Path] = []
    seen = set(exclude)
    skipped_same = 0
    for p in [*plain, *diagrams]:
        if len(chosen) >= n:
            break
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest in seen:
            skipped_same += 1
            continue
        seen.add(digest)
        chosen.append(p)
    used_diagrams = sum(1 for p in chosen if DIAGRAM.search(p.name))
    return chosen, {
        "available": len(files),
        "diagrams_available": len(diagrams),
        "non_diagrams_available": len(plain),
        "chosen": len(chosen),
        "diagrams_used": used_diagrams,
        "same_bytes_as_an_original_skipped": skipped_same,
    }


def _queries_for(args: tuple[str, str, list[int], str]) -> list[tuple[str, int, str, int]]:
    """Worker: every variant of one original, written as JPEG files. Returns (name, variant, path, bytes)."""
    path, name, variant_ids, out_dir = args
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    out = []
    for v in variant_ids:
        data = make_query(img, name, VARIANTS[v])
        target = Path(out_dir) / f"v{v:02d}" / f"{Path(name).stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.append((name, v, str(target), len(data)))
    return out


def make_queries(
    originals: list[Path], ids: dict[str, str], out_dir: Path, held_out: set[str] | None = None
) -> list[QueryCase]:
    """All variants of the given originals, made two at a time (one process per core); those of the held-out
    originals (names) are negative queries."""
    held_out = held_out or set()
    jobs = [(str(p), p.name, list(range(len(VARIANTS))), str(out_dir)) for p in originals]
    cases = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for done in pool.map(_queries_for, jobs):
            for name, v, path, size in done:
                cases.append(QueryCase(name, ids[name], v, path, size, positive=name not in held_out))
    cases.sort(key=lambda c: (c.variant, c.original))
    return cases


def stratified(cases: list[QueryCase], per_variant: int, salt: int = 0) -> list[QueryCase]:
    """per_variant queries of every variant, each variant from different originals (deterministic)."""
    by_variant: dict[int, list[QueryCase]] = {}
    for c in cases:
        by_variant.setdefault(c.variant, []).append(c)
    out = []
    for v, group in sorted(by_variant.items()):
        group = sorted(group, key=lambda c: c.original)
        for j in range(min(per_variant, len(group))):
            out.append(group[(v * per_variant + j + salt) % len(group)])
    return out


# --- the product's search --------------------------------------------------------------------------------------


def ranked(case: QueryCase, ranking: list[str]) -> dict[str, Any]:
    """A query's record: which original and variant, and where the ranking put the original (rank, AP); a
    negative query (original not indexed) has rank None and AP 0."""
    relevant = {case.original_id} if case.positive else set()
    return {
        "original": case.original,
        "variant": case.variant_name,
        "family": case.family,
        "positive": case.positive,
        "rank": metrics.first_rank(ranking, relevant),
        "ap": metrics.average_precision(ranking, relevant) if relevant else 0.0,
    }


class RankProbe:
    """A shortlist backend (pictrace.index.backend.ShortlistBackend) around the in-memory one: its candidates are
    the memory backend's, and it records where the current target id ranks over the whole index by centred
    embedding cosine and by gist (the two halves of the shortlist), so the bench can tell what a shortlist of any
    size would keep. Pass it to SearchService(backend=...)."""

    name = "memory"

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.on_change: ChangeObserver | None = inner.on_change
        self.target: str | None = None
        self.ranks: tuple[int | None, int | None] = (None, None)

    def refresh(self, force: bool = False) -> None:
        """See ShortlistBackend."""
        self.inner.refresh(force)

    def expire(self) -> None:
        """See ShortlistBackend."""
        self.inner.expire()

    def candidates(self, query: np.ndarray, gists: np.ndarray, shortlist: int, prefix: str | None) -> list[Candidate]:
        """The memory backend's candidates; the target's ranks over every row on the side."""
        self.ranks = (None, None)
        if self.target is not None:
            index = self.inner.index
            index.refresh()
            everything = index.candidates(query, gists, len(index), prefix)  # every row, with both scores
            target = next((c for c in everything if c.id == self.target), None)
            if target is not None:
                cos = 1 + sum(1 for c in everything if c.cosine > target.cosine)
                gis = 1 + sum(1 for c in everything if c.gist > target.gist)
                self.ranks = (cos, gis)
        return self.inner.candidates(query, gists, shortlist, prefix)

    def keys(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """See ShortlistBackend."""
        return self.inner.keys(ids)

    def count(self) -> int | None:
        """See ShortlistBackend."""
        return self.inner.count()

    def candidate(self, query: np.ndarray, gists: np.ndarray, target: Entry) -> Candidate:
        """See ShortlistBackend."""
        return self.inner.candidate(query, gists, target)


def hit_row(hit: Any, original_id: str | None) -> list[float]:
    """One reranked candidate as quality.HIT_FIELDS (match: 1, 0, or -1 where the model has no calibration)."""
    s = hit.scores
    match = -1 if hit.match is None else int(hit.match)
    return [
        float(hit.id == original_id),
        round(s.cosine, 5),
        round(s.gist, 5),
        round(s.ssim, 5),
        float(s.inliers),
        round(s.final, 6),
        float(match),
    ]


def run_searches(
    service: Any,
    cases: Sequence[QueryCase],
    loop: asyncio.AbstractEventLoop,
    cold: bool = False,
    rank_probe: RankProbe | None = None,
    deployed: bool = False,
) -> list[dict[str, Any]]:
    """Each query through SearchService.search (the code the API runs), top_k = shortlist = 50, or with deployed
    the settings' own (what a client that names neither gets: the latency figures). cold: the feature cache emptied
    before each. rank_probe (the service's backend): also the original's rank over the whole index by cosine and by
    gist, and every reranked candidate's signals (hits)."""
    from pictrace.search import Query

    records = []
    for case in cases:
        if cold:
            service.fetcher.clear()
        if rank_probe is not None:
            rank_probe.target = case.original_id if case.positive else None
        data = Path(case.path).read_bytes()
        size = None if deployed else SHORTLIST
        result = loop.run_until_complete(service.search(Query(image=data), top_k=size, shortlist=size))
        ranking = [h.id for h in result.results]
        hit = next((h for h in result.results if h.id == case.original_id), None) if case.positive else None
        top = result.results[0] if result.results else None
        record = {
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


def latency_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 of every stage and the total, in ms."""
    stages = list(dict.fromkeys(k for r in records for k in r["timings"]))
    out: dict[str, Any] = {"queries": len(records)}
    for stage in stages:
        values = [r["timings"].get(stage, 0.0) for r in records]
        out[stage] = {"p50": metrics.percentile(values, 50), "p95": metrics.percentile(values, 95)}
    return out


# --- the seed ----------------------------------------------------------------------------------------------------


def seed_as_is(store: Any, key_ids: dict[str, str], query: seed.SeedFeatures) -> tuple[list[tuple[str, float]], dict]:
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


def seed_phase(
    profile: Profile,
    store: Any,
    key_ids: dict[str, str],
    cases: list[QueryCase],
    work: Path,
    clock: Clock,
) -> dict[str, Any]:
    """Latency of the seed as-is and with precomputed features, and its recall on a stratified sample."""
    out: dict[str, Any] = {}
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
    agreement = []
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
    out["latency"] = {
        "n": len(index.ids),
        "as_is_queries": len(as_is_ms),
        "as_is_ms": as_is_ms,
        "as_is_p50": metrics.percentile(as_is_ms, 50),
        "precomputed_queries": len(pairwise_ms),
        "precomputed_ms": pairwise_ms,
        "precomputed_p50": metrics.percentile(pairwise_ms, 50),
        "agreement": agreement,
    }
    clock.phase(f"seed's recall: {profile.seed_per_variant} queries per variant, precomputed features, two processes")
    sample = stratified(cases, profile.seed_per_variant, salt=3)
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
    records: list[dict[str, Any]] = []
    for case in sample:
        records.append(ranked(case, results[case.path]["ranking"]))
    out["sample"] = [(c.variant_name, c.original) for c in sample]
    out["records"] = records
    out["recall"] = metrics.summarise([r["rank"] for r in records], [r["ap"] for r in records])
    out["recall_by_family"] = {
        f: metrics.summarise(
            [r["rank"] for r in records if r["family"] == f], [r["ap"] for r in records if r["family"] == f]
        )
        for f in FAMILIES
    }
    return out


# --- speed probes ------------------------------------------------------------------------------------------------


def child_json(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """Run `python -m <args>` in a fresh process with this environment; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cold_starts(profile: Profile, query: Path) -> dict[str, Any]:
    """Fresh processes running the search Lambda's handler: import, model load, first request."""
    runs = []
    for _ in range(profile.coldstarts):
        spawned = time.time()
        runs.append(child_json(["bench.coldstart", repr(spawned), str(query)], timeout=300))
    totals = [r["total_ms"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
    return {"runs": runs, "total_p50": metrics.percentile(totals, 50), "median_run": median_run}


def compacted_cold_starts(profile: Profile, settings: Any, query: Path) -> dict[str, Any]:
    """One compaction of the index (pictrace.index.backend.compact: entries folded into segments and a manifest, as
    the scheduled compact function does), then the same cold starts: the first refresh now reads the segments."""
    from pictrace.index.backend import compact

    started = time.perf_counter()
    outcome = compact(settings)
    seconds = time.perf_counter() - started
    out = cold_starts(profile, query)
    out["compaction"] = {"seconds": seconds, **{k: v for k, v in vars(outcome).items() if k != "written"}}
    return out


def scan_vs_faiss(profile: Profile, base_store: Any, settings: Any, template: Any, probes: list[Any]) -> dict:
    """The search's scan against faiss IndexFlatIP doing the same work, one query at a time, at N = faiss_n.

    The search's scan is EmbeddingIndex.candidates: the top k by (centred) embedding cosine and the top k by gist
    correlation over the query's 8 D4 turns (k = 25 for a shortlist of 50); faiss does the same with one flat
    inner-product index per vector (1 embedding query, 8 gist queries, k = 25 each). The plain cosine top 50
    (EmbeddingIndex.shortlist) against faiss on the embeddings alone is reported too."""
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
    flat_gist = None
    if gists is not None:
        flat_gist = faiss.IndexFlatIP(gists.shape[1])
        flat_gist.add(gists)
    half = (SHORTLIST + 1) // 2
    queries = [(np.asarray(e.embedding, np.float32), gist_variants(e.features.thumb)) for e in probes]
    reps = [queries[i % len(queries)] for i in range(profile.scan_reps)]
    ours_ms, cosine_ms, faiss_ms, faiss_both_ms = [], [], [], []
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
        ours_ms.append((t1 - t) * 1000)
        cosine_ms.append((t2 - t1) * 1000)
        faiss_ms.append((t3 - t2) * 1000)
        faiss_both_ms.append((t4 - t3) * 1000)
        ids = index.ids
        same += {i for i, _ in top} == {ids[j] for j in found[0]}
    p50 = {
        name: metrics.percentile(v, 50)
        for name, v in {
            "scan": ours_ms,
            "cosine": cosine_ms,
            "faiss": faiss_ms,
            "faiss_same_work": faiss_both_ms,
        }.items()
    }
    out = {
        "n": len(index),
        "real": real,
        "synthetic": len(index) - real,
        "load_s": load_s,
        "vectors": {name: list(m.shape) for name, m in index.matrices.items()},
        "scan_p50_ms": p50["scan"],
        "faiss_same_work_p50_ms": p50["faiss_same_work"],
        "ratio": p50["faiss_same_work"] / p50["scan"],
        "cosine_top50_p50_ms": p50["cosine"],
        "faiss_top50_p50_ms": p50["faiss"],
        "cosine_ratio": p50["faiss"] / p50["cosine"],
        "same_top50": same / len(reps),
        "threads": {"faiss": faiss.omp_get_max_threads(), "cores": os.cpu_count()},
    }
    del flat, flat_gist, index
    return out


def large_ingest(profile: Profile, stack: Any, config: models.ModelConfig) -> dict[str, Any]:
    """Ingest of >= 12 MP JPEGs through the real Ingestor (what the ingest handler calls per S3 record), next to the
    model alone on the same images; then each ingest stage timed apart on the same bytes: the image pipeline
    (pictrace.pipeline.prepare) with its stage timer, the model's share of its "embed" stage timed by TimedEmbedder
    (the rest of that stage is the rerank features)."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.layout import Entry
    from pictrace.ingest import Ingestor, handle_s3_notification
    from pictrace.pipeline import Timer, prepare
    from pictrace.settings import Settings
    from pictrace.storage import Store

    files = images_in(SAMPLES / "large")[: profile.large_images]
    if not files:
        return {"error": f"no large JPEGs in {SAMPLES / 'large'} (make samples)"}
    bucket = f"pictrace-bench-large-{config.slug}"
    s3 = stack.client("s3")
    s3.create_bucket(Bucket=bucket)
    settings = Settings.from_env(bucket=bucket, model_dir=str(config.model_dir), index_prefix="index/")
    embedder = OnnxEmbedder(config.model_dir)
    store = Store(bucket)
    ingestor = Ingestor(settings, store=store, embedder=embedder)
    template = json.loads((ROOT / "events/s3_put.json").read_text())
    sizes = []
    ingest_ms = []
    for path in files:
        key = f"images/{path.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        record = json.loads(json.dumps(template["Records"][0]))
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        t = time.perf_counter()
        outcomes = handle_s3_notification({"Records": [record]}, ingestor)
        ingest_ms.append((time.perf_counter() - t) * 1000)
        if not outcomes or outcomes[0].action not in ("created", "added", "unchanged"):
            raise RuntimeError(f"ingest of {key} did not index it: {outcomes}")
    names = ("s3_get", "sha256", "decode", "embed", "features", "write")
    stages: dict[str, list[float]] = {k: [] for k in names}
    timed = TimedEmbedder(embedder)
    for path in files:
        key = f"images/{path.name}"
        t = time.perf_counter()
        body = store.get(key).body
        stages["s3_get"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        digest = hashlib.sha256(body).hexdigest()
        stages["sha256"].append((time.perf_counter() - t) * 1000)
        timer = Timer()
        timed.ms = 0.0
        prepared = prepare(
            body, lambda: timed, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels, timer=timer
        )
        stages["decode"].append(timer.timings["decode"])  # decoding and the border trim
        stages["embed"].append(timed.ms)  # the model alone
        stages["features"].append(max(0.0, timer.timings["embed"] - timed.ms))  # the rest of the pipeline's "embed"
        image = prepared.image
        sizes.append({"file": path.name, "mp": image.width * image.height / 1e6, "bytes": len(body)})
        t = time.perf_counter()
        entry = Entry(digest, (key,), prepared.embedding, prepared.features, {"bench": True})
        store.put(f"bench-probe/{digest}.npz", entry.to_bytes())  # outside the index prefix: not an entry
        stages["write"].append((time.perf_counter() - t) * 1000)
    ingest_s = sum(ingest_ms) / 1000
    model_s = sum(stages["embed"]) / 1000
    return {
        "images": sizes,
        "ingest_ms": ingest_ms,
        "ingest_per_s": len(files) / ingest_s,
        "model_per_s": len(files) / model_s,
        "ratio": (len(files) / ingest_s) / (len(files) / model_s),
        "stages_mean_ms": {k: statistics.mean(v) for k, v in stages.items()},
        "ingest_mean_ms": statistics.mean(ingest_ms),
    }


class TimedEmbedder:
    """An embedder (pictrace.embedding.Embedder) that adds the milliseconds of its inner embedder's calls to ms."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.weights: str = inner.weights
        self.backend: str = inner.backend
        self.dim: int = inner.dim
        self.ms = 0.0

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The inner embedder's rows, timed."""
        t = time.perf_counter()
        out: np.ndarray = self.inner.embed(images)
        self.ms += (time.perf_counter() - t) * 1000
        return out


def machine() -> dict[str, Any]:
    """What this ran on."""
    import psutil

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in (
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "faiss-cpu",
        "scikit-image",
        "moto",
        "tensorflow-cpu",
    ):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "layers", "functions", "bench", "infra"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
        changed = sorted({line[3:] for line in dirty if line.strip()})
    except OSError:
        changed = []
    import pictrace

    return {
        "tree": str(ROOT),
        "pictrace_from": str(Path(pictrace.__file__).parent),
        "uncommitted": changed,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "commit": commit,
        "gpu": "none",
    }


# --- the run -----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick profile (make bench-quick, ~3 min)")
    parser.add_argument("--out", default=str(ROOT / "bench"), help="where results.json and the plots go")
    parser.add_argument("--docs", default=str(ROOT / "docs/benchmarks.md"), help="written by full runs")
    parser.add_argument(
        "--from-results", metavar="JSON", help="measure nothing: tables, plots, docs from a results.json"
    )
    args = parser.parse_args(argv)
    if args.from_results:
        return from_results(Path(args.from_results), Path(args.out), Path(args.docs))
    profile = QUICK if args.quick else FULL
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    for name, value in {
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "pictrace-bench",
        "POWERTOOLS_METRICS_NAMESPACE": "PicTraceBench",
        "PICTRACE_MODEL_DIR": str(model_configs()[0].model_dir),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("PICTRACE_REFRESH_SECONDS", None)  # the product's default (2 s), as deployed

    signal.signal(signal.SIGTERM, _terminated)  # run the finally blocks (stop moto's server) on `kill`
    clock = Clock()
    started_load = os.getloadavg()
    results: dict[str, Any] = {"profile": asdict(profile), "machine": machine(), "started": time.time()}
    with tempfile.TemporaryDirectory(prefix="pictrace-bench-") as tmp:
        work = Path(tmp)
        failed = False
        try:
            run(profile, results, clock, work)
        except Exception as exc:  # noqa: BLE001 - report what was measured, then fail
            failed = True
            results.setdefault("errors", {})["run"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            clock.end()
            results["phases_s"] = clock.phases
            results["phases_cpu_s"] = clock.cpu
            results["load"] = load_summary(clock, started_load)
            results["wall_s"] = round(clock.elapsed(), 1)
    # written before anything is rendered: a rendering bug costs a rerun of `--from-results`, not the measurements
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    attach_fusion(results)
    results["goals"] = report.goals(results)
    text = report.tables(results)
    print()
    print(text)
    plots = report.plots(results, out_dir)
    print(f"\nwrote {out_dir / 'results.json'}" + "".join(f", {p}" for p in plots))
    if profile.name == "full" and not failed:
        Path(args.docs).write_text(report.markdown(results, text))
        print(f"wrote {args.docs}")
    print(f"bench ({profile.name}) took {results['wall_s']:.0f} s")
    return 1 if failed else 0


def from_results(path: Path, out_dir: Path, docs: Path) -> int:
    """Re-render a run's tables, plots and (full runs) docs page from its results.json."""
    results = json.loads(path.read_text())
    attach_fusion(results)
    results["goals"] = report.goals(results)
    text = report.tables(results)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = report.plots(results, out_dir)
    print("wrote " + ", ".join(plots))
    if results["profile"]["name"] == "full" and not results.get("errors"):
        docs.write_text(report.markdown(results, text))
        print(f"wrote {docs}")
    return 0


def attach_fusion(results: dict[str, Any]) -> None:
    """The latest `make fit-fusion` report (bench/fusion.json), shown with the tables."""
    path = ROOT / "bench" / "fusion.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if "models" in data:
            results["fusion"] = data


def load_summary(clock: Clock, started_load: tuple[float, float, float]) -> dict[str, Any]:
    """How much CPU other processes on this machine took while the bench ran (they share its two cores)."""
    ours = machine = 0.0
    for cpu in clock.cpu.values():
        machine += cpu.get("machine", 0.0)
        ours += sum(v for k, v in cpu.items() if k != "machine")
    others = max(0.0, machine - ours)
    wall = sum(clock.phases.values())
    cores = os.cpu_count() or 1
    return {
        "others_core_s": round(others, 1),
        "others_share": others / (wall * cores) if wall else 0.0,
        "ours_core_s": round(ours, 1),
        "loadavg_start": started_load,
        "loadavg_end": os.getloadavg(),
    }


def guarded(results: dict[str, Any], key: str, fn: Callable[..., Any], *args: Any) -> None:
    """results[key] = fn(*args); a failure is recorded under results["errors"] and the run goes on."""
    try:
        results[key] = fn(*args)
    except Exception as exc:  # noqa: BLE001 - one probe failing must not cost the other measurements
        results.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def held_out_names(originals: list[Path], share: float) -> set[str]:
    """The originals kept out of the index (their queries are the negatives): every k-th by name, k = 1/share, so
    every source (gnome, mate, skimage) gives some."""
    if share <= 0:
        return set()
    step = max(2, round(1 / share))
    return {p.name for i, p in enumerate(originals) if i % step == step - 1}


def run(profile: Profile, results: dict[str, Any], clock: Clock, work: Path) -> None:
    """Every phase; fills results."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.search import SearchService
    from pictrace.settings import Settings
    from pictrace.storage import s3_client

    from bench.capacity import capacity
    from bench.stack import entry_id, start_stack, upload_and_index

    configs = model_configs()
    default = configs[0]
    clock.phase(f"models: {', '.join(c.label for c in configs)} (build/models; built once, then reused)")
    results["models"] = {}
    for config in configs:
        built = models.build(config)
        results["models"][config.label] = {"config": {**asdict(config), "slug": config.slug}, "build": built}
        print(f"    {config.label}: {built}", flush=True)

    clock.phase("data: originals (some held out), distractors (same-domain photos first)")
    originals = images_in(SAMPLES / "photos") + images_in(SAMPLES / "wallpapers")
    if not originals:
        raise SystemExit(f"no sample photos in {SAMPLES}: run `make samples`")
    held_out = held_out_names(originals, profile.held_out_share)
    indexed_originals = [p for p in originals if p.name not in held_out]
    original_bytes = {p.name: p.read_bytes() for p in originals}
    original_ids = {name: entry_id(body) for name, body in original_bytes.items()}
    same_domain = images_in(SAMPLES / "photo-distractors")
    exclude = set(original_ids.values())
    room = max(0, profile.index_size - len(indexed_originals))
    photo_distractors = [p for p in same_domain if entry_id(p.read_bytes()) not in exclude][:room]
    distractors, dstats = pick_distractors(SAMPLES / "distractors", room - len(photo_distractors), exclude)
    files = {f"images/originals/{p.name}": original_bytes[p.name] for p in indexed_originals}
    files.update({f"images/photo-distractors/{p.name}": p.read_bytes() for p in photo_distractors})
    files.update({f"images/distractors/{p.name}": p.read_bytes() for p in distractors})
    key_ids = {key: entry_id(body) for key, body in files.items()}
    results["data"] = {
        "originals": len(originals),
        "originals_by_source": _count_prefixes([p.name for p in originals]),
        "originals_requirement_met": len(originals) >= 50,
        "held_out": sorted(held_out),
        "indexed_originals": len(indexed_originals),
        "photo_distractors": len(photo_distractors),
        "photo_distractors_by_source": _count_prefixes([p.name for p in photo_distractors]),
        "distractors": dstats,
        "index_images": len(files),
        "index_entries": len(set(key_ids.values())),
    }
    print(
        f"    {len(originals)} originals ({len(held_out)} held out), {len(photo_distractors)} same-domain and "
        f"{len(distractors)} opencv-doc distractors",
        flush=True,
    )

    clock.phase("local stack: moto's S3 + SQS server in its own process")
    stack = start_stack()
    s3_client.cache_clear()
    try:
        clock.phase(
            f"ingest {len(files)} images for {default.label}: S3 put -> SQS -> the real ingest handler, 2 workers"
        )
        results["ingest_index"] = upload_and_index(stack, files, workers=2)
        print(f"    {results['ingest_index']['images_per_s']:.1f} images/s end to end", flush=True)

        side = configs[1:]
        clock.phase(f"index the same images for {', '.join(c.label for c in side)} (one decode each, 2 processes)")
        results["side_index"] = index_side_models(side, sorted(files), work)

        settings = Settings.from_env(model_dir=str(default.model_dir))
        embedder = OnnxEmbedder(default.model_dir)
        service = SearchService(settings, embedder=embedder)
        service.backend.refresh(force=True)
        indexed = set(service.index_store.entry_ids())
        missing = sorted(p.name for p in indexed_originals if original_ids[p.name] not in indexed)
        results["data"]["indexed"] = len(indexed)
        results["data"]["originals_not_indexed"] = missing
        usable = [p for p in originals if p.name not in missing]
        if profile.query_originals is not None:  # as many held-out originals in proportion, spread over the names
            pos = [p for p in usable if p.name not in held_out]
            neg = [p for p in usable if p.name in held_out]
            n_neg = min(len(neg), round(profile.query_originals * profile.held_out_share))
            n_pos = min(len(pos), profile.query_originals - n_neg)
            usable = sorted(
                pos[:: max(1, len(pos) // max(1, n_pos))][:n_pos] + neg[:: max(1, len(neg) // max(1, n_neg))][:n_neg]
            )

        n_neg = sum(1 for p in usable if p.name in held_out)
        clock.phase(f"make queries: {len(usable)} originals ({n_neg} held out: negatives) x {len(VARIANTS)} variants")
        cases = make_queries(usable, original_ids, work / "queries", held_out)
        results["queries"] = {
            "count": len(cases),
            "originals": len(usable),
            "positive": sum(c.positive for c in cases),
            "negative": sum(not c.positive for c in cases),
            "variants": [v.name for v in VARIANTS],
            "mean_bytes": statistics.mean(c.bytes for c in cases),
        }

        signals: dict[str, list[dict[str, Any]]] = {}
        for config in configs:
            clock.phase(f"quality, {config.label}: {len(cases)} queries through SearchService (two processes)")
            records = parallel_searches(cases, work, env=model_env(config))
            signals[config.label] = records
            summary = quality.summarise(records, FAMILIES, [v.name for v in VARIANTS])
            results["models"][config.label]["quality"] = summary
            worst = min(summary["families"].items(), key=lambda kv: kv[1]["recall@1"])
            print(
                f"    R@1 {summary['overall']['recall@1']:.3f} (lowest {worst[0]} {worst[1]['recall@1']:.3f}), "
                f"µAP {summary['micro_ap']:.3f}",
                flush=True,
            )
        results["quality"] = results["models"][default.label]["quality"]
        results["quality_records"] = {
            label: [{k: v for k, v in r.items() if k != "hits"} for r in records] for label, records in signals.items()
        }
        write_signals(signals, profile, results)
        results["gist"] = gist_verdict(signals[default.label], settings.verify, default.weights)

        clock.phase("embedding speed per model: the same decoded originals, one at a time, 2 threads")
        guarded(results, "embed_speed", embed_speed, configs, originals[: profile.embed_images])

        loop = asyncio.new_event_loop()
        positives = [c for c in cases if c.positive]
        latency_cases = stratified(positives, profile.latency_per_variant, salt=1)[:: profile.latency_every]
        clock.phase(f"latency: {len(latency_cases)} queries, N = {len(indexed)}, cold feature cache")
        cold, _ = latency_pass(service, latency_cases, loop, warm=False)
        n = len(indexed)
        results["latency"] = {f"N={n} cold": latency_summary(cold)}

        probes = [service.index_store.get_entry(i)[0] for i in sorted(original_ids.values())[:5] if i in indexed]
        template = probes[0]
        results["latency_keys"] = {"cold": f"N={n} cold"}
        padded_latencies(profile, configs, latency_cases, loop, results, clock, n)
        loop.close()

        if profile.seed_asis:
            clock.phase("seed's method: as-is latency (fetch, decode, SSIM + ORB for every image) and precomputed")
            guarded(results, "seed", seed_phase, profile, service.store, key_ids, positives, work, clock)
            if "seed" in results:
                sample = {(r["variant"], r["original"]) for r in results["seed"]["records"]}
                same = [r for r in results["quality_records"][default.label] if (r["variant"], r["original"]) in sample]
                results["seed"]["pictrace_on_sample"] = metrics.summarise(
                    [r["rank"] for r in same], [r["ap"] for r in same]
                )

        clock.phase(f"scan vs faiss IndexFlatIP at N = {profile.faiss_n}")
        guarded(results, "scan", scan_vs_faiss, profile, service.store, settings, template, probes)

        clock.phase(f"index memory at N = {profile.scan_n} (fresh process)")
        guarded(results, "memory", child_json, ["bench.memory", str(profile.scan_n)])

        clock.phase(f"cold start of the search handler x{profile.coldstarts} (fresh processes)")
        guarded(results, "coldstart", cold_starts, profile, Path(latency_cases[0].path))

        clock.phase("compaction (what the scheduled compact Lambda runs), then the cold starts again")
        guarded(results, "coldstart_compacted", compacted_cold_starts, profile, settings, Path(latency_cases[0].path))

        for config in configs[:3]:
            clock.phase(f"ingest of {profile.large_images} large JPEGs vs the model alone, {config.label}")
            guarded(results, "ingest_large", large_ingest, profile, stack, config)
            if "ingest_large" in results:
                results["models"][config.label]["ingest_large"] = results["ingest_large"]
                if not config.default:
                    results.pop("ingest_large")
        if default.label in results["models"] and "ingest_large" in results["models"][default.label]:
            results["ingest_large"] = results["models"][default.label]["ingest_large"]
    finally:
        stack.stop()

    ns = " and ".join(f"{n:,}" for n in profile.capacity_n)
    clock.phase(f"capacity: segmented index load and scan at N = {ns}, synthetic vectors (fresh processes)")
    dim = int(template.embedding.shape[0])
    guarded(results, "capacity", capacity, list(profile.capacity_n), work, dim)
    failures = results.get("capacity", {}).get("failures")
    if failures:
        results.setdefault("errors", {})["capacity"] = "; ".join(
            f"N = {f['n']:,} {f['dtype']}: {f['error']}" for f in failures
        )

    keras = next(c for c in configs if c.weights.startswith("random:"))
    if not profile.tf_images:
        return
    clock.phase(f"Keras vs ONNX Runtime for {keras.label} on {profile.tf_images} originals (fresh process)")
    guarded(
        results,
        "backends",
        child_json,
        ["bench.tfparity", str(keras.model_dir), *[str(p) for p in originals[: profile.tf_images]]],
    )


def padded_latencies(
    profile: Profile,
    configs: list[models.ModelConfig],
    latency_cases: list[QueryCase],
    loop: asyncio.AbstractEventLoop,
    results: dict[str, Any],
    clock: Clock,
    n: int,
) -> None:
    """The latency queries at N = scan_n (n real entries + synthetic rows) for each model (padded_latency): the
    default model's figures join results["latency"], every model's go to its own results."""
    for config in configs:
        side_cases = latency_cases if config.default else latency_cases[:: profile.side_latency_every]
        clock.phase(
            f"latency, {config.label}: {len(side_cases)} queries, N = {profile.scan_n} ({n} real + synthetic), "
            + ("cold then warm" if config.default else "cold")
        )
        guarded(results, "latency_padded", padded_latency, profile, config, side_cases, loop)
        padded_results = results.pop("latency_padded", None)
        if not padded_results:
            continue
        results["models"][config.label]["latency"] = padded_results["latency"]
        if config.default:
            for name, summary in padded_results["latency"].items():
                results["latency"][name] = summary
            results["latency_keys"].update(padded_results["keys"])
            results["latency_synthetic_in_shortlists"] = padded_results["synthetic_in_shortlists"]


def model_configs() -> list[models.ModelConfig]:
    """The run's models, the default first (its preprocessing: the one `make model` uses)."""
    from pictrace.embedding import SSCD_PREPROCESS

    return models.configs(SSCD_PREPROCESS)


def model_env(config: models.ModelConfig) -> dict[str, str]:
    """The environment a process searching with this model gets: its artifact and its index prefix."""
    return {"PICTRACE_MODEL_DIR": str(config.model_dir), "PICTRACE_INDEX_PREFIX": config.index_prefix}


def index_side_models(configs: list[models.ModelConfig], keys: list[str], work: Path, workers: int = 2) -> dict:
    """The side models' indexes of the same images (bench.worker index), `workers` processes over the keys."""
    started = time.perf_counter()
    spec = work / "side-models.json"
    spec.write_text(json.dumps([[str(c.model_dir), c.index_prefix] for c in configs]))
    procs = []
    for i in range(workers):
        part = work / f"side-keys-{i}.json"
        part.write_text(json.dumps(keys[i::workers]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "index", str(part), str(spec)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    written = 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a side-model index worker failed with exit code {proc.returncode}")
        written += json.loads(out.strip().splitlines()[-1])["written"]
    return {"models": [c.label for c in configs], "entries_written": written, "seconds": time.perf_counter() - started}


def write_signals(signals: dict[str, list[dict[str, Any]]], profile: Profile, results: dict[str, Any]) -> Path:
    """Every query's reranked candidates per model (what `make fit-fusion` fits on): build/bench/signals-*.json."""
    out = SIGNALS_DIR / f"signals-{profile.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "profile": profile.name,
        "commit": results["machine"]["commit"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fields": list(quality.HIT_FIELDS),
        "verify": None,
        "models": {label: records for label, records in signals.items()},
        "configs": {label: m["config"] for label, m in results["models"].items()},
    }
    from pictrace.settings import Settings

    payload["verify"] = Settings(bucket="bench").verify
    out.write_text(json.dumps(payload, default=_json_default))
    results["signals_file"] = str(out.relative_to(ROOT))
    return out


def gist_verdict(records: list[dict[str, Any]], verify: int, weights_name: str) -> dict[str, Any]:
    """Does gist still add recall? Its shortlist half (product shortlist vs cosine alone, same size), and its
    fusion weight (the model's weights as fitted vs the same with gist 0, the rerank replayed on the recorded
    signals)."""
    from pictrace.verdict import fusion_for

    fitted = fusion_for(weights_name)
    without = models_weights(fitted, gist=0.0)
    out: dict[str, Any] = {"fitted": asdict(fitted), "gist0": asdict(without)}
    for name, w in (("fitted", fitted), ("gist0", without)):
        recall, micro = quality.recall_and_micro_ap(quality.replayed(records, w, verify))
        out[f"{name}_recall@1"] = recall
        out[f"{name}_micro_ap"] = micro
    return out


def models_weights(w: Any, **changes: float) -> Any:
    """A copy of fusion weights with some changed."""
    from dataclasses import replace

    return replace(w, **changes)


def embed_speed(configs: list[models.ModelConfig], paths: list[Path]) -> dict[str, Any]:
    """ms per image of each model (ONNX Runtime, 2 threads, one image at a time, after one warm-up), on the same
    decoded, border-trimmed originals; and the preprocessing alone."""
    from pictrace.embedding import PREPROCESS, OnnxEmbedder, load_model_info
    from pictrace.images import decode_image
    from pictrace.rerank import trim_border

    images = [trim_border(decode_image(p.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).bgr) for p in paths]
    out: dict[str, Any] = {"images": len(images)}
    for config in configs:
        embedder = OnnxEmbedder(config.model_dir)
        embedder.embed(images[:1])
        times = []
        for image in images:
            t = time.perf_counter()
            embedder.embed([image])
            times.append((time.perf_counter() - t) * 1000)
        preprocess = PREPROCESS[load_model_info(config.model_dir)["preprocess"]]
        pre = []
        for image in images:
            t = time.perf_counter()
            preprocess(image)
            pre.append((time.perf_counter() - t) * 1000)
        out[config.label] = {
            "ms_p50": metrics.percentile(times, 50),
            "ms_mean": statistics.mean(times),
            "preprocess_ms_p50": metrics.percentile(pre, 50),
            "dim": embedder.dim,
        }
        del embedder
    return out


def padded_latency(profile: Profile, config: models.ModelConfig, cases: list[QueryCase], loop: Any) -> dict:
    """The latency queries against the model's real entries plus synthetic rows up to N = scan_n: cold, then (the
    default model) warm."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.backend import MemoryBackend
    from pictrace.index.store import IndexStore
    from pictrace.search import SearchService
    from pictrace.settings import Settings
    from pictrace.storage import Store

    from bench.stack import PaddedIndex

    settings = Settings.from_env(model_dir=str(config.model_dir), index_prefix=config.index_prefix)
    store = Store(settings.bucket)
    index_store = IndexStore(store, settings.index_prefix)
    entries = sorted(index_store.entry_ids())
    real = len(entries)
    template = index_store.get_entry(entries[0])[0]
    index = PaddedIndex(
        store,
        settings.index_prefix,
        max(0, profile.scan_n - real),
        template,
        settings.refresh_seconds,
        settings.fetch_concurrency,
    )
    padded = SearchService(settings, store, OnnxEmbedder(config.model_dir), backend=MemoryBackend(index))
    index.refresh(force=True)
    index.synthetic_per_call.clear()
    cold, warm = latency_pass(padded, cases, loop, warm=config.default)
    big = len(index)
    counts = index.synthetic_per_call
    latency = {f"N={big} cold": latency_summary(cold)}
    if warm:
        latency[f"N={big} warm"] = latency_summary(warm)
    return {
        "latency": latency,
        "keys": {"large": f"N={big} cold", "large_warm": f"N={big} warm"},
        "synthetic_in_shortlists": {
            "searches": len(counts),
            "with_any": sum(1 for c in counts if c),
            "total": sum(counts),
        },
    }


def parallel_searches(
    cases: list[QueryCase], work: Path, workers: int = 2, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The quality queries split over `workers` processes (bench.worker search, with env added to this
    environment: the model and its index), records in case order."""
    procs = []
    child_env = {**os.environ, **(env or {})}
    for i in range(workers):
        part = work / f"cases-{i}.json"
        part.write_text(json.dumps([asdict(c) for c in cases[i::workers]]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "search", str(part), str(work / f"records-{i}.json")],
                cwd=ROOT,
                env=child_env,
            )
        )
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"a search worker failed with exit code {proc.returncode}")
    parts = [json.loads((work / f"records-{i}.json").read_text())["records"] for i in range(workers)]
    records: list[dict[str, Any]] = []
    for j in range(max(len(p) for p in parts)):
        records.extend(p[j] for p in parts if j < len(p))
    return records


def latency_pass(
    service: Any, cases: Sequence[QueryCase], loop: asyncio.AbstractEventLoop, warm: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each query, as a client that names no top_k or shortlist sends it, with the feature cache emptied (cold),
    then, with warm, again right away (its shortlist's entries cached, as in a container that has served similar
    queries)."""
    cold_records, warm_records = [], []
    for case in cases:
        cold_records.extend(run_searches(service, [case], loop, cold=True, deployed=True))
        if warm:
            warm_records.extend(run_searches(service, [case], loop, deployed=True))
    return cold_records, warm_records


def _count_prefixes(names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n.split("-", 1)[0]] = out.get(n.split("-", 1)[0], 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
