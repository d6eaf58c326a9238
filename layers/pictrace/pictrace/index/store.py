"""IndexStore: reads and writes the index objects in S3 (pictrace.index.layout); every update is a conditional
write, and every change is announced to an optional observer (the S3 Vectors mirror) after it is written."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from pictrace.embedding import KERAS_PREPROCESS, SSCD_FILES, Embedder
from pictrace.errors import ConflictError, ModelMismatch, NotFound
from pictrace.index.layout import Entry, Layout, details_from_bytes, key_digest, now_iso
from pictrace.storage import Store

logger = logging.getLogger(__name__)

ChangeObserver = Callable[[list[str]], object]  # called with the ids of entries that changed

_CONFLICT_RETRIES = 25


class ModelId(NamedTuple):
    """The model an index holds (embeddings of the same weights made from other input sizes do not mix either)."""

    weights: str
    dim: int
    preprocess: str


def recorded_model(record: dict[str, Any]) -> ModelId:
    """The model an index's record names. A record from before the preprocessing was recorded: what `make model`
    gave those weights then (SSCD: short edge 288; a Keras ResNet50: its own)."""
    weights = str(record.get("weights"))
    legacy = "sscd-short288" if weights in SSCD_FILES else KERAS_PREPROCESS
    return ModelId(weights, int(record.get("dim") or 0), str(record.get("preprocess") or legacy))


def model_of(embedder: Embedder) -> ModelId:
    """The model an embedder's rows belong to."""
    return ModelId(embedder.weights, embedder.dim, embedder.preprocess)


def _backoff(attempt: int) -> None:
    """Sleep a little before retrying a lost conditional write (jittered, growing, capped at 0.5 s)."""
    if attempt:
        time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))


def parallel[T](fn: Callable[[str], T], items: list[str], workers: int) -> list[T]:
    """fn over items on a thread pool, results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


@dataclass(frozen=True)
class Listing:
    """What the index holds, from listings alone: entry ids, and which image keys have a pointer or a failure."""

    ids: set[str]
    pointed: set[str]  # digests of image keys with a pointer
    failed: set[str]  # digests of image keys with a failure record

    def points(self, image_key: str) -> bool:
        """Whether the image key points to an entry."""
        return key_digest(image_key) in self.pointed

    def has_failure(self, image_key: str) -> bool:
        """Whether a failure is recorded for the image key."""
        return key_digest(image_key) in self.failed


class IndexStore:
    """The index objects in S3: entries, pointers, failures, change markers and the model record."""

    def __init__(
        self, store: Store, index_prefix: str, on_change: ChangeObserver | None = None, workers: int = 16
    ) -> None:
        self.store = store
        self.prefix = index_prefix
        self.layout = Layout(index_prefix)
        self.on_change = on_change  # called after each change with the changed ids (the S3 Vectors mirror)
        self.workers = workers
        self._model_ok: ModelId | None = None  # the model this index was checked to be built with
        self._model_lock = threading.Lock()
        self._requests: ThreadPoolExecutor | None = None  # independent requests issued together (_pool)

    # --- the model record
    def model_record(self) -> dict[str, Any] | None:
        """The index's model record; for an index from before the record, what its first entry says; else None."""
        try:
            record: dict[str, Any] = json.loads(self.store.get(self.layout.model_key).body)
            return record
        except NotFound:
            pass
        for key, _etag, _size in self.store.list(self.layout.entries_prefix):
            entry_id = self.layout.entry_id(key)
            if entry_id is None:
                continue
            try:
                entry = self.get_entry(entry_id)[0]
            except NotFound:
                continue
            weights, preprocess = entry.meta.get("weights"), entry.meta.get("preprocess")
            return {"weights": weights, "dim": int(entry.embedding.shape[0]), "preprocess": preprocess, "from": key}
        return None

    def check_model(self, embedder: Embedder, *, claim: bool = False) -> None:
        """ModelMismatch unless the index holds embeddings of this embedder's model (or none yet). claim: record the
        model for an index that has no record, so that later writers with another model are refused (ingest does)."""
        model = model_of(embedder)
        if self._model_ok == model:
            return
        with self._model_lock:  # checked once when several threads ask together (ingest's read-ahead)
            if self._model_ok != model:
                self._check_model(model, claim)

    def _check_model(self, model: ModelId, claim: bool) -> None:
        record = self.model_record()
        if record is None or (claim and "from" in record and recorded_model(record) == model):
            if claim:
                body = {**model._asdict(), "at": now_iso()}
                key = self.layout.model_key
                if not self.store.put(
                    key, json.dumps(body).encode(), if_none_match=True, content_type="application/json"
                ):
                    record = self.model_record()  # another writer recorded its model first: that one counts
        if record is not None and (held := recorded_model(record)) != model:
            where = f"s3://{self.store.bucket}/{self.prefix}"
            raise ModelMismatch(
                f"the index in {where} holds embeddings of weights {held.weights!r} ({held.dim}-d, {held.preprocess} "
                f"preprocessing) but this model is {model.weights!r} ({model.dim}-d, {model.preprocess} "
                f"preprocessing): embeddings of different models never mix. To reindex with this model, empty {where} "
                f"(e.g. `aws s3 rm --recursive {where}`) and run "
                f"`pictrace ingest s3://{self.store.bucket}/<images prefix>` (the backfill); or build the model with "
                f"`make model WEIGHTS={held.weights} PREPROCESS={held.preprocess}` and deploy with "
                f"Weights={held.weights} to keep this index"
            )
        self._model_ok = model

    # --- listings
    def entry_ids(self) -> dict[str, str]:
        """Every entry id, with its entry's ETag (one paginated LIST)."""
        listed = {}
        for key, etag, _size in self.store.list(self.layout.entries_prefix):
            entry_id = self.layout.entry_id(key)
            if entry_id is not None:
                listed[entry_id] = etag
        return listed

    def listing(self) -> Listing:
        """Entry ids and the image keys with a pointer or a failure (three LISTs, no GETs)."""
        pointed = {self.layout.digest(k) for k, _, _ in self.store.list(self.layout.pointers_prefix)}
        failed = {self.layout.digest(k) for k, _, _ in self.store.list(self.layout.failures_prefix)}
        return Listing(set(self.entry_ids()), pointed, failed)

    # --- change markers
    def changes(self) -> dict[str, str]:
        """Changed entry id -> its marker's ETag."""
        return {self.layout.change_id(k): etag for k, etag, _ in self.store.list(self.layout.changes_prefix)}

    def drop_changes(self, markers: dict[str, str]) -> int:
        """Delete the markers that still have the ETag listed (a change since keeps its marker); how many stayed."""
        return sum(not self.store.delete(self.layout.change_key(i), if_match=etag) for i, etag in markers.items())

    def mark_changed(self, entry_id: str, repair: bool = False, observed: bool = True) -> None:
        """Record that an entry changed, after the change is written. A nonce gives every marker a new ETag.

        repair: nothing changed now, but an earlier attempt may have stopped before its marker: write one only
        if there is none (a redelivered event then changes nothing). observed: False for a change the observer
        mirrors nothing of (an entry's details).
        """
        body = json.dumps({"id": entry_id, "nonce": uuid.uuid4().hex, "at": now_iso()}).encode()
        self.store.put(self.layout.change_key(entry_id), body, if_none_match=repair, content_type="application/json")
        if observed and self.on_change is not None:
            self.on_change([entry_id])

    # --- entries and pointers
    def get_entry(self, entry_id: str) -> tuple[Entry, str]:
        """The entry and its ETag; NotFound if absent."""
        obj = self.store.get(self.layout.entry_key(entry_id))
        return Entry.from_bytes(obj.body), obj.etag

    def get_details(self, entry_id: str) -> np.ndarray | None:
        """The entry's details (pictrace.details), (k, d) float16; None until the details stage wrote them."""
        try:
            return details_from_bytes(self.store.get(self.layout.details_key(entry_id)).body)
        except NotFound:
            return None

    def has_entry(self, entry_id: str) -> bool:
        """Whether the entry exists (one HEAD)."""
        return self.store.size(self.layout.entry_key(entry_id)) is not None

    def get_entries(self, ids: list[str]) -> dict[str, Entry | None]:
        """Entries read in parallel; None for those that no longer exist."""

        def one(entry_id: str) -> Entry | None:
            try:
                return self.get_entry(entry_id)[0]
            except NotFound:
                return None

        return dict(zip(ids, parallel(one, ids, self.workers), strict=True))

    def pointer(self, image_key: str) -> str | None:
        """The entry id an image key points to, if any."""
        try:
            data = json.loads(self.store.get(self.layout.pointer_key(image_key)).body)
        except NotFound:
            return None
        return str(data["id"])

    def create_or_add_key(self, entry: Entry, image_key: str) -> str:
        """Store a new entry, or add the key to the existing entry with the same id. Returns what happened."""
        if self.store.put(self.layout.entry_key(entry.id), entry.to_bytes(), if_none_match=True):
            self._created(entry.id, image_key)
            return "created"
        return self.add_key(entry.id, image_key)

    def point_to_new(self, entry: Entry, image_key: str) -> str:
        """Point the image key at this entry, found absent when its bytes were read: store it (or, if it exists by
        now, add the key to it), dropping the key from the entry it pointed to before. Returns what happened.

        The entry's conditional write and the read of the key's pointer are independent: they go together.
        """
        write = self._pool().submit(
            self.store.put, self.layout.entry_key(entry.id), entry.to_bytes(), if_none_match=True
        )
        previous = self.pointer(image_key)
        created = write.result()
        if previous is not None and previous != entry.id:
            self.remove_key(image_key)  # the key held other bytes before
        if created:
            self._created(entry.id, image_key)
            return "created"
        return self.add_key(entry.id, image_key, pointed=previous == entry.id)

    def _created(self, entry_id: str, image_key: str) -> None:
        """After a new entry is written: its change marker, the key's pointer and the end of the key's failure
        record, written together (none depends on another), then the observer."""
        marker = json.dumps({"id": entry_id, "nonce": uuid.uuid4().hex, "at": now_iso()}).encode()
        pointer = json.dumps({"key": image_key, "id": entry_id}).encode()
        pool = self._pool()
        writes = [
            pool.submit(self.store.put, self.layout.change_key(entry_id), marker, content_type="application/json"),
            pool.submit(self.store.put, self.layout.pointer_key(image_key), pointer, content_type="application/json"),
            pool.submit(self.store.delete, self.layout.failure_key(image_key)),
        ]
        for write in writes:
            write.result()
        if self.on_change is not None:
            self.on_change([entry_id])

    def _pool(self) -> ThreadPoolExecutor:
        """A small thread pool for independent requests (made on first use)."""
        if self._requests is None:
            self._requests = ThreadPoolExecutor(4, thread_name_prefix="index-io")
        return self._requests

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
            if self.store.put(self.layout.entry_key(entry_id), updated.to_bytes(), if_match=etag):
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
            self.store.delete(self.layout.pointer_key(image_key))
        self.store.delete(self.layout.failure_key(image_key))
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
            key = self.layout.entry_key(entry_id)
            if not keys:
                if self.store.delete(key, if_match=etag):
                    self.mark_changed(entry_id)
                    self.store.delete(self.layout.details_key(entry_id))  # after the entry (pictrace.detailstage)
                    return "deleted"
            elif self.store.put(key, replace(entry, keys=keys).to_bytes(), if_match=etag):
                self.mark_changed(entry_id)
                return "removed"
        raise ConflictError(f"could not remove {image_key} from entry {entry_id}: too many concurrent writers")

    def _set_pointer(self, image_key: str, entry_id: str) -> None:
        body = json.dumps({"key": image_key, "id": entry_id}).encode()
        self.store.put(self.layout.pointer_key(image_key), body, content_type="application/json")
        self.store.delete(self.layout.failure_key(image_key))

    # --- failures
    def record_failure(self, image_key: str, reason: str, etag: str | None) -> None:
        """Record why an object could not be indexed."""
        body = json.dumps({"key": image_key, "reason": reason, "etag": etag, "at": now_iso()}).encode()
        self.store.put(self.layout.failure_key(image_key), body, content_type="application/json")

    def failure(self, image_key: str) -> dict[str, Any] | None:
        """The recorded failure of an image key, if any."""
        try:
            record: dict[str, Any] = json.loads(self.store.get(self.layout.failure_key(image_key)).body)
        except NotFound:
            return None
        return record

    def record_vector_refused(self, refused: dict[str, str]) -> None:
        """Record why S3 Vectors refused each id's vector (the entry stays indexed in S3; its vector is missing)."""
        for entry_id, reason in refused.items():
            body = json.dumps({"id": entry_id, "reason": reason, "at": now_iso()}).encode()
            self.store.put(self.layout.vector_failure_key(entry_id), body, content_type="application/json")
