"""Ingest: bring the index in line with what an image key holds now.

Each S3 record is handled by looking at the bucket as it is (not at what the event claims), so redelivered,
duplicated or reordered events all converge on the same index.

A key goes through four stages: read (the object's bytes and their SHA-256), decode (as small as the later stages
allow, pictrace.pipeline.decode_content, then the rerank features), embed (the model) and index (the index's reads
and writes, the only stage that depends on what came before).
IngestBatch parses an SQS batch once; its ReadAhead runs the first three stages for the next keys while the current
key's stage runs, each key on a thread of its own (the model, OpenCV and S3 I/O release the GIL), the model
single-threaded in each; the index stage stays in order on the caller's thread. On a new container the model loads
beside the first keys' reads and decodes (Ingestor.load_model_ahead). A new entry is queued for its copy check and
its details (pictrace.detailstage); an entry that goes takes its copy links with it (pictrace.copies.CopyHooks).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pictrace.copies import copy_hooks
from pictrace.detailstage import details_queue
from pictrace.embedding import Embedder, get_embedder
from pictrace.errors import InvalidImage, NotFound, ObjectTooLarge
from pictrace.index.backend import ShortlistBackend
from pictrace.index.layout import Entry, content_id, now_iso
from pictrace.index.vectors import refused_vector
from pictrace.modelfetch import ensure_model
from pictrace.pipeline import Decoded, decode_content, embed_content
from pictrace.rerank import Features, compute_features
from pictrace.settings import Settings
from pictrace.snapstart import WARM_UP
from pictrace.storage import Store, StoredObject
from pictrace.wiring import Wiring, container_wiring, wire

logger = logging.getLogger(__name__)

#: keys of a batch read, decoded or embedded ahead of the one being indexed (each holds its bytes until indexed)
READ_AHEAD = 3
#: ONNX Runtime threads per inference: keys read ahead are embedded side by side, one thread each (faster in all)
INFERENCE_THREADS = 1


@dataclass(frozen=True)
class Outcome:
    """What ingesting one key did: created, added, unchanged, removed, deleted, absent, failed or ignored; ms: the
    milliseconds of each stage that ran (read, sha256, decode, features, embed, index)."""

    key: str
    action: str
    id: str | None = None
    reason: str | None = None
    ms: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ReadKey:
    """A key as read (and, unless its entry existed when read, decoded and embedded), before the index stage.

    obj: None when the key holds nothing; refusal: why its bytes cannot be indexed (too large, not a valid image);
    absent: the index had no entry for these bytes when they were decoded; ms: the milliseconds of each stage so far.
    """

    key: str
    obj: StoredObject | None = None
    entry_id: str | None = None
    refusal: str | None = None
    decoded: Decoded | None = None
    features: Features | None = None
    embedding: np.ndarray | None = None
    absent: bool = False
    ms: dict[str, float] = field(default_factory=dict)

    def timed(self, stage: str, started: float, **changes: Any) -> ReadKey:
        """A copy with the changes and the stage's milliseconds since started (perf_counter)."""
        return replace(self, **changes, ms={**self.ms, stage: round((time.perf_counter() - started) * 1000, 2)})


class Ingestor:
    """Indexes image keys of one bucket with one embedder.

    wiring: the container's store, index store and backend (pictrace.wiring: the backend's change observer sees
    every change); else wired here from the settings, with the store and backend given.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        backend: ShortlistBackend | None = None,
        wiring: Wiring | None = None,
    ) -> None:
        self.settings = settings
        w = wiring or wire(settings, store, backend)
        self.store, self.index, self._embedder = w.store, w.index, embedder
        self.copies, self.details = copy_hooks(settings, w.store, w.index.layout), details_queue(settings)

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = get_embedder(ensure_model(self.settings), self.settings.weights, INFERENCE_THREADS)
        return self._embedder

    def load_model_ahead(self, pool: Executor) -> None:
        """On a new container, start loading the model on the pool, so that a batch's first keys are read and
        decoded meanwhile (ONNX Runtime loads it mostly outside the GIL). A head start only: a failed load is raised
        again where a key is embedded (embed), and its record fails there."""
        if self._embedder is None:
            pool.submit(lambda: self.embedder)

    def warm(self) -> dict[str, float]:
        """Create the S3 client (pictrace.snapstart: a restored copy's new client reuses the service model botocore
        read for this one, as search's does), then load the model, check it against the index's model record (an
        empty index is claimed for it, as the first ingest would) and run it once; seconds each took. A restored
        copy's first request then reads no model record."""
        started = time.perf_counter()
        self.store.client  # noqa: B018  # created now, not on a restored copy's first request
        timings = {"client": time.perf_counter() - started}
        started = time.perf_counter()
        self._checked_embedder().embed([WARM_UP])
        timings["model"] = time.perf_counter() - started
        return timings

    def renew(self) -> None:
        """After a SnapStart restore: nothing of its own to renew (its clients are the process's)."""

    def wants(self, key: str) -> bool:
        """Whether the key is one this ingestor indexes (under the images prefix)."""
        return key.startswith(self.settings.images_prefix)

    def sync_key(self, key: str, ahead: ReadAhead | None = None) -> Outcome:
        """Index what the key holds now, or drop it from the index if it holds nothing; ahead: a batch's keys read
        ahead of their turn, where this key's read is taken from if it has it."""
        if not self.wants(key):
            logger.info("ignoring %s: not under %s", key, self.settings.images_prefix)
            return Outcome(key, "ignored")
        pending = ahead.take(key) if ahead is not None else None
        loaded = pending.result() if pending is not None else self.embed(self.decode(self.read(key)))
        return self.commit(loaded)

    # --- the stages; read, decode and embed neither write nor depend on the index (read_ahead runs them early)
    def read(self, key: str) -> ReadKey:
        """The key's bytes and their SHA-256 (the entry id), or what keeps them from being indexed."""
        started = time.perf_counter()
        try:
            obj = self.store.get(key, max_bytes=self.settings.max_bytes)
        except NotFound:
            return ReadKey(key).timed("read", started)
        except ObjectTooLarge as exc:
            reason = f"image is {exc.amount}; the limit is {self.settings.max_bytes} bytes (max_bytes)"
            return ReadKey(key).timed("read", started, refusal=reason)
        loaded = ReadKey(key).timed("read", started, obj=obj)
        started = time.perf_counter()
        return loaded.timed("sha256", started, entry_id=content_id(obj.body))

    def decode(self, loaded: ReadKey) -> ReadKey:
        """The image decoded and its rerank features, unless the index has its entry already (nothing to compute)
        or the bytes are not a valid image (the refusal says why)."""
        if loaded.obj is None or loaded.refusal is not None or loaded.entry_id is None:
            return loaded
        if self.index.has_entry(loaded.entry_id):
            return loaded
        started = time.perf_counter()
        s = self.settings
        try:
            decoded = decode_content(loaded.obj.body, max_bytes=s.max_bytes, max_pixels=s.max_pixels)
        except InvalidImage as exc:
            return loaded.timed("decode", started, refusal=str(exc), absent=True)
        loaded = loaded.timed("decode", started, decoded=decoded, absent=True)
        started = time.perf_counter()
        return loaded.timed("features", started, features=compute_features(decoded.content))

    def embed(self, loaded: ReadKey) -> ReadKey:
        """The decoded content's embedding (the model), when there is a decoded image."""
        if loaded.decoded is None or loaded.embedding is not None:
            return loaded
        model, started = self._checked_embedder(), time.perf_counter()  # the model's check is not the stage's
        embedding, inner = embed_content(model, loaded.decoded.content)
        features = loaded.features and replace(loaded.features, inner=inner)  # the photo it frames
        return loaded.timed("embed", started, embedding=embedding, features=features)

    def commit(self, loaded: ReadKey) -> Outcome:
        """The index stage: bring the index in line with what was read (decoding and embedding now if the entry
        went missing since the key was read)."""
        started, before = time.perf_counter(), sum(loaded.ms.values())
        outcome, loaded = self._commit(loaded)
        self.copies.indexed(outcome.action, outcome.id)
        self.details.indexed(outcome.action, outcome.id)
        late = sum(loaded.ms.values()) - before  # stages that had to run here
        index_ms = (time.perf_counter() - started) * 1000 - late
        return replace(outcome, ms={**loaded.ms, "index": round(index_ms, 2)})

    def _commit(self, loaded: ReadKey) -> tuple[Outcome, ReadKey]:
        key, obj, entry_id = loaded.key, loaded.obj, loaded.entry_id
        if obj is None or entry_id is None:  # nothing there, or too large to read
            return (self._fail(key, loaded.refusal, None) if loaded.refusal else self.remove_key(key)), loaded
        # a new entry's write reads the key's pointer alongside (IndexStore.point_to_new); else it is read first
        new = loaded.absent and loaded.refusal is None
        if not new:
            previous = self._drop_other(key, entry_id)
            if not loaded.absent and self.index.has_entry(entry_id):
                return Outcome(key, self.index.add_key(entry_id, key, pointed=previous == entry_id), entry_id), loaded
        if loaded.refusal is None and loaded.embedding is None:
            # the entry was there when the key was read, and is gone now: decode and embed here and now
            loaded = self.embed(self.decode(loaded))
        if loaded.refusal is not None:
            return self._fail(key, loaded.refusal, obj.etag), loaded
        if loaded.decoded is None or loaded.features is None or loaded.embedding is None:
            raise RuntimeError(f"{key} was neither refused nor prepared")  # the stages above rule it out
        prepared = loaded.decoded.prepared(loaded.embedding, loaded.features)
        if (refused := refused_vector(prepared.embedding)) is not None:  # no cosine for it (nor in S3 Vectors)
            if new:
                self._drop_other(key, entry_id)
            return self._fail(key, refused, obj.etag), loaded
        meta = {
            **prepared.described(),
            "created": now_iso(),
            "weights": self.embedder.weights,
            "preprocess": self.embedder.preprocess,
            "content_box": prepared.content_box(),  # where the features' coordinates sit, in the file's pixels
        }
        entry = Entry(entry_id, (key,), prepared.embedding, prepared.features, meta)
        # the key's previous entry is dropped there (an entry made since it was found absent gets the key added)
        if new:
            action = self.index.point_to_new(entry, key)
        else:
            action = self.index.create_or_add_key(entry, key)
        logger.info("indexed %s as %s (%s)", key, entry_id, action)
        return Outcome(key, action, entry_id), loaded

    def _drop_other(self, key: str, entry_id: str) -> str | None:
        """The entry the key pointed to, after dropping the key from it if it is not entry_id."""
        previous = self.index.pointer(key)
        if previous is not None and previous != entry_id:
            self.copies.removed(previous, self.index.remove_key(key))  # the key now holds other bytes
        return previous

    def remove_key(self, key: str) -> Outcome:
        """Drop a key that no longer exists from the index."""
        previous = self.index.pointer(key)
        action = self.index.remove_key(key)
        self.copies.removed(previous, action)
        logger.info("removed %s from the index (%s)", key, action)
        return Outcome(key, "removed" if action == "absent" else action)

    def _checked_embedder(self) -> Embedder:
        """The embedder, once the index is known to hold (or is claimed for) its model: one model per index,
        another is refused (retried, then the DLQ) rather than mixed with this one's embeddings."""
        self.index.check_model(self.embedder, claim=True)
        return self.embedder

    def _fail(self, key: str, reason: str, etag: str | None) -> Outcome:
        logger.warning("cannot index %s: %s", key, reason)
        self.index.record_failure(key, reason, etag)
        return Outcome(key, "failed", reason=reason)


class ReadAhead:
    """A batch's keys, read, decoded and embedded ahead of their index stage, in the batch's order: each key's
    stages on one of READ_AHEAD threads, at most READ_AHEAD keys past the one being indexed.

    A key's read may happen before the keys ahead of it are indexed, never before its event was received: what it
    reads is what the key held at some moment after the event, as when it is read in turn. A stage's exception is
    raised where the key is taken (its record fails, and is retried); what is not taken is dropped by close.
    """

    def __init__(self, ingestor: Ingestor, keys: Iterable[str]) -> None:
        self.ingestor = ingestor
        self._todo = deque(k for k in keys if ingestor.wants(k))
        self._pending: dict[str, deque[Future[ReadKey]]] = {}
        self._in_flight = 0
        self._workers = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="ingest-ahead")
        if self._todo:
            ingestor.load_model_ahead(self._workers)
        self._fill()

    def _fill(self) -> None:
        while self._todo and self._in_flight < READ_AHEAD:
            key = self._todo.popleft()
            self._pending.setdefault(key, deque()).append(self._workers.submit(self._load, key))
            self._in_flight += 1

    def _load(self, key: str) -> ReadKey:
        return self.ingestor.embed(self.ingestor.decode(self.ingestor.read(key)))

    def take(self, key: str) -> Future[ReadKey] | None:
        """The key's next pending read (its stages' result), or None when the batch does not have it."""
        queue = self._pending.get(key)
        if not queue:
            return None
        future = queue.popleft()
        self._in_flight -= 1
        self._fill()
        return future

    def close(self) -> None:
        """Drop what was not taken and stop the threads."""
        self._todo.clear()
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


class IngestBatch:
    """An SQS batch of S3 notifications, parsed once: the keys each message names (or why it names none), read
    ahead of their turn (ReadAhead) while the batch is open."""

    def __init__(
        self, sqs_event: dict[str, Any], ingestor: Ingestor, on_outcome: Callable[[Outcome], None] | None = None
    ) -> None:
        self.ingestor = ingestor
        self.on_outcome = on_outcome
        self._named: dict[str, list[tuple[str, str]] | Exception] = {}
        for record in sqs_event.get("Records", []):
            try:
                self._named[record["messageId"]] = list(keys_of(json.loads(record["body"])))
            except (KeyError, TypeError, ValueError) as exc:  # not an S3 notification: its message fails in sync
                self._named[str(record.get("messageId"))] = exc
        bucket = ingestor.settings.bucket
        keys = [k for named in self._named.values() if isinstance(named, list) for b, k in named if b == bucket]
        self.ahead = ReadAhead(ingestor, keys)

    def sync(self, message_id: str) -> list[Outcome]:
        """Sync every key the message's notification names (ValueError if the message is not one)."""
        named = self._named.get(message_id)
        if named is None:
            raise ValueError(f"message {message_id} is not in this batch")
        if isinstance(named, Exception):
            raise ValueError(f"message {message_id} is not an S3 event notification: {named!r}")
        return sync_keys(named, self.ingestor, self.ahead)

    def handle_record(self, record: SQSRecord) -> None:
        """A batch processor's record handler: sync the message's keys, each outcome to on_outcome."""
        for outcome in self.sync(record.message_id):
            if self.on_outcome is not None:
                self.on_outcome(outcome)

    def close(self) -> None:
        """Drop what was read ahead and not taken."""
        self.ahead.close()


@contextmanager
def ingest_batch(
    sqs_event: dict[str, Any], ingestor: Ingestor | None = None, on_outcome: Callable[[Outcome], None] | None = None
) -> Iterator[IngestBatch]:
    """The batch (on the container's ingestor unless one is given), its keys read ahead while inside; on_outcome
    sees each key's outcome as handle_record syncs it. The ids queued for a copy check and details go together when
    it ends without an error (an error sends none: the redelivered keys queue them again)."""
    batch = IngestBatch(sqs_event, ingestor or get_ingestor(), on_outcome)
    try:
        with batch.ingestor.copies.queue.held(), batch.ingestor.details.held():
            yield batch
    finally:
        batch.close()


@functools.lru_cache(maxsize=1)
def get_ingestor() -> Ingestor:
    """The container's ingestor, on the container's wiring, made on first use."""
    return Ingestor(container_wiring().settings, wiring=container_wiring())


def keys_of(s3_event: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(bucket, key) of each record of an S3 event notification (test events have none)."""
    if "Records" not in s3_event:
        return []
    # S3 sends keys URL-encoded (spaces as '+'); Powertools hands them over as sent
    return [(r.s3.bucket.name, unquote_plus(r.s3.get_object.key)) for r in S3Event(s3_event).records]


def sync_keys(named: Iterable[tuple[str, str]], ingestor: Ingestor, ahead: ReadAhead | None = None) -> list[Outcome]:
    """Sync each (bucket, key) of the ingestor's bucket (others are logged and skipped); ahead: the batch's
    read-ahead."""
    outcomes = []
    for bucket, key in named:
        if bucket != ingestor.settings.bucket:
            logger.warning("ignoring %s: bucket %s is not %s", key, bucket, ingestor.settings.bucket)
            continue
        try:
            outcomes.append(ingestor.sync_key(key, ahead))
        except Exception as exc:  # transient (S3 down, throttled past retries, a bug): logged, then retried by SQS
            logger.error("ingest of %s failed, will be retried: %s: %s", key, type(exc).__name__, exc)
            raise
    return outcomes
