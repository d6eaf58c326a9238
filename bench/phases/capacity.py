"""Phase "capacity": the segmented index's cold load and scan on synthetic vectors at N images, float32 against
float16, each (N, dtype) in a fresh process (`python -m bench.phases.capacity ROOT QUERIES BUDGET`) with its files
dropped from the page cache and its address space capped at the memory available (`make capacity` runs it alone)."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np

from bench import common
from bench.common import ROOT
from bench.filestore import FileStore

SEGMENT_ROWS = 20_000
GIST_DIM = 256
TURNS = 8  # the query's gists: its 8 D4 turns (pictrace.rerank.gist_variants)
DTYPES = ("float32", "float16")
K = 50  # EmbeddingIndex.candidates(k=K): up to 2K ids
QUERY_NOISE = 0.05  # per dimension
INDEX_PREFIX = "index/"  # the layout under it: pictrace.index.layout
MASK_PREFIX = "images/7/"
SEED = 20_240_607
RESERVE = 1 << 30  # bytes of the machine's available memory a child must leave free


def image_id(k: int) -> str:
    """Synthetic image k's id: 64 hex digits like real ones, sorted like k."""
    return f"{k:064x}"


def unit_rows(m: np.ndarray, centre: bool = False) -> np.ndarray:
    """Rows scaled to unit length (zero-mean first with centre), in place."""
    if centre:
        m -= m.mean(axis=1, keepdims=True)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def through_float16(v: np.ndarray) -> np.ndarray:
    """v as float16 would store it, back in float32."""
    return np.asarray(v, np.float32).astype(np.float16).astype(np.float32)


def generate(folder: Path, n: int, dim: int, queries: int) -> dict[str, Any]:
    """N synthetic rows as segments + manifest per dtype (folder/<dtype>/index/...) and the queries (queries.npz)."""
    from pictrace.index.layout import Layout, now_iso
    from pictrace.index.segments import MANIFEST_VERSION, Segment, manifest_entry

    started = time.perf_counter()
    layout = Layout(INDEX_PREFIX)
    stores = {dtype: FileStore(folder / dtype) for dtype in DTYPES}
    listed: dict[str, list[dict[str, Any]]] = {dtype: [] for dtype in DTYPES}
    rng = np.random.default_rng([SEED, n, 1])
    query_rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    q_embedding = np.zeros((len(query_rows), dim), np.float32)
    q_gists = np.zeros((len(query_rows), TURNS, GIST_DIM), np.float32)
    for segment, start in enumerate(range(0, n, SEGMENT_ROWS)):
        rows = min(SEGMENT_ROWS, n - start)
        seeded = np.random.default_rng([SEED, segment])  # a segment's rows: a function of its number and size only
        embedding = unit_rows(seeded.standard_normal((rows, dim), dtype=np.float32))
        gists = unit_rows(seeded.standard_normal((rows, GIST_DIM), dtype=np.float32), centre=True)
        for j, row in enumerate(query_rows):
            if start <= row < start + rows:
                q_embedding[j] = through_float16(embedding[row - start])
                q_gists[j, 0] = through_float16(gists[row - start])
        ks = range(start, start + rows)
        keys: list[tuple[str, ...]] = [(f"images/{k % 100}/{k}.jpg",) for k in ks]  # 100 folders: the masked scan
        seg = Segment([image_id(k) for k in ks], keys, {"embedding": embedding, "gist": gists})
        key = layout.new_segment_key()
        for dtype in DTYPES:
            body = seg.to_bytes(dtype)
            stores[dtype].put(key, body, if_none_match=True)
            listed[dtype].append(manifest_entry(key, seg, body))
            del body
        del seg, embedding, gists
    for dtype in DTYPES:
        manifest = {"version": MANIFEST_VERSION, "generation": 1, "updated": now_iso(), "dtype": dtype}
        body = json.dumps({**manifest, "segments": listed[dtype], "retired": []}, indent=1).encode()
        stores[dtype].put(layout.manifest_key, body, if_none_match=True)
    # each query a noisy copy of a stored row: its first gist turn the row's gist, noisy; the other seven unrelated
    q_embedding = unit_rows(q_embedding + QUERY_NOISE * rng.standard_normal(q_embedding.shape, dtype=np.float32))
    q_gists[:, 0] += QUERY_NOISE * rng.standard_normal(q_gists[:, 0].shape, dtype=np.float32)
    q_gists[:, 1:] = rng.standard_normal(q_gists[:, 1:].shape, dtype=np.float32)
    q_gists = unit_rows(q_gists.reshape(-1, GIST_DIM), centre=True).reshape(q_gists.shape)
    np.savez(folder / "queries.npz", embedding=q_embedding, gists=q_gists, rows=query_rows)
    return {
        "generate_s": round(time.perf_counter() - started, 1),
        "segments": len(listed["float32"]),
        "bytes": {dtype: sum(int(e["bytes"]) for e in listed[dtype]) for dtype in DTYPES},
        "query_ids": [image_id(int(r)) for r in query_rows],
    }


def measure(root: Path, queries_path: Path) -> dict[str, Any]:
    """The child: load the index under root cold (SegmentedView + EmbeddingIndex.refresh) and scan it."""
    from pictrace import storage
    from pictrace.index import memory, rows, segments
    from pictrace.index.store import IndexStore

    modules = (memory, rows, segments, storage)
    digest = hashlib.sha256(b"".join(Path(str(m.__file__)).read_bytes() for m in modules)).hexdigest()[:12]
    with np.load(queries_path) as q:
        embeddings, gists = q["embedding"], q["gists"]
    store = FileStore(root)
    gc.collect()
    rss_before, file_before = common.rss(), common.resident_file()
    view = segments.SegmentedView(segments.SegmentStore(IndexStore(cast(storage.Store, store), INDEX_PREFIX)))
    index = memory.EmbeddingIndex(view, refresh_seconds=0)
    started = time.perf_counter()
    index.refresh(force=True)
    load_s = time.perf_counter() - started
    rss_loaded = common.rss()
    gc.collect()
    rss_after, file_after = common.rss(), common.resident_file()
    peak_load = common.peak_rss()
    rss_trimmed = rss_after - common.malloc_trim()  # what the C heap held freed but resident (then given back)
    counts = dict(store.counts)
    matrices = {name: int(m.nbytes) for name, m in index.matrices.items()}
    held = {**index.footprint(), **view.footprint()}

    started = time.perf_counter()
    index.candidates(embeddings[0], gists[0], K)  # the first scan of a snapshot also computes its centring
    first_ms = 1000 * (time.perf_counter() - started)
    scans, tops = [], []
    for e, g in zip(embeddings, gists, strict=True):
        started = time.perf_counter()
        found = index.candidates(e, g, K)
        scans.append(1000 * (time.perf_counter() - started))
        tops.append([c.id for c in found])
    started = time.perf_counter()
    masked = index.candidates(embeddings[0], gists[0], K, key_prefix=MASK_PREFIX)
    masked_ms = 1000 * (time.perf_counter() - started)
    gets, requests = int(counts["get"] + counts["get_range"]), {k: int(v) for k, v in counts.items() if k != "read_s"}
    out: dict[str, Any] = dict(n=len(index), pictrace_digest=digest, load_s=round(load_s, 3), gets=gets)
    out |= dict(requests=requests, read_thread_s=round(float(counts["read_s"]), 3), matrices=matrices)
    dtypes = {name: str(m.dtype) for name, m in index.matrices.items()}
    out |= dict(matrix_dtypes=dtypes, matrices_bytes=sum(matrices.values()), held=held, rss_before=rss_before)
    out |= dict(rss_after_load=rss_loaded, rss_after_gc=rss_after, rss_growth=rss_after - rss_before)
    # rss_file_growth: of rss_growth, file-backed pages (code first run); ru_maxrss: see peak_rss
    out |= dict(rss_file_growth=file_after - file_before, rss_after_malloc_trim=rss_trimmed, peak_rss_load=peak_load)
    out |= dict(peak_rss=common.peak_rss(), ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    out |= dict(rss_end=common.rss(), first_scan_ms=round(first_ms, 2), scan_ms=[round(s, 2) for s in scans])
    out |= dict(scan_p50_ms=round(float(np.median(scans)), 2), masked_scan_ms=round(masked_ms, 2))
    ok = all(any(k.startswith(MASK_PREFIX) for k in index.keys[c.id]) for c in masked)
    return out | dict(masked_ok=ok, masked_found=len(masked), tops=tops)


def run_child(root: Path, queries_path: Path, uncache: Path | None = None, timeout: float = 3600.0) -> dict[str, Any]:
    """measure() in a fresh process, uncache (default: root) evicted first; killed when memory runs short."""
    dropped = common.drop_from_page_cache(uncache or root)
    budget = max(0, common.available() - RESERVE)
    cmd = [sys.executable, "-m", "bench.phases.capacity", str(root), str(queries_path), str(budget)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        deadline, why = time.monotonic() + timeout, ""
        while proc.poll() is None:
            if common.available() < RESERVE // 2:
                why = f"killed: the machine's available memory fell below {RESERVE // 2 >> 20} MiB"
            elif time.monotonic() > deadline:
                why = f"killed: no result within {timeout:.0f} s"
            if why:
                proc.kill()  # SIGKILL
                proc.wait()
                break
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0 or why:
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        raise RuntimeError(f"{why or f'exit code {proc.returncode}'}; stderr: {tail or '(empty)'}")
    return {**json.loads(stdout.strip().splitlines()[-1]), "budget": budget, "page_cache_dropped": dropped}


def overlap(a: list[str], b: list[str]) -> float:
    """Shared ids over the longer list (1.0 when both are empty)."""
    return len(set(a) & set(b)) / max(len(a), len(b)) if (a or b) else 1.0


class Capacity(TypedDict):  # results.json's "capacity" (build/capacity.json for `make capacity`)
    commit: str
    pictrace_uncommitted: list[str]
    segment_rows: int
    k: int
    query_noise: float
    mask_prefix: str
    machine_memory_bytes: int
    runs: list[dict[str, Any]]  # per N and dtype: measure()'s figures, with n, dim, dtype, segments, segment_bytes
    agreement: list[dict[str, Any]]  # per N: float16 against float32, the same queries
    failures: list[dict[str, Any]]  # per N and dtype that failed: the error


def capacity(
    ns: list[int], work: Path | None = None, dim: int = 512, log: Callable[[str], None] | None = None
) -> Capacity:
    """Every N, both dtypes, on data generated under work (removed after each N); a failure is listed, not raised."""
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    runs: list[dict[str, Any]] = []
    agreement: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
    for n in ns:
        folder = Path(tempfile.mkdtemp(prefix=f"capacity-{n}-", dir=work))
        try:
            say(f"    capacity N = {n:,}: writing segments (float32 and float16) under {folder}")
            data = generate(folder, n, dim, 15 if n <= 100_000 else 7)  # queries: enough for a p50, affordable
            say(f"    capacity N = {n:,}: {data['segments']} segments each, written in {data['generate_s']:.0f} s")
            tops: dict[str, list[list[str]]] = {}
            for dtype in DTYPES:
                try:
                    # the whole data set leaves the page cache: the kernel has nothing to reclaim during the load
                    m = run_child(folder / dtype, folder / "queries.npz", uncache=folder)
                except Exception as exc:  # noqa: BLE001 - one measurement failing must not cost the others
                    failures.append({"n": n, "dtype": dtype, "error": str(exc)})
                    say(f"    capacity N = {n:,} {dtype}: FAILED: {exc}")
                    continue
                tops[dtype], ids = m.pop("tops"), data["query_ids"]
                first = sum(t[:1] == [i] for t, i in zip(tops[dtype], ids, strict=True)) / len(ids)
                made = dict(
                    segments=data["segments"], segment_bytes=data["bytes"][dtype], generate_s=data["generate_s"]
                )
                runs.append(run := {"n": n, "dim": dim, "dtype": dtype, **made, **m, "source_first": first})
                say(
                    f"    capacity N = {n:,} {dtype}: cold load {run['load_s']:.1f} s ({run['gets']} GETs), scan p50 "
                    f"{run['scan_p50_ms']:.0f} ms, RSS +{run['rss_growth'] >> 20:,} MiB for "
                    f"{run['matrices_bytes'] >> 20:,} MiB of matrices, peak {run['peak_rss'] >> 20:,} MiB"
                )
            if len(tops) == len(DTYPES):
                pairs = list(zip(tops["float16"], tops["float32"], strict=True))
                top_k = float(np.mean([overlap(x[:K], y[:K]) for x, y in pairs]))
                same = {"cosine_topk": top_k, "candidates": float(np.mean([overlap(x, y) for x, y in pairs]))}
                same["same_order"] = sum(x == y for x, y in pairs) / len(pairs)
                agreement.append({"n": n, "queries": len(pairs), "k": K, **same})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, Any] = dict(commit=common.git("rev-parse", "--short", "HEAD").strip())
    out |= dict(pictrace_uncommitted=common.uncommitted("layers/pictrace/pictrace"), segment_rows=SEGMENT_ROWS, k=K)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out |= dict(query_noise=QUERY_NOISE, mask_prefix=MASK_PREFIX, machine_memory_bytes=memory, runs=runs)
    return cast(Capacity, out | dict(agreement=agreement, failures=failures))


if __name__ == "__main__":  # one measurement: python -m bench.phases.capacity ROOT QUERIES.npz BUDGET
    if budget := int(sys.argv[3]):  # cap the address space: a MemoryError (with its traceback), not the OOM killer
        resource.setrlimit(resource.RLIMIT_AS, (common.vm_size() + budget, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(json.dumps(measure(Path(sys.argv[1]), Path(sys.argv[2]))))
