"""Ingest: bring the index in line with what an image key holds now.

Each S3 record is handled by looking at the bucket as it is (not at what the event claims), so redelivered,
duplicated or reordered events all converge on the same index.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from pictrace.embedding import Embedder, get_embedder
from pictrace.errors import InvalidImage, NotFound
from pictrace.index.backend import ShortlistBackend, open_backend
from pictrace.index.layout import Entry, now_iso
from pictrace.index.store import IndexStore
from pictrace.index.vectors import refused_vector
from pictrace.modelfetch import ensure_model
from pictrace.pipeline import prepare
from pictrace.settings import Settings, get_settings
from pictrace.snapstart import WARM_UP
from pictrace.storage import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What ingesting one key did: created, added, unchanged, removed, deleted, absent, failed or ignored."""

    key: str
    action: str
    id: str | None = None
    reason: str | None = None


class Ingestor:
    """Indexes image keys of one bucket with one embedder.

    backend: the index backend to keep in step (its change observer sees every change); by default the one the
    settings name (pictrace.index.backend.open_backend).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        backend: ShortlistBackend | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.bucket)
        backend = backend or open_backend(settings, self.store)
        self.index = IndexStore(self.store, settings.index_prefix, on_change=backend.on_change)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = get_embedder(ensure_model(self.settings), self.settings.weights)
        return self._embedder

    def warm(self) -> dict[str, float]:
        """Load the model and run it once (pictrace.snapstart); seconds it took."""
        started = time.perf_counter()
        self.embedder.embed([WARM_UP])
        return {"model": time.perf_counter() - started}

    def renew(self) -> None:
        """After a SnapStart restore: nothing of its own to renew (its clients are the process's)."""

    def sync_key(self, key: str) -> Outcome:
        """Index what the key holds now, or drop it from the index if it holds nothing."""
        if not key.startswith(self.settings.images_prefix):
            logger.info("ignoring %s: not under %s", key, self.settings.images_prefix)
            return Outcome(key, "ignored")
        size = self.store.size(key)
        if size is None:
            return self.remove_key(key)
        if size > self.settings.max_bytes:
            reason = f"image is {size} bytes; the limit is {self.settings.max_bytes} bytes (max_bytes)"
            return self._fail(key, reason, None)
        try:
            obj = self.store.get(key)
        except NotFound:
            return self.remove_key(key)
        entry_id = hashlib.sha256(obj.body).hexdigest()
        previous = self.index.pointer(key)
        if previous is not None and previous != entry_id:
            self.index.remove_key(key)  # the key now holds other bytes
        if self.index.has_entry(entry_id):
            action = self.index.add_key(entry_id, key, pointed=previous == entry_id)
            return Outcome(key, action, entry_id)
        try:
            prepared = prepare(
                obj.body, self._checked_embedder, max_bytes=self.settings.max_bytes, max_pixels=self.settings.max_pixels
            )
        except InvalidImage as exc:
            return self._fail(key, str(exc), obj.etag)
        if (refused := refused_vector(prepared.embedding)) is not None:  # no cosine for it (nor in S3 Vectors)
            return self._fail(key, refused, obj.etag)
        meta = {
            **prepared.described(),
            "created": now_iso(),
            "weights": self.embedder.weights,
            "content_box": prepared.content_box(),  # where the features' coordinates sit, in the file's pixels
        }
        entry = Entry(entry_id, (key,), prepared.embedding, prepared.features, meta)
        action = self.index.create_or_add_key(entry, key)
        logger.info("indexed %s as %s (%s)", key, entry_id, action)
        return Outcome(key, action, entry_id)

    def remove_key(self, key: str) -> Outcome:
        """Drop a key that no longer exists from the index."""
        action = self.index.remove_key(key)
        logger.info("removed %s from the index (%s)", key, action)
        return Outcome(key, "removed" if action == "absent" else action)

    def _checked_embedder(self) -> Embedder:
        """The embedder, once the index is known to hold (or is claimed for) its model: one model per index,
        another is refused (retried, then the DLQ) rather than mixed with this one's embeddings."""
        self.index.check_model(self.embedder.weights, self.embedder.dim, claim=True)
        return self.embedder

    def _fail(self, key: str, reason: str, etag: str | None) -> Outcome:
        logger.warning("cannot index %s: %s", key, reason)
        self.index.record_failure(key, reason, etag)
        return Outcome(key, "failed", reason=reason)


_ingestor: Ingestor | None = None


def get_ingestor() -> Ingestor:
    """The container's ingestor, built from the environment's settings on first use."""
    global _ingestor
    if _ingestor is None:
        _ingestor = Ingestor(get_settings())
    return _ingestor


def keys_of(s3_event: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(bucket, key) of each record of an S3 event notification (test events have none)."""
    if "Records" not in s3_event:
        return []
    # S3 sends keys URL-encoded (spaces as '+'); Powertools hands them over as sent
    return [(r.s3.bucket.name, unquote_plus(r.s3.get_object.key)) for r in S3Event(s3_event).records]


def handle_s3_notification(s3_event: dict[str, Any], ingestor: Ingestor | None = None) -> list[Outcome]:
    """Sync every key an S3 event notification names. Invalid images are recorded, not raised."""
    ingestor = ingestor or get_ingestor()
    outcomes = []
    for bucket, key in keys_of(s3_event):
        if bucket != ingestor.settings.bucket:
            logger.warning("ignoring %s: bucket %s is not %s", key, bucket, ingestor.settings.bucket)
            continue
        try:
            outcomes.append(ingestor.sync_key(key))
        except Exception as exc:  # transient (S3 down, throttled past retries, a bug): logged, then retried by SQS
            logger.error("ingest of %s failed, will be retried: %s: %s", key, type(exc).__name__, exc)
            raise
    return outcomes
