"""One container's wiring: the bucket's Store, the index's IndexStore and the shortlist backend, built together in
one place (wire) and shared by search, ingest and compaction; a container's functions get theirs from
container_wiring. Writers of the index keep the backend in step through the IndexStore's change observer."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pictrace.index.backend import ShortlistBackend, open_backend
from pictrace.index.compaction import CompactionResult, Compactor
from pictrace.index.segments import SegmentStore
from pictrace.index.store import IndexStore
from pictrace.settings import Settings, get_settings
from pictrace.storage import Store


@dataclass(frozen=True)
class Wiring:
    """What search, ingest and compaction of one index share."""

    settings: Settings
    store: Store  # the bucket
    index: IndexStore  # the index's objects; its writes notify the backend (on_change)
    backend: ShortlistBackend  # where searches find their candidates


def wire(
    settings: Settings,
    store: Store | None = None,
    backend: ShortlistBackend | None = None,
    vector_client: Any | None = None,
) -> Wiring:
    """The store, index store and backend the settings name (each given one is used as it is)."""
    store = store or Store(settings.bucket)
    index = IndexStore(store, settings.index_prefix, workers=settings.fetch_concurrency)
    backend = backend or open_backend(settings, index, vector_client)
    index.on_change = backend.on_change
    return Wiring(settings, store, index, backend)


@functools.lru_cache(maxsize=1)
def container_wiring() -> Wiring:
    """The container's wiring, from the environment's settings, made on first use."""
    return wire(get_settings())


def compact(wiring: Wiring | None = None) -> CompactionResult:
    """One compaction of the index (the compact function's whole job); the backend's observer sees the changed ids
    before their markers go."""
    w = wiring or container_wiring()
    s = w.settings
    compactor = Compactor(
        SegmentStore(w.index, s.fetch_concurrency),
        dtype=s.segment_dtype,
        max_segments=s.max_segments,
        segment_rows=s.segment_rows,
        on_fold=w.backend.on_change,
    )
    return compactor.compact()
