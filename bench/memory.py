"""`python -m bench.memory N`: resident memory of the search's in-memory index at N entries, in a fresh process.

Run by bench.run with the environment pointing at the bench's local stack (its 1,000 real entries); synthetic
rows (bench.stack.PaddedIndex) make up the rest of N.

Before the "before" point, a throwaway index of a few rows (one real entry per read thread, WARMUP_SYNTHETIC
synthetic rows) is refreshed once and dropped: the library code the load runs is paged in and one-time state (the
allocator's tuning, the client's connections, one per read thread) is set up, so none of it is counted as the
index's memory; everything the index's own rows cause is. What the Lambda layers do not ship is hidden, as in
bench.coldstart (bench.layersonly): botocore signs with awscrt when installed (the development virtualenv has it;
the Lambda layers do not), and its caches are not what the search function would hold.

Measures the process's resident set size (RSS) before and after the first refresh (which loads every entry and keeps
its vectors: embedding, gist), after a garbage collection (and how much of the growth is file-backed: library code
run for the first time), and what the index object itself holds (EmbeddingIndex.footprint: matrices, ids, keys,
versions). Prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pictrace.index.rows import Loader, RowSource, Versions

import psutil  # the measuring tool, not the function's: imported before what the layers lack is hidden

from bench.layersonly import hide

hide()  # what the layers do not ship fails to import, as in Lambda

ROOT = Path(__file__).resolve().parent.parent
WARMUP_SYNTHETIC = 16  # the warm-up index: this many synthetic rows, and as many real entries as read in parallel


class FirstRows:
    """A RowSource: the first `count` ids (in sorted order) of another source's listing."""

    def __init__(self, source: RowSource, count: int) -> None:
        self.source = source
        self.count = count

    def refresh(self) -> tuple[Versions, Loader]:
        """The other source's first `count` ids and their versions, and its loader."""
        versions, load = self.source.refresh()
        return {i: versions[i] for i in sorted(versions)[: self.count]}, load


def rss() -> int:
    """This process's resident set size in bytes."""
    return int(psutil.Process().memory_info().rss)


def main(argv: list[str]) -> int:
    n = int(argv[0])
    sys.path.insert(0, str(ROOT))
    from pictrace.index.memory import EmbeddingIndex
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.store import IndexStore
    from pictrace.settings import Settings
    from pictrace.storage import Store

    from bench.capacity import resident_file
    from bench.stack import PaddedIndex, PaddedRows

    settings = Settings.from_env()
    store = Store(settings.bucket)
    plain = IndexStore(store, settings.index_prefix)
    real = sorted(plain.entry_ids())
    template, _ = plain.get_entry(real[0])
    index = PaddedIndex(
        store,
        settings.index_prefix,
        max(0, n - len(real)),
        template,
        settings.refresh_seconds,
        settings.fetch_concurrency,
    )
    workers = settings.fetch_concurrency
    warm_real = SegmentedView(SegmentStore(IndexStore(store, settings.index_prefix, workers=workers), workers))
    first = FirstRows(warm_real, settings.fetch_concurrency)
    warmup = EmbeddingIndex(PaddedRows(first, WARMUP_SYNTHETIC, template, seed=1), settings.refresh_seconds)
    warmup.refresh(force=True)  # the load's code path once (see the module docstring); then dropped
    warmed = len(warmup)
    del warmup, first, warm_real
    gc.collect()
    before, file_before = rss(), resident_file()
    index.refresh(force=True)
    after_refresh = rss()
    gc.collect()
    after_gc, file_after = rss(), resident_file()
    held = index.footprint()
    vectors = {name: int(m.nbytes) for name, m in index.matrices.items()}
    print(
        json.dumps(
            {
                "n": len(index),
                "real": len(real),
                "synthetic": len(index) - len(real),
                "warmup_rows": warmed,  # the throwaway index refreshed before rss_before (not counted)
                "raw_vector_bytes": sum(vectors.values()),
                "vector_bytes": vectors,
                "rss_before": before,
                "rss_after_refresh": after_refresh,
                "rss_after_gc": after_gc,
                "rss_delta": after_gc - before,
                "rss_file_delta": file_after - file_before,  # of rss_delta: file-backed pages (code first run)
                "held_bytes": held,
                "held_total": sum(held.values()),
                "pid": os.getpid(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
