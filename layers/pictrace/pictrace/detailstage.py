"""The details stage: each new image's details (pictrace.details) made after it is indexed, off ingest's path.

Ingest sends each new entry's id to the details queue (DetailsQueue, on the same outcomes as the copy check); the
stack's DetailsFunction takes them in batches (DetailsBatch): it reads the image's bytes under one of the entry's
keys, embeds its windows with the model and writes them beside the entry (Layout.details_key). An image is searchable
as soon as ingest indexed it; its details serve searches once written (a search fetches them when it needs them).

Redelivered or duplicated ids find the details written and do nothing. The details are a function of the bytes (the
entry's id), so any write of them is right; one written while its entry was being deleted is deleted again here,
after the write, when the entry is gone by then (ingest deletes the entry first, then its details).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pictrace.details import embed_details, wants_details
from pictrace.embedding import Embedder, get_embedder
from pictrace.errors import InvalidImage, NotFound, ObjectTooLarge
from pictrace.index.layout import Entry, content_id, details_to_bytes
from pictrace.index.store import IndexStore
from pictrace.limits import is_entry_id
from pictrace.modelfetch import ensure_model
from pictrace.queues import QUEUED_AFTER, SqsQueue
from pictrace.settings import Settings
from pictrace.storage import Store
from pictrace.wiring import container_wiring

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detailed:
    """What the stage did for one id: detailed (its details written), present (written before), none (too small to
    have any: an empty set written; or no decodable image under its keys: logged, nothing written), skipped (its
    model gets no details, or regions are off) or gone (not indexed any more); ms: how long it took."""

    id: str
    action: str
    ms: float = 0.0


class DetailsQueue:
    """Where ingest sends new ids for their details: the settings' details queue, or nowhere (none configured)."""

    def __init__(self, queue: SqsQueue | None) -> None:
        self.queue = queue

    def indexed(self, action: str, entry_id: str | None) -> None:
        """After a key was indexed: queue its entry's id when it is new (or its bytes came again)."""
        if self.queue is not None and entry_id is not None and action in QUEUED_AFTER:
            self.queue.send([json.dumps({"id": entry_id})])

    def enqueue(self, ids: Sequence[str]) -> int:
        """Queue ids for their details (a backfill); how many were queued (0 without a queue)."""
        return self.queue.send([json.dumps({"id": i}) for i in ids]) if self.queue is not None else 0

    def held(self) -> AbstractContextManager[None]:
        """Inside, ids queued are sent together when it ends without an error (pictrace.queues.SqsQueue.held)."""
        return self.queue.held() if self.queue is not None else nullcontext()


def details_queue(settings: Settings) -> DetailsQueue:
    """The details queue the settings name (details_queue_url), or none: the one place that chooses."""
    url = settings.details_queue_url
    return DetailsQueue(SqsQueue(url, name="the details queue") if url else None)


def requested_id(body: str) -> str:
    """The image id a details-queue message names (ValueError if it names none)."""
    try:
        entry_id = json.loads(body).get("id")
    except (ValueError, AttributeError):
        entry_id = None
    if not is_entry_id(entry_id):
        raise ValueError(f"not a details-queue message (an image id as {{'id': ...}}): {body[:200]}")
    return entry_id


class DetailStage:
    """Makes and writes the details of indexed images with one model (loaded on first need)."""

    def __init__(self, settings: Settings, store: Store, index: IndexStore, embedder: Embedder | None = None) -> None:
        self.settings, self.store, self.index = settings, store, index
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """The model, loaded on first use and checked against the index's (another model's details are refused)."""
        if self._embedder is None:
            embedder = get_embedder(ensure_model(self.settings), self.settings.weights)
            self.index.check_model(embedder)
            self._embedder = embedder
        return self._embedder

    def detail(self, entry_id: str) -> Detailed:
        """Make and write the entry's details unless written already; what was done."""
        started = time.perf_counter()
        action = self._detail(entry_id)
        logger.info("details of %s: %s", entry_id, action)
        return Detailed(entry_id, action, round((time.perf_counter() - started) * 1000, 2))

    def _detail(self, entry_id: str) -> str:
        key = self.index.layout.details_key(entry_id)
        if self.store.size(key) is not None:  # written before: its change marker too, unless it stopped in between
            self.index.mark_changed(entry_id, repair=True, observed=False)
            return "present"
        try:
            entry, _etag = self.index.get_entry(entry_id)
        except NotFound:
            return "gone"
        scoring = self.settings.scoring(entry.meta.get("weights", ""), entry.meta.get("preprocess", ""))
        if not wants_details(scoring, self.settings.regions):
            return "skipped"
        data = self._bytes(entry)
        if data is None:
            return "gone" if not self.index.has_entry(entry_id) else "none"
        s = self.settings
        try:
            details = embed_details(self.embedder, data, max_bytes=s.max_bytes, max_pixels=s.max_pixels)
        except InvalidImage as exc:  # decoded once by ingest; this large, it can pass the decode's budget of time
            logger.warning("%s gets no details: %s", entry_id, exc)
            return "none"
        if details is None:  # too small to have any: written empty, so neither this stage nor searches ask again
            details = np.zeros((0, len(entry.embedding)), np.float16)
        self.store.put(key, details_to_bytes(details))
        if not self.index.has_entry(entry_id):  # deleted meanwhile: its deletion may have come before this write
            self.store.delete(key)
            return "gone"
        if not len(details):
            return "none"
        self.index.mark_changed(entry_id, observed=False)  # the index's row takes them (pictrace.index.rows.read_row)
        return "detailed"

    def _bytes(self, entry: Entry) -> bytes | None:
        """The image's bytes, read under the first of its keys that still holds them (None: none does)."""
        for key in entry.keys:
            try:
                body = self.store.get(key, max_bytes=self.settings.max_bytes).body
            except (NotFound, ObjectTooLarge):
                continue
            if content_id(body) == entry.id:
                return body
        logger.warning("no key of %s holds its bytes any more", entry.id)
        return None


class DetailsBatch:
    """An SQS batch of details-queue messages through one stage; on_detailed sees what each one did."""

    def __init__(self, stage: DetailStage, on_detailed: Callable[[Detailed], None] | None = None) -> None:
        self.stage = stage
        self.on_detailed = on_detailed

    def handle_record(self, record: SQSRecord) -> None:
        """A batch processor's record handler: the details of the id the message names."""
        detailed = self.stage.detail(requested_id(record.body))
        if self.on_detailed is not None:
            self.on_detailed(detailed)


@contextmanager
def details_batch(
    stage: DetailStage | None = None, on_detailed: Callable[[Detailed], None] | None = None
) -> Iterator[DetailsBatch]:
    """A batch on the container's stage unless one is given; on_detailed sees what each id's details did."""
    yield DetailsBatch(stage or get_stage(), on_detailed)


@functools.lru_cache(maxsize=1)
def get_stage() -> DetailStage:
    """The container's stage, on the container's wiring, made on first use."""
    wiring = container_wiring()
    return DetailStage(wiring.settings, wiring.store, wiring.index)
