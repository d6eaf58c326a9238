"""Capacity of the segmented index on synthetic vectors: segment bytes, cold load (parse and build), scan latency,
resident memory, and float16 against float32 top-k agreement.

    .venv/bin/python -m bench.capacity --n 10000 100000 [--dim 2048] [--out build/capacity.json]

The store is in memory (a dict), so cold load here is the CPU side only (parse, fold, build the matrix); the S3 side
is bytes / throughput, modelled in docs/scaling.md from the segment bytes this prints.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from pictrace.errors import NotFound
from pictrace.index import EmbeddingIndex, IndexStore
from pictrace.segments import Segment, SegmentedView, SegmentStore
from pictrace.storage import Store, StoredObject

SEGMENT_ROWS = 20_000


class MemoryStore:
    """The Store operations the segmented index uses, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get(self, key: str) -> StoredObject:
        if key not in self.objects:
            raise NotFound(key)
        return StoredObject(self.objects[key], str(hash(self.objects[key])))

    def put(self, key: str, body: bytes, **_: Any) -> bool:
        self.objects[key] = body
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        for key, body in sorted(self.objects.items()):
            if key.startswith(prefix):
                yield key, str(hash(body)), len(body)


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, dim: int, dtype: str, rng: np.random.Generator) -> dict[str, Any]:
    store = MemoryStore()
    index_store = IndexStore(cast(Store, store), "index/")
    segments = SegmentStore(index_store)
    listed, total_bytes = [], 0
    for start in range(0, n, SEGMENT_ROWS):
        rows = min(SEGMENT_ROWS, n - start)
        m = rng.standard_normal((rows, dim)).astype(np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        ids = [f"{start + r:064x}" for r in range(rows)]
        body = Segment(
            ids, [(f"images/{(start + r) % 100}/{start + r}.jpg",) for r in range(rows)], {"embedding": m}
        ).to_bytes(dtype)
        key = segments.segment_key() + f"-{start}"
        store.put(key, body)
        listed.append({"key": key, "count": rows})
        total_bytes += len(body)
    store.put(segments.manifest_key, json.dumps({"segments": listed}).encode())
    before = rss_mb()
    started = time.perf_counter()
    index = EmbeddingIndex(index_store, refresh_seconds=0, segments=SegmentedView(segments))
    index.refresh(force=True)
    load = time.perf_counter() - started
    queries = index.matrix[rng.integers(0, n, 20)] + 0.01 * rng.standard_normal((20, dim)).astype(np.float32)
    scans = []
    for q in queries:
        t = time.perf_counter()
        index.shortlist(q / np.linalg.norm(q), 50)
        scans.append(time.perf_counter() - t)
    t = time.perf_counter()
    index.shortlist(queries[0] / np.linalg.norm(queries[0]), 50, key_prefix="images/7/")
    masked = time.perf_counter() - t
    return {
        "n": n,
        "dim": dim,
        "dtype": dtype,
        "segments": len(listed),
        "segment_mb": round(total_bytes / 1e6, 1),
        "cold_load_cpu_s": round(load, 2),
        "scan_p50_ms": round(1000 * float(np.median(scans)), 1),
        "scan_prefix_ms": round(1000 * masked, 1),
        "matrix_mb": round(index.matrix.nbytes / 1e6, 1),
        "peak_rss_mb": round(rss_mb(), 0),
        "rss_growth_mb": round(rss_mb() - before, 0),
    }


def agreement(n: int, dim: int, rng: np.random.Generator, k: int = 50, queries: int = 50) -> float:
    """Mean overlap of the top-k by float32 and by float16-stored vectors (near-duplicate queries)."""
    m = rng.standard_normal((n, dim)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    half = m.astype(np.float16).astype(np.float32)
    overlaps = []
    for row in rng.integers(0, n, queries):
        q = m[row] + 0.05 * rng.standard_normal(dim).astype(np.float32)
        q /= np.linalg.norm(q)
        a = set(np.argpartition(-(m @ q), k)[:k].tolist())
        b = set(np.argpartition(-(half @ q), k)[:k].tolist())
        overlaps.append(len(a & b) / k)
    return float(np.mean(overlaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("build/capacity.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = [measure(n, args.dim, dtype, rng) for n in args.n for dtype in ("float32", "float16")]
    agree = {
        "n": min(args.n[-1], 100_000),
        "k": 50,
        "overlap": round(agreement(min(args.n[-1], 100_000), args.dim, rng), 4),
    }
    for r in results:
        print(json.dumps(r))
    print(json.dumps({"float16_vs_float32_topk_agreement": agree}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results, "agreement": agree}, indent=1))


if __name__ == "__main__":
    main()
