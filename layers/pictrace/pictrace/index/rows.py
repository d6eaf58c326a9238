"""What an in-memory index holds per image (Row), how rows arrive (Loaded, Block), and where they come from:
the RowSource protocol, implemented by the entries listing (EntryRows) and by the segments
(pictrace.index.segments.SegmentedView)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pictrace.details import DETAILS, quantised
from pictrace.errors import NotFound
from pictrace.index.layout import Entry
from pictrace.index.packed import KeyTable, RowIds
from pictrace.index.store import IndexStore, parallel
from pictrace.rerank import gist

#: the named vectors held and stored as other than float32: the details, quantised (pictrace.details.quantised)
VECTOR_DTYPES: dict[str, type] = {"details": np.int8}


def vector_dtype(name: str) -> np.dtype:
    """How the in-memory index holds, and segments store, one named vector (float32 unless VECTOR_DTYPES says)."""
    return np.dtype(VECTOR_DTYPES.get(name, np.float32))


def index_vectors(entry: Entry, details: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The named per-image vectors an in-memory index holds for an entry and its details (pictrace.details: a row of
    them, where it has as many as DETAILS of its embedding's width); segments store exactly these."""
    vectors = {"embedding": np.asarray(entry.embedding, dtype=np.float32), "gist": gist(entry.features.thumb)}
    if details is not None and details.shape == (DETAILS, len(entry.embedding)):
        vectors["details"] = quantised(details)
    return vectors


@dataclass(frozen=True)
class Candidate:
    """A shortlisted image: its (centred) embedding cosine, its best gist correlation, the query turn behind it,
    and its keys as the backend has them now."""

    id: str
    cosine: float
    gist: float
    transform: int
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """What the in-memory index holds for one image: its keys and named vectors (see index_vectors)."""

    keys: tuple[str, ...]
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True)
class Block:
    """Rows stored together in one object (a segment): their ids, keys, row numbers there and the widths of its
    named matrices. The index copies them straight from that object's matrices, one object at a time."""

    source: str
    ids: RowIds
    keys: KeyTable
    rows: np.ndarray
    dims: dict[str, int]


@dataclass
class Loaded:
    """What a row loader returns: single rows (None: gone), and blocks whose matrices `matrices(blocks)` yields
    one block at a time, in order, so that beyond the index only one block's object is in memory at once."""

    rows: dict[str, Row | None]
    blocks: list[Block] = field(default_factory=list)
    matrices: Callable[[list[Block]], Iterator[dict[str, np.ndarray]]] | None = None

    def items(self) -> Iterator[tuple[str, tuple[str, ...], np.ndarray]]:
        """(id, keys, embedding) of every live row, the blocks' one object at a time."""
        if self.matrices is not None and self.blocks:
            for block, matrices in zip(self.blocks, self.matrices(self.blocks), strict=True):
                embeddings = matrices["embedding"]
                for n, entry_id in enumerate(block.ids):
                    yield entry_id, block.keys[n], np.asarray(embeddings[block.rows[n]], dtype=np.float32)
        for entry_id, row in self.rows.items():
            if row is not None:
                yield entry_id, row.keys, row.vectors["embedding"]


Versions = Mapping[str, str]  # id -> a token that changes whenever the id's row may have (or a packed Listing)
Loader = Callable[[list[str]], Loaded]


class RowSource(Protocol):
    """Where an in-memory index reads its rows from."""

    def refresh(self) -> tuple[Versions, Loader]:
        """Every live id with its version token, and a loader of the rows of some of them."""
        ...


def read_row(index_store: IndexStore, entry_id: str, details: bool = True) -> Row | None:
    """What the in-memory index holds of an entry (keys, named vectors, with its details once the details stage
    wrote them, unless details is False); None if it no longer exists."""
    try:
        entry = index_store.get_entry(entry_id)[0]
    except NotFound:  # deleted between a listing and this read
        return None
    return Row(entry.keys, index_vectors(entry, index_store.get_details(entry_id) if details else None))


def read_rows(index_store: IndexStore, ids: list[str], details: bool = True) -> dict[str, Row | None]:
    """Rows read in parallel (read_row); the entries themselves (with their rerank features) are dropped as they are
    read."""
    rows = parallel(lambda i: read_row(index_store, i, details), ids, index_store.workers)
    return dict(zip(ids, rows, strict=True))


class EntryRows:
    """Rows from the entries themselves: one LIST of every entry, one GET per changed entry (and one of its details,
    unless details is False: an index that holds none)."""

    def __init__(self, index_store: IndexStore, details: bool = True) -> None:
        self.index_store = index_store
        self.details = details

    def refresh(self) -> tuple[Versions, Loader]:
        """Every entry id with its ETag, and a loader reading entries."""
        return self.index_store.entry_ids(), self.load

    def load(self, ids: list[str]) -> Loaded:
        """These entries' rows."""
        return Loaded(read_rows(self.index_store, ids, self.details))
