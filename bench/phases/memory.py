"""Phase "index memory": resident memory of the search's in-memory index at N entries (real ones, synthetic rows for
the rest), in a fresh process (`python -m bench.phases.memory N`) that hides what the layers do not ship and pages in
the load's code with a throwaway index first; RSS before and after the first refresh and a gc, and footprint()."""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import TYPE_CHECKING, Any, TypedDict, cast

import psutil  # noqa: F401 - for common.rss: imported before what the layers lack is hidden

from bench.common import child_json, resident_file, rss
from bench.layersonly import hide

if TYPE_CHECKING:
    from pictrace.index.rows import Loader, RowSource, Versions

WARMUP_SYNTHETIC = 16  # the warm-up index: this many synthetic rows, and as many real entries as read in parallel


class IndexMemory(TypedDict):  # the child's output: results.json's "memory" and "memory_compacted" (bytes)
    n: int
    real: int
    synthetic: int
    warmup_rows: int  # a throwaway index of this many rows refreshed before rss_before (code paged in, not counted)
    raw_vector_bytes: int
    vector_bytes: dict[str, int]
    rss_before: int
    rss_after_refresh: int
    rss_after_gc: int
    rss_delta: int
    rss_file_delta: int  # of rss_delta: file-backed pages (library code run for the first time)
    held_bytes: dict[str, int]
    held_total: int
    pid: int


def index_memory(n: int) -> IndexMemory:
    """Resident memory of the index at N = n, in a fresh process."""
    return child_json(["bench.phases.memory", str(n)])


class FirstRows:  # a RowSource: the first `count` ids (sorted) of another source's listing
    def __init__(self, source: RowSource, count: int) -> None:
        self.source, self.count = source, count

    def refresh(self) -> tuple[Versions, Loader]:
        versions, load = self.source.refresh()
        return {i: versions[i] for i in sorted(versions)[: self.count]}, load


def measure(n: int) -> IndexMemory:
    """The child's measurement."""
    from pictrace.index.memory import EmbeddingIndex
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.store import IndexStore
    from pictrace.settings import Settings
    from pictrace.storage import Store

    from bench.stack import PaddedIndex, PaddedRows

    settings = Settings.from_env()
    store, workers, prefix = Store(settings.bucket), settings.fetch_concurrency, settings.index_prefix
    plain = IndexStore(store, prefix)
    real = sorted(plain.entry_ids())
    template, _ = plain.get_entry(real[0])
    index = PaddedIndex(store, prefix, max(0, n - len(real)), template, settings.refresh_seconds, workers)
    warm_real = SegmentedView(SegmentStore(IndexStore(store, prefix, workers=workers), workers))
    rows = PaddedRows(FirstRows(warm_real, workers), WARMUP_SYNTHETIC, template, seed=1)
    warmup = EmbeddingIndex(rows, settings.refresh_seconds)
    warmup.refresh(force=True)  # the load's code paged in and one-time state set up, not counted; then dropped
    warmed = len(warmup)
    del warmup, rows, warm_real
    gc.collect()
    before, file_before = rss(), resident_file()
    index.refresh(force=True)
    after_refresh = rss()
    gc.collect()
    after_gc, file_after = rss(), resident_file()
    held = index.footprint()
    vectors = {name: int(m.nbytes) for name, m in index.matrices.items()}
    out: dict[str, Any] = dict(n=len(index), real=len(real), synthetic=len(index) - len(real), warmup_rows=warmed)
    out |= dict(raw_vector_bytes=sum(vectors.values()), vector_bytes=vectors, rss_before=before)
    out |= dict(rss_after_refresh=after_refresh, rss_after_gc=after_gc, rss_delta=after_gc - before)
    out |= dict(rss_file_delta=file_after - file_before, held_bytes=held, held_total=sum(held.values()))
    return cast(IndexMemory, out | dict(pid=os.getpid()))


if __name__ == "__main__":
    hide()  # what the layers do not ship fails to import, as in Lambda
    print(json.dumps(measure(int(sys.argv[1]))))
