"""Copies within the collection: the copy links found between indexed images, the pairs marked not a copy, the
queue of ids waiting for their copy check, and what ingest does for them (CopyHooks).

A link is written under both of its images (pictrace.index.layout names the keys), each write a conditional create:
redelivered, duplicated or reordered checks converge on the same links, the first check to find a pair writes it
and later ones find it there. Either image's check finding the other is enough (the relation is symmetric), so two
copies indexed together find each other as long as the later check sees the earlier image. A link goes when either
image leaves the index (forget: ingest's delete path, or a later check that meets it); readers leave out links to
images that are not indexed. A dismissed pair is kept by the two content ids: it outlives their links and any
reindexing.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from pictrace.errors import NotFound
from pictrace.index.layout import Layout, now_iso
from pictrace.index.store import parallel
from pictrace.limits import is_entry_id
from pictrace.queues import QUEUED_AFTER, SqsQueue
from pictrace.settings import Settings
from pictrace.storage import Store

logger = logging.getLogger(__name__)

Pair = tuple[str, str]  # two entry ids, the lower first


def pair_of(a: str, b: str) -> Pair:
    """The pair of two ids, the lower first (the same for either order)."""
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True)
class Link:
    """Two indexed images found to be copies: `a`'s check found `b` with this similarity (percent, the search
    verdict's); created: when each was indexed (a's, b's); region: where a sits in b's pixels (x0, y0, x1, y1) as the
    geometric check placed it, where it could; weak: the model alone called it, against the geometric check
    (pictrace.copycheck.is_weak), so it joins the two images in a group only where they share a linked image
    (pictrace.duplicates)."""

    a: str
    b: str
    similarity: float
    created: tuple[str, str] = ("", "")
    region: tuple[float, float, float, float] | None = None
    at: str = ""
    weak: bool = False

    @property
    def pair(self) -> Pair:
        """The two ids, the lower first."""
        return pair_of(self.a, self.b)

    def created_of(self, entry_id: str) -> str:
        """When one of the two images was indexed (ISO 8601)."""
        return self.created[0] if entry_id == self.a else self.created[1]

    def to_bytes(self) -> bytes:
        """The link as stored (JSON)."""
        body = {"a": self.a, "b": self.b, "similarity": self.similarity, "created": list(self.created)}
        body |= {"region": list(self.region) if self.region else None, "at": self.at, "weak": self.weak}
        return json.dumps(body).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Link:
        """Parse what to_bytes wrote."""
        d: dict[str, Any] = json.loads(data)
        created = tuple(d.get("created") or ("", ""))
        region = d.get("region")
        return cls(
            a=str(d["a"]),
            b=str(d["b"]),
            similarity=float(d["similarity"]),
            created=(str(created[0]), str(created[1])),
            region=(float(region[0]), float(region[1]), float(region[2]), float(region[3])) if region else None,
            at=str(d.get("at", "")),
            weak=d.get("weak") is True,  # links recorded before weak links were told apart: not weak
        )


class CopyLinks:
    """The copy links and dismissed pairs of one index, in its bucket. Links read by `all` are kept by ETag, so a
    warm reader GETs only what changed since."""

    def __init__(self, store: Store, layout: Layout, workers: int = 16) -> None:
        self.store = store
        self.layout = layout
        self.workers = workers
        self._read: dict[str, tuple[str, Link]] = {}  # link key -> (ETag, link) as last read

    # --- links
    def of(self, entry_id: str) -> set[str]:
        """The ids an entry is linked to (one LIST)."""
        found = set()
        for key, _etag, _size in self.store.list(self.layout.copies_of_prefix(entry_id)):
            pair = self.layout.copy_pair(key)
            if pair is not None and pair[0] == entry_id:
                found.add(pair[1])
        return found

    def record(self, links: Sequence[Link]) -> None:
        """Write each link under both of its images, under the other image (b) first and under the one whose check
        found it (a) once that is done: a check that sees a link under its image (`of`) finds it complete, and one
        that stopped between the two writes is redone in full by the redelivered check. A link already there is
        left as it was (its first finding)."""
        for under_b in (True, False):
            self._create({self.layout.copy_key(*((x.b, x.a) if under_b else (x.a, x.b))): x.to_bytes() for x in links})

    def _create(self, bodies: dict[str, bytes]) -> None:
        """Each key written with its body unless it exists (conditional creates, in parallel)."""
        put = functools.partial(self.store.put, if_none_match=True, content_type="application/json")
        parallel(lambda k: put(k, bodies[k]), list(bodies), self.workers)

    def unlink(self, pairs: Iterable[Pair]) -> None:
        """Remove the links of these pairs (both directions; a missing one is no error)."""
        keys = [self.layout.copy_key(x, y) for a, b in pairs for x, y in ((a, b), (b, a))]
        parallel(self.store.delete, keys, self.workers)

    def forget(self, entry_id: str) -> int:
        """Remove every link of an entry that left the index; how many pairs it was in."""
        others = self.of(entry_id)
        self.unlink((entry_id, other) for other in others)
        if others:
            logger.info("removed %d copy links of %s", len(others), entry_id)
        return len(others)

    def all(self) -> list[Link]:
        """Every link, once per pair (one paginated LIST; GETs of the links new or changed since the last call)."""
        listed: dict[Pair, dict[str, str]] = {}  # pair -> key -> ETag
        for key, etag, _size in self.store.list(self.layout.copies_prefix):
            ids = self.layout.copy_pair(key)
            if ids is not None:
                listed.setdefault(pair_of(*ids), {})[key] = etag
        chosen = {}  # pair -> (key, ETag): the lower id's link, or the other where only that one was written
        for (lo, hi), keys in listed.items():
            key = self.layout.copy_key(lo, hi)
            key = key if key in keys else self.layout.copy_key(hi, lo)
            chosen[key] = keys[key]
        stale = [k for k, etag in chosen.items() if self._read.get(k, ("", None))[0] != etag]
        for key, got in zip(stale, parallel(self._get, stale, self.workers), strict=True):
            if got is not None:
                self._read[key] = got
        self._read = {k: v for k, v in self._read.items() if k in chosen}
        return [v[1] for v in self._read.values()]

    def _get(self, key: str) -> tuple[str, Link] | None:
        try:
            obj = self.store.get(key)
        except NotFound:  # removed since it was listed
            return None
        return obj.etag, Link.from_bytes(obj.body)

    # --- dismissed pairs
    def dismiss(self, a: str, b: str, note: str = "") -> bool:
        """Mark two images as not copies of each other; False if they were marked already (the mark stays)."""
        body = json.dumps({"ids": list(pair_of(a, b)), "note": note, "at": now_iso()}).encode()
        key = self.layout.dismissed_key(a, b)
        return self.store.put(key, body, if_none_match=True, content_type="application/json")

    def dismissed(self) -> set[Pair]:
        """Every pair marked not a copy (one paginated LIST: the pair is in the key's name)."""
        return set(self._dismissed_pairs())

    def few_dismissed(self, at_most: int) -> set[Pair] | None:
        """The pairs marked not a copy if there are at most `at_most` marks (up to 1,000: one LIST request), else
        None (read no further than the mark after the last)."""
        found = set()
        for n, pair in enumerate(self._dismissed_pairs()):
            if n >= at_most:
                return None
            found.add(pair)
        return found

    def _dismissed_pairs(self) -> Iterator[Pair]:
        for key, _etag, _size in self.store.list(self.layout.dismissed_prefix):
            pair = self.layout.dismissed_pair(key)
            if pair is not None:
                yield pair

    def is_dismissed(self, a: str, b: str) -> bool:
        """Whether the pair is marked not a copy (one HEAD)."""
        return self.store.size(self.layout.dismissed_key(a, b)) is not None


@dataclass(frozen=True)
class CheckRequest:
    """A copies-queue message: the id to check, and whether new copies are announced (a rebuild may ask not)."""

    id: str
    announce: bool = True

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"id": self.id, **({} if self.announce else {"announce": False})})

    @classmethod
    def from_body(cls, body: Any) -> CheckRequest:
        """The request a message body makes (ValueError if it names no image id)."""
        entry_id = body.get("id") if isinstance(body, dict) else None
        if not is_entry_id(entry_id):
            raise ValueError(f"not a copies-queue message (an image id as {{'id': ...}}): {str(body)[:200]}")
        return cls(entry_id, body.get("announce") is not False)


class CheckQueue(Protocol):
    """Where ids wait for their copy check."""

    def enqueue(self, ids: Sequence[str], announce: bool = True) -> int:
        """Queue the ids for a check (announce: whether new copies are announced); how many were queued."""
        ...

    def held(self) -> AbstractContextManager[None]:
        """Inside, ids queued are sent together when it ends without an error (pictrace.queues.SqsQueue.held)."""
        ...


class NoCheckQueue:
    """No copy check (no queue configured): nothing is queued."""

    def enqueue(self, ids: Sequence[str], announce: bool = True) -> int:
        """See CheckQueue."""
        return 0

    def held(self) -> AbstractContextManager[None]:
        """See CheckQueue."""
        return nullcontext()


class SqsCheckQueue:
    """The stack's copies queue: one message per id, {"id": ...} (CheckRequest). client: the SQS client to send
    with; else one made on first use (pictrace.queues)."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.queue = SqsQueue(url, client, "the copies queue")

    @property
    def client(self) -> Any:
        """The SQS client."""
        return self.queue.client

    def enqueue(self, ids: Sequence[str], announce: bool = True) -> int:
        """See CheckQueue; UpstreamError if SQS refuses any."""
        return self.queue.send([CheckRequest(i, announce).to_json() for i in ids])

    def held(self) -> AbstractContextManager[None]:
        """See CheckQueue."""
        return self.queue.held()


def open_check_queue(settings: Settings) -> CheckQueue:
    """The queue the settings name (copies_queue_url), or none: the one place that chooses."""
    return SqsCheckQueue(settings.copies_queue_url) if settings.copies_queue_url else NoCheckQueue()


class CopyHooks:
    """What ingest does for copies: queue a new entry for its check, and remove an entry's links when it leaves."""

    def __init__(self, links: CopyLinks, queue: CheckQueue) -> None:
        self.links = links
        self.queue = queue

    def indexed(self, action: str, entry_id: str | None) -> None:
        """After a key was indexed: queue its entry for a check when it is new (or its bytes came again)."""
        if entry_id is not None and action in QUEUED_AFTER:
            self.queue.enqueue([entry_id])

    def removed(self, entry_id: str | None, action: str) -> None:
        """After a key was dropped from the entry it pointed to: if that deleted the entry, its links go too."""
        if entry_id is not None and action == "deleted":
            self.links.forget(entry_id)


def copy_hooks(settings: Settings, store: Store, layout: Layout) -> CopyHooks:
    """Ingest's hooks for an index: its links, and the check queue the settings name."""
    return CopyHooks(CopyLinks(store, layout, settings.fetch_concurrency), open_check_queue(settings))
