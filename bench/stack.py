"""The bench's local stack (infra/local.py's, moto's server in a process of its own so that its work does not take the
bench's GIL while the search is timed), the index built through the real ingest handler, and PaddedIndex: the search's
EmbeddingIndex over the real entries plus synthetic rows, how N = 10,000 and 100,000 are reached with 1,000 images.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, NotRequired, TypedDict
from unittest import mock

import numpy as np
import psutil
from pictrace.index.layout import Entry
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.packed import KeyTable, RowIds
from pictrace.index.rows import Block, Candidate, Loaded, Loader, RowSource, Versions, index_vectors
from pictrace.index.segments import SegmentedView, SegmentStore
from pictrace.index.store import IndexStore
from pictrace.storage import Store

from bench.common import ROOT
from infra.local import LocalStack, free_port

SYNTHETIC_ETAG = '"synthetic"'


class ProcessMotoServer:
    """Drop-in for infra.motoserver.moto_server (host, port; start, stop) running `python -m bench.worker moto`."""

    #: the servers started by this process and not stopped yet (the bench reads their CPU time)
    running: list[ProcessMotoServer] = []  # noqa: RUF012

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 5000, verbose: bool = False) -> None:
        self.ip_address, self.port = ip_address, port
        self._proc: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        """The server process's CPU seconds so far (0 once stopped)."""
        t = psutil.Process(self._proc.pid).cpu_times() if self._proc is not None else None
        return t.user + t.system if t is not None else 0.0

    def start(self) -> None:
        command = [sys.executable, "-m", "bench.worker", "moto", self.ip_address, str(self.port)]
        self._proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto's server exited with {self._proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((self.ip_address, self.port), timeout=0.5):
                ProcessMotoServer.running.append(self)
                return
            time.sleep(0.1)
        raise RuntimeError("moto's server did not start within 60 s")

    def stop(self) -> None:
        if self in ProcessMotoServer.running:
            ProcessMotoServer.running.remove(self)
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def start_stack(bucket: str = "pictrace-bench") -> LocalStack:
    """The project's LocalStack, its moto server in a separate process; sets this process's environment to it."""
    stack = LocalStack(bucket=bucket, port=free_port())
    with mock.patch("infra.local.moto_server", ProcessMotoServer):
        stack.start()
    return stack


class IndexBuild(TypedDict):
    """upload_and_index's result: results.json's "ingest_index"."""

    images: int
    workers: int
    upload_s: float
    total_s: float
    images_per_s: float
    events_processed: int
    events_failed: int
    checked_s: NotRequired[float]  # with copies workers: until the copies queue was empty too
    cpu_s: NotRequired[dict[str, float]]  # CPU seconds of moto's server and of each kind of worker over the run


def upload_and_index(
    stack: LocalStack,
    files: Mapping[str, bytes],
    workers: int = 2,
    timeout: float = 1200.0,
    copies_workers: int = 0,
    put_at: dict[str, float] | None = None,
    details_workers: int = 0,
) -> IndexBuild:
    """Upload the files and let `workers` ingest processes (bench.worker) index them, `copies_workers` check them
    (checked_s: until that queue is empty too) and `details_workers` make their details; put_at: each upload's time."""
    procs = start_workers("ingest", stack.queue_url, workers)
    checkers = start_workers("copies", stack.copies_url, copies_workers)
    detailers = start_workers("details", stack.details_url, details_workers)
    s3 = stack.client("s3")
    server = next(m for m in ProcessMotoServer.running if m.port == stack.port)
    moto_cpu = server.cpu_seconds()
    started = time.perf_counter()
    try:
        for key, body in files.items():
            s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
            if put_at is not None:
                put_at[key] = time.time()
        uploaded = time.perf_counter()
        queues = (
            [stack.queue_url] + ([stack.copies_url] if checkers else []) + ([stack.details_url] if detailers else [])
        )
        emptied = wait_until_empty(stack, queues, [*procs, *checkers, *detailers], timeout)
        done, checked = emptied[0] - started, max(emptied[: 1 + bool(checkers)]) - started
    finally:
        moto_cpu = server.cpu_seconds() - moto_cpu
        reports, checks = stop_workers(procs), stop_workers(checkers)
        stop_workers(detailers)
    out: IndexBuild = {
        "images": len(files),
        "workers": workers,
        "upload_s": uploaded - started,
        "total_s": done,
        "images_per_s": len(files) / done,
        "events_processed": sum(r.get("processed", 0) for r in reports),
        "events_failed": sum(r.get("failed", 0) for r in reports),
    }
    out["cpu_s"] = {"moto": moto_cpu, "ingest": sum(r.get("cpu_s", 0.0) for r in reports)}
    if checkers:
        out["checked_s"] = checked
        out["cpu_s"]["copies"] = sum(r.get("cpu_s", 0.0) for r in checks)
    return out


def start_workers(mode: str, queue_url: str, n: int) -> list[subprocess.Popen[str]]:
    """n worker processes `python -m bench.worker MODE QUEUE_URL` (ingest, copies or details), with this environment."""
    command = [sys.executable, "-m", "bench.worker", mode, queue_url]
    return [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(n)]


def stop_workers(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Terminate the workers; what each reported (its last line of output, JSON)."""
    for p in procs:
        p.terminate()
    outputs = [p.communicate(timeout=60)[0].strip().splitlines() for p in procs]
    return [json.loads(lines[-1]) if lines else {} for lines in outputs]


def wait_until_empty(stack: LocalStack, queues: list[str], procs: list[Any], timeout: float) -> list[float]:
    """Wait until each queue has held no message, visible or in flight, at three checks in a row 0.5 s apart;
    returns, per queue, time.perf_counter() at the first of them. RuntimeError if a worker exits, TimeoutError after
    timeout."""
    sqs = stack.client("sqs")
    deadline = time.monotonic() + timeout
    runs, first = dict.fromkeys(queues, 0), dict.fromkeys(queues, 0.0)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while min(runs.values()) < 3:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queues were not empty within {timeout:.0f} s")
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited early")
        now = time.perf_counter()
        for url in queues:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            runs[url] = 0 if sum(int(attrs[n]) for n in names) else runs[url] + 1
            first[url] = now if runs[url] == 1 else first[url]
        time.sleep(0.5)
    return [first[url] for url in queues]


def synthetic_id(i: int) -> str:
    """A 64-hex id no real image has (real ids are SHA-256 of bytes; these hash a label)."""
    return hashlib.sha256(f"pictrace-bench-synthetic-{i}".encode()).hexdigest()


class PaddedRows:
    """A RowSource: another source's rows plus synthetic ones in memory (random unit vectors for each named vector,
    one block as a segment's rows arrive, a constant version, one realistic key `images/synthetic/<n>.jpg` each)."""

    def __init__(self, real: RowSource, synthetic: int, template: Entry, seed: int = 12345) -> None:
        self.real, self.seed = real, seed
        self.shapes = {name: len(v) for name, v in index_vectors(template).items()}
        self.rows = {synthetic_id(i): i for i in range(synthetic)}

    def refresh(self) -> tuple[Versions, Loader]:
        """The real source's ids and versions plus the synthetic ids; a loader of both kinds."""
        versions, load_real = self.real.refresh()
        versions = {**versions, **dict.fromkeys(self.rows, SYNTHETIC_ETAG)}

        def load(ids: list[str]) -> Loaded:
            out = load_real([i for i in ids if i not in self.rows])
            numbers = np.fromiter((self.rows[i] for i in ids if i in self.rows), np.int64)
            if len(numbers):
                row_ids = RowIds.of(synthetic_id(int(n)) for n in numbers)
                keys = KeyTable.of((f"images/synthetic/{n}.jpg",) for n in numbers)
                block = Block("synthetic", row_ids, keys, np.arange(len(numbers)), dict(self.shapes))
                real_blocks, real_matrices = list(out.blocks), out.matrices

                def matrices(blocks: list[Block]) -> Iterator[dict[str, np.ndarray]]:
                    if real_blocks and real_matrices is not None:
                        yield from real_matrices(real_blocks)
                    yield self.synthetic_matrices(numbers)

                out.blocks, out.matrices = [*real_blocks, block], matrices
            return out

        return versions, load

    def synthetic_matrices(self, numbers: np.ndarray) -> dict[str, np.ndarray]:
        """The named matrices of these synthetic rows (row i: synthetic row numbers[i], the same each time)."""
        out = {}
        for name, dim in sorted(self.shapes.items()):
            out[name] = m = np.empty((len(numbers), dim), np.float32)
            for i, n in enumerate(numbers):
                m[i] = np.random.default_rng((self.seed, int(n), dim)).standard_normal(dim, dtype=np.float32)
            m /= np.linalg.norm(m, axis=1, keepdims=True)
        return out


class PaddedIndex(EmbeddingIndex):
    """The search's EmbeddingIndex over the real index, read as the search reads it, plus `n` synthetic rows shaped
    like the entry `like` (PaddedRows), counting the synthetic rows that reach a shortlist."""

    def __init__(
        self, base: Store, prefix: str, n: int, like: Entry, refresh: float = 2.0, workers: int = 16, seed: int = 12345
    ) -> None:
        real = SegmentedView(SegmentStore(IndexStore(base, prefix, workers=workers), workers))
        self.padding = PaddedRows(real, n, like, seed)
        super().__init__(self.padding, refresh)
        self.synthetic_per_call: list[int] = []

    def candidates(self, *args: Any, **kwargs: Any) -> list[Candidate]:
        """EmbeddingIndex.candidates, counting the synthetic rows among them."""
        found = super().candidates(*args, **kwargs)
        self.synthetic_per_call.append(sum(1 for c in found if c.id in self.padding.rows))
        return found
