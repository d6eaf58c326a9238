"""Phase "index memory": the search's in-memory index at N entries in a fresh process (bench.memory)."""

from __future__ import annotations

from typing import TypedDict

from bench.common import child_json


class IndexMemory(TypedDict):
    """bench.memory's output: results.json's "memory" (bytes)."""

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
    """Resident memory of the index at N = n (the stack's real entries, synthetic rows for the rest)."""
    result: IndexMemory = child_json(["bench.memory", str(n)])
    return result
