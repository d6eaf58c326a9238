"""The shortlist backend: what search needs from an index (refresh, candidates, candidates by their details, keys
by id, count, one target's scores), in memory over the S3 entries and segments or in Amazon S3 Vectors, chosen once
by open_backend from the settings. The backend also names the observer its writers must call with every changed id
(on_change): the S3 Vectors mirror, or nothing."""

from __future__ import annotations

import functools
import logging
from typing import Any, Protocol

import numpy as np

from pictrace.index.layout import Entry
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.rows import Candidate
from pictrace.index.segments import SegmentedView, SegmentStore
from pictrace.index.store import ChangeObserver, IndexStore
from pictrace.index.vectors import VectorIndex, mirror
from pictrace.rerank import gist
from pictrace.settings import Settings

logger = logging.getLogger(__name__)


class ShortlistBackend(Protocol):
    """Where search finds its candidates."""

    name: str
    on_change: ChangeObserver | None  # what writers call with changed ids to keep this backend in step
    centred: bool  # candidates' cosines are centred on the centre asked for: the score's own, up to float rounding

    def refresh(self, force: bool = False) -> None:
        """Bring what the backend holds up to date (a no-op where it holds nothing); force: whatever the interval."""
        ...

    def expire(self) -> None:
        """Make the next refresh look at S3 whatever the interval (after a SnapStart restore)."""
        ...

    def candidates(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        shortlist: int,
        prefix: str | None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """Up to `shortlist` images worth reranking for a unit query embedding and its D4 gists (8, 256); by_layout:
        half of them by gist where the backend holds gists (else all by cosine); centre: the model's reference, which
        the backend centres its cosines on where it can. A candidate's cosine is the shortlist's: the score's is
        computed from the entry (pictrace.search)."""
        ...

    def by_detail(
        self, query: np.ndarray, gists: np.ndarray, k: int, prefix: str | None, centre: np.ndarray | None = None
    ) -> list[Candidate]:
        """Up to k images with a detail (pictrace.details) the unit query matches best, where the backend holds the
        images' details (else none)."""
        ...

    def keys(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """The current keys of those ids that are indexed."""
        ...

    def count(self) -> int | None:
        """Images indexed as last refreshed; None where the backend does not count them."""
        ...

    def candidate(self, query: np.ndarray, gists: np.ndarray, target: Entry) -> Candidate:
        """One indexed image scored as candidates() would score it."""
        ...


class MemoryBackend:
    """Every embedding and gist in memory (EmbeddingIndex over the segments and the entries changed since)."""

    name = "memory"
    on_change: ChangeObserver | None = None
    centred = True

    def __init__(self, index: EmbeddingIndex) -> None:
        self.index = index

    def refresh(self, force: bool = False) -> None:
        """See ShortlistBackend."""
        self.index.refresh(force)

    def expire(self) -> None:
        """See ShortlistBackend."""
        self.index.expire()

    def candidates(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        shortlist: int,
        prefix: str | None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """Half by centred cosine, half by gist (EmbeddingIndex.candidates); without by_layout, the best `shortlist`
        by centred cosine alone (each still with the query turn its gist matches best)."""
        self.index.refresh()
        if not by_layout:
            return self.index.candidates(query, gists, shortlist, key_prefix=prefix, by_layout=False, centre=centre)
        return self.index.candidates(query, gists, (shortlist + 1) // 2, key_prefix=prefix, centre=centre)

    def by_detail(
        self, query: np.ndarray, gists: np.ndarray, k: int, prefix: str | None, centre: np.ndarray | None = None
    ) -> list[Candidate]:
        """By the best centred cosine of any of an image's details with the query (EmbeddingIndex.by_detail)."""
        self.index.refresh()
        return self.index.by_detail(query, gists, k, key_prefix=prefix, centre=centre)

    def keys(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """See ShortlistBackend."""
        self.index.refresh()
        known = self.index.keys
        return {i: known[i] for i in ids if i in known}

    def count(self) -> int | None:
        """See ShortlistBackend."""
        return len(self.index)

    def candidate(self, query: np.ndarray, gists: np.ndarray, target: Entry) -> Candidate:
        """The plain cosine, and the query turn whose gist matches best."""
        cosine = float(np.dot(query, target.embedding))
        by_turn = gists @ gist(target.features.thumb)
        turn = int(np.argmax(by_turn))
        return Candidate(target.id, cosine, float(by_turn[turn]), turn, target.keys)


class VectorsBackend:
    """Amazon S3 Vectors' QueryVectors (cosine only, no gist); nothing held in memory."""

    name = "s3vectors"
    centred = False

    def __init__(self, vectors: VectorIndex, index_store: IndexStore) -> None:
        self.vectors = vectors
        self.on_change: ChangeObserver | None = functools.partial(mirror, vectors, index_store)

    def refresh(self, force: bool = False) -> None:
        """Nothing to refresh: every query goes to the service."""

    def expire(self) -> None:
        """Nothing held, nothing to expire."""

    def candidates(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        shortlist: int,
        prefix: str | None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """The `shortlist` nearest by the plain cosine (prefix: a folder); S3 Vectors holds no gists and centres
        nothing, so by_layout and centre change nothing."""
        return [Candidate(n.id, n.cosine, 0.0, 0, n.keys) for n in self.vectors.query(query, shortlist, prefix)]

    def by_detail(
        self, query: np.ndarray, gists: np.ndarray, k: int, prefix: str | None, centre: np.ndarray | None = None
    ) -> list[Candidate]:
        """None: the vector index holds one vector per image, not its details (searches compare the details of the
        candidates they have, pictrace.regions)."""
        return []

    def keys(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """See ShortlistBackend."""
        return self.vectors.get(ids)

    def count(self) -> int | None:
        """Not counted (that would list the whole vector index)."""
        return None

    def candidate(self, query: np.ndarray, gists: np.ndarray, target: Entry) -> Candidate:
        """As QueryVectors scores it: raw cosine, no layout turn."""
        return Candidate(target.id, float(np.dot(query, target.embedding)), 0.0, 0, target.keys)


def open_backend(settings: Settings, index_store: IndexStore, vector_client: Any | None = None) -> ShortlistBackend:
    """The backend the settings name (index_backend) over an index's objects: the one place that chooses."""
    if settings.index_backend == "s3vectors":
        return VectorsBackend(VectorIndex(settings.vector_bucket, settings.vector_index, vector_client), index_store)
    view = SegmentedView(SegmentStore(index_store, settings.fetch_concurrency), settings.details_held > 0)
    return MemoryBackend(EmbeddingIndex(view, settings.refresh_seconds, {"details": settings.details_held}))
