"""Capacity of the segmented index on synthetic vectors (issue 7): the load-and-scan path at N images.

    .venv/bin/python -m bench.capacity --n 100000 1000000 [--dim 512] [--work DIR] [--out build/capacity.json]

For each N, segments of SEGMENT_ROWS rows are written to files under a work directory (a temporary directory
unless --work names one; removed at the end) with pictrace.index.segments.Segment(...).to_bytes(dtype), once as
float32 and once as float16 from the same vectors, each next to a manifest.json as the compactor writes it. Every
row holds both matrices the real index holds: "embedding" (512-d unit vectors, SSCD's width; --dim for another
model's) and "gist" (256-d, zero-mean, unit), and one key, images/<k % 100>/<k>.jpg, so a folder mask can be measured.

Each (N, dtype) is then measured in a fresh process (`python -m bench.capacity --child ...`), so its memory figures
are its own: resident memory (RSS) before the load, after it and a gc.collect(), and the process's peak; the bytes
of the index's matrices and what else the index and its view hold (their footprint()); the cold load
(EmbeddingIndex.refresh(force=True) over a SegmentedView, the code the search runs) and the GETs it sent; and the
scan the search runs (EmbeddingIndex.candidates: the top k by centred embedding cosine and the top k by gist
correlation over the query's 8 turns), p50 over a few queries, plus one scan masked to the folder images/7/. The
store is the local file system, not S3: before each process the store's files are written back and dropped from the
page cache (posix_fadvise DONTNEED), so every load reads its segments from the local disk, whatever the runs before
it left cached; the load time is that plus the parse, fold and build. Each result carries a digest of the pictrace
modules it ran (they may be edited between runs).

float16 against float32: the queries are noisy copies of stored rows (the row rounded through float16, so it is
the same query whichever dtype was loaded, plus Gaussian noise of 0.05 per dimension, renormalised), identical
for both processes; the parent compares the ids each returned (the top k by cosine, and the whole candidate list).

Memory guard: the child's address space is capped at what the machine has available when it starts (less a
reserve), so an index that does not fit fails with a MemoryError and its traceback instead of waking the kernel's
OOM killer; the parent also kills a child when the machine's available memory falls below the reserve.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from pictrace.errors import NotFound
from pictrace.storage import StoredObject

ROOT = Path(__file__).resolve().parent.parent
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
CHILD_TIMEOUT_S = 3600.0


def queries_for(n: int) -> int:
    """Queries per measurement: enough for a p50, few enough to keep `make bench` affordable at 1,000,000."""
    return 15 if n <= 100_000 else 7


# --- the store -----------------------------------------------------------------------------------------------------


class FileStore:
    """The pictrace.storage.Store operations the segmented index uses, over files in a directory (key = path).

    Counts what it serves (GETs, ranged GETs, bytes, seconds spent reading summed over threads). ETags are size
    and modification time; conditional writes and deletes honour them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.counts: dict[str, float] = {}
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero the request counters."""
        with self._lock:
            self.counts = {"get": 0, "get_range": 0, "size": 0, "list": 0, "put": 0, "bytes_read": 0, "read_s": 0.0}

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad key {key!r}")
        return self.root / key

    def _count(self, what: str, nbytes: int = 0, seconds: float = 0.0) -> None:
        with self._lock:
            self.counts[what] += 1
            self.counts["bytes_read"] += nbytes
            self.counts["read_s"] += seconds

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'

    def get(self, key: str) -> StoredObject:
        """The object's bytes; NotFound if there is none."""
        started = time.perf_counter()
        try:
            with open(self._path(key), "rb") as f:
                st = os.fstat(f.fileno())
                body = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        self._count("get", len(body), time.perf_counter() - started)
        return StoredObject(body, self._etag(st))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer at its end); NotFound if there is none."""
        started = time.perf_counter()
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                body = f.read(max(0, end - start))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        self._count("get_range", len(body), time.perf_counter() - started)
        return body

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it does not exist."""
        self._count("size")
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Write the object (atomically); with a condition, False when it did not hold (nothing written)."""
        path = self._path(key)
        with self._lock:
            self.counts["put"] += 1
            exists = path.is_file()
            if if_none_match and exists:
                return False
            if if_match is not None and (not exists or self._etag(path.stat()) != if_match):
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(body)
            os.replace(tmp, path)
        return True

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        """Delete the object; with if_match, False when it changed since (nothing deleted)."""
        path = self._path(key)
        with self._lock:
            if not path.is_file():
                return False
            if if_match is not None and self._etag(path.stat()) != if_match:
                return False
            path.unlink()
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        """(key, etag, size) of every object under the prefix, in key order."""
        self._count("list")
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        found: list[tuple[str, str, int]] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    found.append((key, self._etag(st), st.st_size))
        yield from sorted(found)


# --- memory --------------------------------------------------------------------------------------------------------


def rss() -> int:
    """This process's resident set size in bytes."""
    try:
        import psutil
    except ImportError:  # `make capacity` needs only the dev set-up; psutil is a bench requirement
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def resident_file() -> int:
    """This process's resident pages backed by files (RssFile: code of the libraries it has run, mapped files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """This process's peak resident set size so far, in bytes: VmHWM, the high-water mark of its own memory.
    (ru_maxrss starts at the RSS of the parent it was forked from, so a child of a big process reads high.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports it in KiB


def available() -> int:
    """Bytes of memory the machine can give without swapping (MemAvailable)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def drop_from_page_cache(folder: Path) -> bool:
    """Write back and evict the files under folder from the page cache (the next read comes from the disk).
    False where the OS has no posix_fadvise."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def code_state() -> dict[str, Any]:
    """The commit, and the files of the pictrace package with uncommitted changes (what the numbers measured)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30)
        return done.stdout if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "layers/pictrace/pictrace")
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "pictrace_uncommitted": [ln[3:] for ln in changed.splitlines() if ln.strip()],
    }


def malloc_trim() -> int:
    """Give the C heap's free memory back to the OS (glibc's malloc_trim); returns the bytes of RSS released."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return 0
    before = rss()
    trim(0)
    return max(0, before - rss())


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


# --- synthetic data ------------------------------------------------------------------------------------------------


def image_id(k: int) -> str:
    """The id of synthetic image k (64 hex digits, like the SHA-256 ids of real entries; sorted like k)."""
    return f"{k:064x}"


def image_key(k: int) -> str:
    """The one key of synthetic image k: 100 folders."""
    return f"images/{k % 100}/{k}.jpg"


def unit_rows(m: np.ndarray, centre: bool = False) -> np.ndarray:
    """Rows scaled to unit length (zero-mean first with centre), in place."""
    if centre:
        m -= m.mean(axis=1, keepdims=True)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def segment_vectors(segment: int, rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings (rows, dim) and gists (rows, 256) of one segment: a function of its number and size only."""
    rng = np.random.default_rng([SEED, segment])
    embedding = unit_rows(rng.standard_normal((rows, dim), dtype=np.float32))
    gists = unit_rows(rng.standard_normal((rows, GIST_DIM), dtype=np.float32), centre=True)
    return embedding, gists


def through_float16(v: np.ndarray) -> np.ndarray:
    """v as float16 would store it, back in float32 (the same whether v came from float32 or float16 segments)."""
    return np.asarray(v, np.float32).astype(np.float16).astype(np.float32)


def generate(folder: Path, n: int, dim: int, queries: int) -> dict[str, Any]:
    """Write N synthetic rows as segments + manifest, once per dtype (folder/<dtype>/index/...), and the queries
    (folder/queries.npz). Returns per dtype: segments, bytes; and the generation time."""
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
        embedding, gists = segment_vectors(segment, rows, dim)
        for j, row in enumerate(query_rows):
            if start <= row < start + rows:
                q_embedding[j] = through_float16(embedding[row - start])
                q_gists[j, 0] = through_float16(gists[row - start])
        ks = range(start, start + rows)
        seg = Segment([image_id(k) for k in ks], [(image_key(k),) for k in ks], {"embedding": embedding, "gist": gists})
        key = layout.new_segment_key()
        for dtype in DTYPES:
            body = seg.to_bytes(dtype)
            stores[dtype].put(key, body, if_none_match=True)
            listed[dtype].append(manifest_entry(key, seg, body))
            del body
        del seg, embedding, gists
    for dtype in DTYPES:
        manifest = {
            "version": MANIFEST_VERSION,
            "generation": 1,
            "updated": now_iso(),
            "dtype": dtype,
            "segments": listed[dtype],
            "retired": [],
        }
        stores[dtype].put(layout.manifest_key, json.dumps(manifest, indent=1).encode(), if_none_match=True)
    # the queries: each a noisy copy of a stored row; its first gist turn a noisy copy of the row's gist, the
    # other seven turns unrelated (a query matches a stored gist in one of its turns)
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


# --- one measurement (the child process) ---------------------------------------------------------------------------


def measure(root: Path, queries_path: Path) -> dict[str, Any]:
    """Load the index stored under root cold, as the search does, and scan it; see the module docstring."""
    import pictrace.index.memory
    import pictrace.index.rows
    import pictrace.index.segments
    import pictrace.storage
    from pictrace.index.memory import EmbeddingIndex
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    modules = (pictrace.index.memory, pictrace.index.rows, pictrace.index.segments, pictrace.storage)
    digest = hashlib.sha256(b"".join(Path(str(m.__file__)).read_bytes() for m in modules)).hexdigest()[:12]
    with np.load(queries_path) as q:
        embeddings, gists = q["embedding"], q["gists"]
    store = FileStore(root)
    gc.collect()
    rss_before, file_before = rss(), resident_file()
    index_store = IndexStore(cast(Store, store), INDEX_PREFIX)
    view = SegmentedView(SegmentStore(index_store))
    index = EmbeddingIndex(view, refresh_seconds=0)
    started = time.perf_counter()
    index.refresh(force=True)
    load_s = time.perf_counter() - started
    rss_loaded = rss()
    gc.collect()
    rss_after, file_after = rss(), resident_file()
    peak_load = peak_rss()
    rss_trimmed = rss_after - malloc_trim()  # what the C heap held freed but resident (then given back)
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
    return {
        "n": len(index),
        "pictrace_digest": digest,
        "load_s": round(load_s, 3),
        "gets": int(counts["get"] + counts["get_range"]),
        "requests": {k: int(v) for k, v in counts.items() if k != "read_s"},
        "read_thread_s": round(float(counts["read_s"]), 3),
        "matrices": matrices,
        "matrix_dtypes": {name: str(m.dtype) for name, m in index.matrices.items()},
        "matrices_bytes": sum(matrices.values()),
        "held": held,
        "rss_before": rss_before,
        "rss_after_load": rss_loaded,
        "rss_after_gc": rss_after,
        "rss_growth": rss_after - rss_before,
        "rss_file_growth": file_after - file_before,  # of rss_growth: file-backed pages (code first run)
        "rss_after_malloc_trim": rss_trimmed,
        "peak_rss_load": peak_load,
        "peak_rss": peak_rss(),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # see peak_rss
        "rss_end": rss(),
        "first_scan_ms": round(first_ms, 2),
        "scan_ms": [round(s, 2) for s in scans],
        "scan_p50_ms": round(float(np.median(scans)), 2),
        "masked_scan_ms": round(masked_ms, 2),
        "masked_ok": all(any(k.startswith(MASK_PREFIX) for k in index.keys[c.id]) for c in masked),
        "masked_found": len(masked),
        "tops": tops,
    }


def child_main(args: argparse.Namespace) -> int:
    if args.budget:  # cap the address space: a MemoryError (with its traceback) rather than the OOM killer
        limit = _vm_size() + int(args.budget)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    result = measure(Path(args.child), Path(args.queries))
    print(json.dumps(result))
    return 0


# --- the parent ----------------------------------------------------------------------------------------------------


def run_child(
    root: Path, queries_path: Path, uncache: Path | None = None, timeout: float = CHILD_TIMEOUT_S
) -> dict[str, Any]:
    """measure() in a fresh process, the files under uncache (default: root) dropped from the page cache first;
    kills it if the machine runs short of memory. Raises with its stderr tail."""
    dropped = drop_from_page_cache(uncache or root)
    budget = max(0, available() - RESERVE)
    cmd = [sys.executable, "-m", "bench.capacity", "--child", str(root), "--queries", str(queries_path)]
    cmd += ["--budget", str(budget)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        why = ""
        while proc.poll() is None:
            if available() < RESERVE // 2:
                why = f"killed: the machine's available memory fell below {RESERVE // 2 >> 20} MiB"
            elif time.monotonic() > deadline:
                why = f"killed: no result within {timeout:.0f} s"
            if why:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0 or why:
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        raise RuntimeError(f"{why or f'exit code {proc.returncode}'}; stderr: {tail or '(empty)'}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["budget"] = budget
    result["page_cache_dropped"] = dropped
    return result


def overlap(a: list[str], b: list[str]) -> float:
    """Shared ids over the longer list (1.0 when both are empty)."""
    return len(set(a) & set(b)) / max(len(a), len(b)) if (a or b) else 1.0


def capacity(
    ns: list[int], work: Path | None = None, dim: int = 512, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Measure every N (both dtypes, each in a fresh process) on data generated under work (a temporary directory
    in it, removed after each N). A failed measurement is listed under "failures" and the others go on."""
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
            data = generate(folder, n, dim, queries_for(n))
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
                tops[dtype] = m.pop("tops")
                ids = data["query_ids"]
                run = {
                    "n": n,
                    "dim": dim,
                    "dtype": dtype,
                    "segments": data["segments"],
                    "segment_bytes": data["bytes"][dtype],
                    "generate_s": data["generate_s"],
                    **m,
                    "source_first": sum(t[:1] == [i] for t, i in zip(tops[dtype], ids, strict=True)) / len(ids),
                }
                runs.append(run)
                say(
                    f"    capacity N = {n:,} {dtype}: cold load {run['load_s']:.1f} s ({run['gets']} GETs), scan p50 "
                    f"{run['scan_p50_ms']:.0f} ms, RSS +{run['rss_growth'] >> 20:,} MiB for "
                    f"{run['matrices_bytes'] >> 20:,} MiB of matrices, peak {run['peak_rss'] >> 20:,} MiB"
                )
            if len(tops) == len(DTYPES):
                a, b = tops["float16"], tops["float32"]
                agreement.append(
                    {
                        "n": n,
                        "queries": len(a),
                        "k": K,
                        "cosine_topk": float(np.mean([overlap(x[:K], y[:K]) for x, y in zip(a, b, strict=True)])),
                        "candidates": float(np.mean([overlap(x, y) for x, y in zip(a, b, strict=True)])),
                        "same_order": sum(x == y for x, y in zip(a, b, strict=True)) / len(a),
                    }
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        **code_state(),
        "segment_rows": SEGMENT_ROWS,
        "k": K,
        "query_noise": QUERY_NOISE,
        "mask_prefix": MASK_PREFIX,
        "machine_memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "runs": runs,
        "agreement": agreement,
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None, help="where the segments are written (default: /tmp)")
    parser.add_argument("--out", type=Path, default=Path("build/capacity.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the store's folder: measure it, print JSON
    parser.add_argument("--queries", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)

    from bench.report import capacity_table

    result = capacity(args.n, args.work, args.dim)
    for run in result["runs"]:
        print(json.dumps(run))
    for a in result["agreement"]:
        print(json.dumps({"float16_vs_float32": a}))
    print()
    print(capacity_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    for f in result["failures"]:
        print(f"FAILED: N = {f['n']:,} {f['dtype']}: {f['error']}", file=sys.stderr)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
