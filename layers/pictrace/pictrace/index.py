"""The index in S3 and its in-memory view.

Layout under the index prefix (one atomic object per image, content-addressed by SHA-256):
    entries/<id>.npz      embedding, rerank features and metadata (keys, format, size) of one image
    keys/<sha256(key)>.json   which entry an image key currently points to (for removals)
    failures/<sha256(key)>.json   why an object under the images prefix could not be indexed
"""

from __future__ import annotations

import ctypes
import datetime as dt
import functools
import hashlib
import io
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pictrace.errors import ConflictError, ModelMismatch, NotFound
from pictrace.rerank import Features, gist
from pictrace.storage import Store

if TYPE_CHECKING:
    from pictrace.segments import SegmentedView

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_CONFLICT_RETRIES = 25
_MASKS_KEPT = 8  # key-prefix masks kept per snapshot (a prefix filter costs a pass over every key in Python)
_TRIM_AFTER_ROWS = 256  # a refresh that changed at least this many rows hands freed heap pages back (see _trim)


@functools.cache
def _glibc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl): its allocator is left as it is
        return None


_M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
_M_ARENA_MAX = -8


@functools.cache
def _tune_allocator() -> None:
    """Allocations of 1 MiB and more get their own mappings, returned to the OS as soon as they are freed; at most
    two malloc arenas, whatever the number of threads.

    glibc otherwise raises the mapping threshold each time such a buffer is freed, after which segment parts and
    parsed matrices come from heaps that keep their pages (measured +0.2 GB resident after a 100,000-image load),
    and gives each thread that reads rows its own arena, whose freed pages stay resident too (bench-quick's probe:
    1.37x -> 1.26x resident of the vectors' bytes after a 2,000-entry load).
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(_M_ARENA_MAX, 2)


def _trim() -> None:
    """Give heap pages freed by a large refresh back to the OS.

    Loading rows allocates many small arrays (parsed entries, per-row vectors) that are freed once copied into
    the matrices; glibc keeps the freed pages resident, which measured about 1x the vectors' bytes again.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _backoff(attempt: int) -> None:
    """Sleep a little before retrying a lost conditional write (jittered, growing, capped at 0.5 s)."""
    if attempt:
        time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def key_digest(key: str) -> str:
    """A fixed-length, S3-safe name for an image key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One indexed image."""

    id: str
    keys: tuple[str, ...]
    embedding: np.ndarray  # (2048,) float32, unit length
    features: Features
    meta: dict[str, Any] = field(default_factory=dict)  # format, width, height, bytes, created

    def to_bytes(self) -> bytes:
        """Serialise (npz, no pickles)."""
        header = json.dumps({"version": FORMAT_VERSION, "id": self.id, "keys": list(self.keys), **self.meta})
        buf = io.BytesIO()
        np.savez(
            buf,
            header=np.frombuffer(header.encode(), dtype=np.uint8),
            embedding=self.embedding.astype(np.float32),
            thumb=self.features.thumb,
            keypoints=self.features.keypoints,
            descriptors=self.features.descriptors,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse what to_bytes wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            features = Features(npz["thumb"], npz["keypoints"], npz["descriptors"])
            embedding = npz["embedding"]
        entry_id = header.pop("id")
        keys = tuple(header.pop("keys"))
        header.pop("version", None)
        return cls(id=entry_id, keys=keys, embedding=embedding, features=features, meta=header)


def index_vectors(entry: Entry) -> dict[str, np.ndarray]:
    """The named per-image vectors EmbeddingIndex holds for an entry; segments store exactly these."""
    return {"embedding": np.asarray(entry.embedding, dtype=np.float32), "gist": gist(entry.features.thumb)}


@dataclass(frozen=True)
class Candidate:
    """A shortlisted image: its centred embedding cosine, its best gist correlation and the query turn behind it."""

    id: str
    cosine: float
    gist: float
    transform: int


@dataclass(frozen=True)
class Row:
    """What EmbeddingIndex holds for one image: its keys and named vectors (see index_vectors)."""

    keys: tuple[str, ...]
    vectors: dict[str, np.ndarray]


@dataclass(frozen=True)
class Block:
    """Rows stored together in one object (a segment): their ids, keys, row numbers there and the widths of its
    named matrices. The index copies them straight from that object's matrices, one object at a time."""

    source: str
    ids: list[str]
    keys: list[tuple[str, ...]]
    rows: np.ndarray
    dims: dict[str, int]


@dataclass
class Loaded:
    """What a row loader returns: single rows (None: gone), and blocks whose matrices `matrices(blocks)` yields
    one block at a time, in order, so that beyond the index only one block's object is in memory at once."""

    rows: dict[str, Row | None]
    blocks: list[Block] = field(default_factory=list)
    matrices: Callable[[list[Block]], Iterator[dict[str, np.ndarray]]] | None = None


class IndexStore:
    """Reads and writes the index objects in S3; every update is a conditional write."""

    def __init__(self, store: Store, index_prefix: str) -> None:
        self.store = store
        self.prefix = index_prefix
        self.on_change: Callable[[str], object] | None = None  # called after each change (pictrace.vectors' mirror)
        self._model_ok: tuple[str, int] | None = None  # the model this index was checked to be built with

    def model_key(self) -> str:
        """S3 key of the record of the model whose embeddings the index holds (weights and width)."""
        return f"{self.prefix}model.json"

    def model_record(self) -> dict[str, Any] | None:
        """The index's model record; for an index from before the record, what its first entry says; else None."""
        try:
            record: dict[str, Any] = json.loads(self.store.get(self.model_key()).body)
            return record
        except NotFound:
            pass
        for key, _etag, _size in self.store.list(self.entries_prefix()):
            try:
                entry = Entry.from_bytes(self.store.get(key).body)
            except NotFound:
                continue
            return {"weights": entry.meta.get("weights"), "dim": int(entry.embedding.shape[0]), "from": key}
        return None

    def check_model(self, weights: str, dim: int, *, claim: bool = False) -> None:
        """ModelMismatch unless the index holds embeddings of this model (or none yet). claim: record the model
        for an index that has no record, so that later writers with another model are refused (ingest does)."""
        if self._model_ok == (weights, dim):
            return
        record = self.model_record()
        if record is None or (claim and "from" in record and record["weights"] == weights):
            if claim:
                body = json.dumps({"weights": weights, "dim": dim, "at": now_iso()}).encode()
                if not self.store.put(self.model_key(), body, if_none_match=True, content_type="application/json"):
                    record = self.model_record()  # another writer recorded its model first: that one counts
        if record is not None and (record.get("weights"), record.get("dim")) != (weights, dim):
            where = f"s3://{self.store.bucket}/{self.prefix}"
            raise ModelMismatch(
                f"the index in {where} holds embeddings of weights {record.get('weights')!r} "
                f"({record.get('dim')}-d) but this model is {weights!r} ({dim}-d): embeddings of different models "
                f"never mix. To reindex with {weights!r}, empty {where} (e.g. `aws s3 rm --recursive {where}`) and "
                f"run `pictrace ingest s3://{self.store.bucket}/<images prefix>` (the backfill), or deploy with "
                f"Weights={record.get('weights')} to keep this index"
            )
        self._model_ok = (weights, dim)

    def entry_key(self, entry_id: str) -> str:
        """S3 key of an entry."""
        return f"{self.prefix}entries/{entry_id}.npz"

    def pointer_key(self, image_key: str) -> str:
        """S3 key of an image key's pointer."""
        return f"{self.prefix}keys/{key_digest(image_key)}.json"

    def failure_key(self, image_key: str) -> str:
        """S3 key of an image key's failure record."""
        return f"{self.prefix}failures/{key_digest(image_key)}.json"

    def entries_prefix(self) -> str:
        """Where the entries live."""
        return f"{self.prefix}entries/"

    def changes_prefix(self) -> str:
        """Where the change markers live (pictrace.segments: entries newer than the segments)."""
        return f"{self.prefix}changes/"

    def mark_changed(self, entry_id: str, repair: bool = False) -> None:
        """Record that an entry changed, after the change is written. A nonce gives every marker a new ETag.

        repair: nothing changed now, but an earlier attempt may have stopped before its marker: write one only
        if there is none (a redelivered event then changes nothing).
        """
        body = json.dumps({"id": entry_id, "nonce": uuid.uuid4().hex, "at": now_iso()}).encode()
        key = f"{self.changes_prefix()}{entry_id}"
        self.store.put(key, body, if_none_match=repair, content_type="application/json")
        if self.on_change is not None:
            self.on_change(entry_id)

    def get_entry(self, entry_id: str) -> tuple[Entry, str]:
        """The entry and its ETag; NotFound if absent."""
        obj = self.store.get(self.entry_key(entry_id))
        return Entry.from_bytes(obj.body), obj.etag

    def get_row(self, entry_id: str) -> Row | None:
        """What the in-memory index holds of an entry (keys, named vectors); None if it no longer exists."""
        try:
            entry = self.get_entry(entry_id)[0]
        except NotFound:  # deleted between a listing and this read
            return None
        return Row(entry.keys, index_vectors(entry))

    def pointer(self, image_key: str) -> str | None:
        """The entry id an image key points to, if any."""
        try:
            data = json.loads(self.store.get(self.pointer_key(image_key)).body)
        except NotFound:
            return None
        return str(data["id"])

    def create_or_add_key(self, entry: Entry, image_key: str) -> str:
        """Store a new entry, or add the key to the existing entry with the same id. Returns what happened."""
        if self.store.put(self.entry_key(entry.id), entry.to_bytes(), if_none_match=True):
            self.mark_changed(entry.id)
            self._set_pointer(image_key, entry.id)
            return "created"
        return self.add_key(entry.id, image_key)

    def add_key(self, entry_id: str, image_key: str, pointed: bool = False) -> str:
        """Add an image key to an existing entry ('added', or 'unchanged' if it was there).

        pointed: the key's pointer already names this entry (nothing to write when the entry has the key).
        """
        for attempt in range(_CONFLICT_RETRIES):
            _backoff(attempt)
            entry, etag = self.get_entry(entry_id)
            if image_key in entry.keys:
                self.mark_changed(entry_id, repair=True)
                if not pointed:
                    self._set_pointer(image_key, entry_id)
                return "unchanged"
            updated = replace(entry, keys=tuple(sorted({*entry.keys, image_key})))
            if self.store.put(self.entry_key(entry_id), updated.to_bytes(), if_match=etag):
                self.mark_changed(entry_id)
                self._set_pointer(image_key, entry_id)
                return "added"
        raise ConflictError(f"could not add {image_key} to entry {entry_id}: too many concurrent writers")

    def remove_key(self, image_key: str) -> str:
        """Remove an image key from the entry it points to; the entry goes with its last key."""
        entry_id = self.pointer(image_key)
        outcome = "absent"
        if entry_id is not None:
            outcome = self._remove_key_from_entry(entry_id, image_key)
            self.store.delete(self.pointer_key(image_key))
        self.store.delete(self.failure_key(image_key))
        return outcome

    def _remove_key_from_entry(self, entry_id: str, image_key: str) -> str:
        for attempt in range(_CONFLICT_RETRIES):
            _backoff(attempt)
            try:
                entry, etag = self.get_entry(entry_id)
            except NotFound:
                self.mark_changed(entry_id, repair=True)  # a retry after a deletion whose marker was not written
                return "absent"
            if image_key not in entry.keys:
                return "absent"
            keys = tuple(k for k in entry.keys if k != image_key)
            if not keys:
                if self.store.delete(self.entry_key(entry_id), if_match=etag):
                    self.mark_changed(entry_id)
                    return "deleted"
            elif self.store.put(self.entry_key(entry_id), replace(entry, keys=keys).to_bytes(), if_match=etag):
                self.mark_changed(entry_id)
                return "removed"
        raise ConflictError(f"could not remove {image_key} from entry {entry_id}: too many concurrent writers")

    def _set_pointer(self, image_key: str, entry_id: str) -> None:
        body = json.dumps({"key": image_key, "id": entry_id}).encode()
        self.store.put(self.pointer_key(image_key), body, content_type="application/json")
        self.store.delete(self.failure_key(image_key))

    def record_failure(self, image_key: str, reason: str, etag: str | None) -> None:
        """Record why an object could not be indexed."""
        body = json.dumps({"key": image_key, "reason": reason, "etag": etag, "at": now_iso()}).encode()
        self.store.put(self.failure_key(image_key), body, content_type="application/json")

    def failure(self, image_key: str) -> dict[str, Any] | None:
        """The recorded failure of an image key, if any."""
        try:
            record: dict[str, Any] = json.loads(self.store.get(self.failure_key(image_key)).body)
        except NotFound:
            return None
        return record


class EmbeddingIndex:
    """All embeddings as one float32 matrix, kept across warm invocations and refreshed by what changed.

    With segments (pictrace.segments, once a compaction has written a manifest) a refresh reads the manifest, the
    segments it has not read yet and the entries changed since; without, it lists every entry and reads the new.
    """

    def __init__(
        self,
        index_store: IndexStore,
        refresh_seconds: float = 2.0,
        workers: int = 16,
        segments: SegmentedView | None = None,
    ) -> None:
        self.index_store = index_store
        self.refresh_seconds = refresh_seconds
        self.workers = workers
        self.segments = segments
        _tune_allocator()
        # (named matrices, ids) replaced as one tuple so a concurrent reader never sees a half-updated pair
        self._snapshot: tuple[dict[str, np.ndarray], list[str]] = ({}, [])
        self.keys: dict[str, tuple[str, ...]] = {}
        self._etags: dict[str, str] = {}  # id -> version of its row (entry ETag, or segment/marker token)
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()
        self._centring_cache: tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._masks: tuple[list[str], dict[str, np.ndarray]] = ([], {})  # per snapshot: key prefix -> rows under it

    def __len__(self) -> int:
        return len(self._snapshot[1])

    @property
    def matrices(self) -> dict[str, np.ndarray]:
        """Named (n, d) float32 matrices (see index_vectors), one row per id."""
        return self._snapshot[0]

    @property
    def matrix(self) -> np.ndarray:
        """The (n, 2048) float32 embedding matrix, one row per id."""
        return self._snapshot[0].get("embedding", np.zeros((0, 0), dtype=np.float32))

    @property
    def ids(self) -> list[str]:
        """Entry ids in matrix row order."""
        return self._snapshot[1]

    def expire(self) -> None:
        """Make the next refresh look at S3 whatever the refresh interval (e.g. after a SnapStart restore)."""
        self._refreshed_at = float("-inf")

    def refresh(self, force: bool = False) -> int:
        """Bring the matrix up to date with S3 (at most every refresh_seconds); returns how many rows changed."""
        with self._lock:
            if not force and time.monotonic() - self._refreshed_at < self.refresh_seconds:
                return 0
            segmented = self.segments.refresh() if self.segments is not None else None
            if segmented is not None:
                listed, load = segmented
            else:
                prefix = self.index_store.entries_prefix()
                listed = {}
                for key, etag, _size in self.index_store.store.list(prefix):
                    if key.endswith(".npz"):
                        listed[key[len(prefix) : -len(".npz")]] = etag
                load = self._load
            changed = [i for i, etag in listed.items() if self._etags.get(i) != etag]
            gone = [i for i in self._etags if i not in listed]
            loaded = load(changed)
            if changed or gone:
                self._apply(loaded, set(changed) | set(gone), listed)
            del loaded
            if len(changed) + len(gone) >= _TRIM_AFTER_ROWS:
                _trim()
            self._refreshed_at = time.monotonic()
            return len(changed) + len(gone)

    def _load(self, ids: list[str]) -> Loaded:
        if not ids:
            return Loaded({})
        with ThreadPoolExecutor(max_workers=min(self.workers, len(ids))) as pool:
            return Loaded(dict(zip(ids, pool.map(self.index_store.get_row, ids), strict=True)))

    def _apply(self, loaded: Loaded, drop: set[str], versions: dict[str, str]) -> None:
        """The next snapshot: the rows not in drop, then the loaded rows, then the blocks, each matrix written once
        into its final array (blocks straight from their object's matrices, one object at a time).

        drop: every id changed or gone (the loaded ones among them come back with their new rows).
        """
        matrices, ids = self._snapshot
        rows = {i: row for i, row in loaded.rows.items() if row is not None}
        block_ids = [i for b in loaded.blocks for i in b.ids]
        keep_rows = np.fromiter((row for row, i in enumerate(ids) if i not in drop), np.intp)
        new_ids = [ids[row] for row in keep_rows] + list(rows) + block_ids
        dims: dict[str, int] = {name: m.shape[1] for name, m in matrices.items()}
        for b in reversed(loaded.blocks):
            dims.update(b.dims)
        for row in rows.values():
            dims.update({name: len(v) for name, v in row.vectors.items()})
        new: dict[str, np.ndarray] = {}
        for name, dim in sorted(dims.items()):
            # a vector some rows lack (written before it existed, e.g. an older segment) is zeros for them
            out = new[name] = np.empty((len(new_ids), dim), np.float32)
            old = matrices.get(name)
            if old is not None:
                np.take(old, keep_rows, axis=0, out=out[: len(keep_rows)])
            else:
                out[: len(keep_rows)] = 0.0
            if rows:
                zero = np.zeros(dim, np.float32)
                np.stack(
                    [row.vectors.get(name, zero) for row in rows.values()],
                    out=out[len(keep_rows) : len(keep_rows) + len(rows)],
                )
        if loaded.blocks:
            assert loaded.matrices is not None, "blocks come with their matrices"
            start = len(keep_rows) + len(rows)
            for block, source in zip(loaded.blocks, loaded.matrices(loaded.blocks), strict=True):
                end = start + len(block.ids)
                for name, out in new.items():
                    m = source.get(name)
                    if m is None:
                        out[start:end] = 0.0
                    elif len(block.rows) == len(m):  # every row of the object, in order (see SegmentedView)
                        out[start:end] = m
                    else:
                        out[start:end] = m[block.rows]
                start = end
        self._snapshot = (new, new_ids)
        for i in drop:
            self.keys.pop(i, None)
            self._etags.pop(i, None)
        for i, row in rows.items():
            self.keys[i] = row.keys
            self._etags[i] = versions[i]
        for b in loaded.blocks:
            for i, keys in zip(b.ids, b.keys, strict=True):
                self.keys[i] = keys
                self._etags[i] = versions[i]

    def _centring(self, matrices: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The embeddings' mean and, per row, e.mean and |e - mean| (cached per snapshot)."""
        cached = self._centring_cache
        if cached is not None and cached[0] is matrices:
            return cached[1]
        embeddings = matrices["embedding"]
        mean = embeddings.mean(axis=0)
        dots = embeddings @ mean
        norms = np.sqrt(np.maximum(1.0 - 2.0 * dots + float(mean @ mean), 1e-12))
        self._centring_cache = (matrices, (mean, dots, norms))
        return mean, dots, norms

    def candidates(
        self, query: np.ndarray, gists: np.ndarray, k: int, key_prefix: str | None = None
    ) -> list[Candidate]:
        """Shortlist of up to 2k ids: the k best by centred embedding cosine and the k best by gist correlation.

        query: the unit embedding; gists: (8, 256) gists of the query's D4 turns (see rerank.gist_variants).
        Each candidate carries both scores and the turn of the query whose gist matched best.
        """
        matrices, ids = self._snapshot
        if not ids:
            return []
        mean, dots, norms = self._centring(matrices)
        q = query.astype(np.float32)
        centred_q = float(np.linalg.norm(q - mean)) or 1.0
        cosines = (matrices["embedding"] @ q - float(q @ mean) - dots + float(mean @ mean)) / (norms * centred_q)
        by_turn = matrices["gist"] @ gists.astype(np.float32).T  # (n, 8)
        turns = by_turn.argmax(axis=1)
        layout = by_turn[np.arange(len(ids)), turns]
        allowed = self._mask(ids, key_prefix) if key_prefix else None
        chosen: dict[int, None] = {}
        for sims in (cosines, layout):
            ranked = np.where(allowed, sims, -np.inf) if allowed is not None else sims
            m = min(k, len(ids) if allowed is None else int(allowed.sum()))
            if m <= 0:
                continue
            top = np.argpartition(-ranked, m - 1)[:m]
            for row in top[np.argsort(-ranked[top], kind="stable")]:
                chosen.setdefault(int(row), None)
        return [Candidate(ids[r], float(cosines[r]), float(layout[r]), int(turns[r])) for r in chosen]

    def _mask(self, ids: list[str], key_prefix: str) -> np.ndarray:
        """Rows with a key under the prefix; the last few prefixes' masks are kept until the snapshot changes."""
        snapshot, masks = self._masks
        if snapshot is not ids:
            masks = {}
            self._masks = (ids, masks)
        mask = masks.get(key_prefix)
        if mask is None:
            keys = self.keys
            mask = np.fromiter((any(k.startswith(key_prefix) for k in keys.get(i, ())) for i in ids), bool, len(ids))
            if len(masks) >= _MASKS_KEPT:
                masks.pop(next(iter(masks)))
            masks[key_prefix] = mask
        return mask

    def shortlist(self, query: np.ndarray, k: int, key_prefix: str | None = None) -> list[tuple[str, float]]:
        """The k ids most cosine-similar to a unit query vector, best first, with their cosine.

        key_prefix: only images with a key under this prefix (a folder, a tenant).
        """
        matrices, ids = self._snapshot
        if not ids:
            return []
        sims = matrices["embedding"] @ query.astype(np.float32)
        if key_prefix:
            mask = self._mask(ids, key_prefix)
            sims = np.where(mask, sims, -np.inf)
            k = min(k, int(mask.sum()))
            if k == 0:
                return []
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(ids[i], float(sims[i])) for i in top]
