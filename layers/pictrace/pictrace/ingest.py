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
from pictrace.images import decode_image
from pictrace.index import Entry, IndexStore, now_iso
from pictrace.modelfetch import ensure_model
from pictrace.rerank import compute_features, content_box
from pictrace.settings import Settings, get_settings
from pictrace.snapstart import WARM_UP
from pictrace.storage import Store
from pictrace.vectors import refused_vector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What ingesting one key did: created, added, unchanged, removed, deleted, absent, failed or ignored."""

    key: str
    action: str
    id: str | None = None
    reason: str | None = None


class Ingestor:
    """Indexes image keys of one bucket with one embedder."""

    def __init__(self, settings: Settings, store: Store | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.bucket)
        self.index = IndexStore(self.store, settings.index_prefix)
        if settings.index_backend == "s3vectors":
            from pictrace.vectors import VectorIndex, mirror

            vectors = VectorIndex(settings.vector_bucket, settings.vector_index)
            self.index.on_change = lambda entry_id: mirror(vectors, self.index, [entry_id])
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
        if self._exists(entry_id):
            action = self.index.add_key(entry_id, key, pointed=previous == entry_id)
            return Outcome(key, action, entry_id)
        try:
            image = decode_image(obj.body, max_bytes=self.settings.max_bytes, max_pixels=self.settings.max_pixels)
        except InvalidImage as exc:
            return self._fail(key, str(exc), obj.etag)
        top, bottom, left, right = content_box(image.bgr)  # uniform padding is not content (queries are trimmed too)
        content = image.bgr[top:bottom, left:right]
        sx, sy = image.width / image.bgr.shape[1], image.height / image.bgr.shape[0]  # decoded smaller if large
        # one model per index: refused (retried, then the DLQ) rather than mixed with another model's embeddings
        self.index.check_model(self.embedder.weights, self.embedder.dim, claim=True)
        embedding = self.embedder.embed([content])[0]
        if (refused := refused_vector(embedding)) is not None:  # no cosine for it (S3 Vectors refuses it too)
            return self._fail(key, refused, obj.etag)
        meta = {
            "format": image.format,
            "width": image.width,
            "height": image.height,
            "bytes": len(obj.body),
            "created": now_iso(),
            "weights": self.embedder.weights,
            # the content's box (x0, y0, x1, y1) in the file's pixels: where the features' coordinates sit
            "content_box": [round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)],
        }
        entry = Entry(entry_id, (key,), embedding, compute_features(content), meta)
        action = self.index.create_or_add_key(entry, key)
        logger.info("indexed %s as %s (%s)", key, entry_id, action)
        return Outcome(key, action, entry_id)

    def remove_key(self, key: str) -> Outcome:
        """Drop a key that no longer exists from the index."""
        action = self.index.remove_key(key)
        logger.info("removed %s from the index (%s)", key, action)
        return Outcome(key, "removed" if action == "absent" else action)

    def _exists(self, entry_id: str) -> bool:
        return self.store.size(self.index.entry_key(entry_id)) is not None

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
