"""The copy check: an indexed image searched against the index with the search API's own pipeline and verdict
(SearchService, the image itself left out); the results called a copy (`match`) are its copies. Each is announced
(pictrace.events) unless the pair is marked not a copy, then recorded as a link under both images (pictrace.copies).

A check looks at the index as it is after the image was indexed: where the checker's index does not hold the image
yet, it looks at S3 again first (ingest queues an id only once its entry is written). So of two copies indexed at
once, the check of the later one sees the earlier one (an index that holds an image was read after it was indexed,
hence after every image indexed before it), in whichever container it runs, and the symmetric link lets either
check's find suffice. In a steady stream, the index read when the last batch settled already holds the next batch's
images, and their checks read nothing more. Once a batch's checks are done, the checker looks again at the images
they linked, in one refresh of the index for the whole batch (settle): a link to one that left the index meanwhile
is removed, as the leaving image's ingest would have done had it seen the link. The index sees a deletion before
the deleting ingest removes the image's links (its change marker, or S3 Vectors' delete, comes first), so a link
written after that removal is always seen; an image the index no longer holds is confirmed gone by a HEAD before its
links go. CopyBatch runs an SQS batch of ids (what ingest sends) through one checker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from pictrace.compare import Evidence, Frame, evidence
from pictrace.copies import CheckRequest, CopyLinks, Link, Pair, pair_of
from pictrace.errors import BadRequest, NotFound
from pictrace.events import CopyEvents, CopyFound, open_events
from pictrace.index.layout import Entry, now_iso
from pictrace.index.store import parallel
from pictrace.limits import MAX_TOP_K
from pictrace.rerank import as_query
from pictrace.results import Hit
from pictrace.search import SearchQuery, SearchService
from pictrace.settings import get_settings
from pictrace.wiring import wire

logger = logging.getLogger(__name__)

#: a copy found is weak when the model called it on a whole-image cosine under WEAK_COSINE while the geometric check,
#: with WEAK_KEYPOINTS keypoints or more in each image to match, found fewer than WEAK_INLIERS inliers that count: two
#: photos of one texture (grass and gravel, recoloured alike) are close to the model and agree on nothing. A weak link
#: groups only images that share a linked image (pictrace.duplicates). Chosen on the bench's copies (docs/duplicates.md)
WEAK_COSINE, WEAK_INLIERS, WEAK_KEYPOINTS = 0.55, 8, 100
#: a batch lists the marked pairs (one LIST request) while there are at most this many; past it, a HEAD per new pair
FEW_DISMISSED = 1000


@dataclass(frozen=True)
class Checked:
    """What checking one image did: action checked (copies: the ids found; announced: those new, and announced) or
    gone (it is not indexed: its links were removed); ms: how long it took."""

    id: str
    action: str
    copies: tuple[str, ...] = ()
    announced: tuple[str, ...] = ()
    ms: float = 0.0


class CopyChecker:
    """Checks indexed images for copies with a SearchService; links: where they are recorded (default: in the
    service's bucket); events: where new ones are announced (default: what the settings ask for)."""

    def __init__(
        self, service: SearchService, links: CopyLinks | None = None, events: CopyEvents | None = None
    ) -> None:
        self.service = service
        s = service.settings
        self.links = links or CopyLinks(service.store, service.layout, s.fetch_concurrency)
        self.events = events or open_events(s)
        self._uncalibrated_said = False
        self._dismissed: set[Pair] | None = None  # the marks as the batch read them (None: too many, or unread)
        self._dismissed_read = False
        self._unsettled: dict[str, set[str]] = {}  # checked id -> the ids settle looks at again for it

    def begin(self) -> None:
        """Before a batch: read the marked pairs again when a check next needs them."""
        self._dismissed_read = False

    async def check(self, entry_id: str, announce: bool = True) -> Checked:
        """Find, announce (unless told not to) and record the copies of one indexed image (see the module's
        docstring)."""
        started = time.perf_counter()
        svc = self.service
        held = (await asyncio.to_thread(svc.backend.keys, [entry_id])).get(entry_id)
        if not held:  # indexed since the index was last read
            await asyncio.to_thread(svc.backend.refresh, True)
        try:
            entry = await svc.entry(entry_id, held)  # not held: looked up in the index as read again
        except NotFound:  # deleted since it was queued: what links it had go (ingest's delete removes them too)
            await asyncio.to_thread(self.links.forget, entry_id)
            return Checked(entry_id, "gone", ms=_ms(started))
        k = svc.settings.copies_shortlist
        ask = SearchQuery(id=entry_id, matches_only=True, entry=entry)
        result = await svc.search(ask, top_k=min(k + 1, MAX_TOP_K), shortlist=k + 1)
        hits = [h for h in result.results if h.id != entry_id and h.match]
        if not self._uncalibrated_said and any(h.match is None for h in result.results):
            logger.warning("the model has no calibration here (see /health): no result is called a copy")
            self._uncalibrated_said = True
        linked = await asyncio.to_thread(self.links.of, entry_id)
        # a pair linked already (the other image's check, or this one's before) was announced and recorded then
        found = [f for h in hits if h.id not in linked and (f := await self._found(entry, h)) is not None]
        new = [f.copy_of for f, _ in found]
        announced = await asyncio.to_thread(self._not_dismissed, entry_id, new) if announce else set()
        await asyncio.to_thread(self.events.announce, [f for f, _ in found if f.copy_of in announced])
        await asyncio.to_thread(self.links.record, [link for _, link in found])
        # to look at again once the batch is done: the ones it just linked, and those linked before it no longer found
        # (a check that wrote no link and found every old one again left nothing that could point at a deleted image)
        if again := {*new, *(linked - {h.id for h in hits})}:
            self._unsettled.setdefault(entry_id, set()).update(again)
        copies = tuple(h.id for h in hits if h.id in linked) + tuple(new)
        return Checked(entry_id, "checked", copies, tuple(c for c in new if c in announced), _ms(started))

    async def _found(self, entry: Entry, hit: Hit) -> tuple[CopyFound, Link] | None:
        """A result called a copy, as announced and as recorded, with where the image sits in it (the geometric
        check's region, where it places one); None if its entry is gone since the search, or if the geometric check
        finds only a template shared around different pictures (pictrace.templates: what the search's verdict
        does where it runs the check, which a check's search leaves out)."""
        try:
            copy = await self.service.entry(hit.id, hit.keys)  # fetched by the search: cached
        except NotFound:
            return None
        found_by_check = await asyncio.to_thread(_evidence, entry, copy)
        if found_by_check is not None and found_by_check.template:
            logger.info("%s and %s share a template, not a picture: not linked", entry.id, copy.id)
            return None
        region = _region(found_by_check)
        points = (len(entry.features.keypoints), len(copy.features.keypoints))
        weak = is_weak(hit.scores.cosine, found_by_check, points)
        s = self.service.settings
        found = CopyFound(entry.id, entry.keys, copy.id, copy.keys, hit.similarity, s.bucket, region, weak)
        created = (str(entry.meta.get("created", "")), str(copy.meta.get("created", "")))
        return found, Link(entry.id, copy.id, hit.similarity, created, region, now_iso(), weak)

    def _not_dismissed(self, entry_id: str, others: list[str]) -> set[str]:
        """Those of the others whose pair with the image is not marked not a copy: by the marks the batch listed
        (once, on its first new pair) while there are at most FEW_DISMISSED of them, else one HEAD per pair."""
        if others and not self._dismissed_read:
            self._dismissed, self._dismissed_read = self.links.few_dismissed(FEW_DISMISSED), True
        if self._dismissed is not None:
            return {o for o in others if pair_of(entry_id, o) not in self._dismissed}
        dismissed = parallel(lambda o: self.links.is_dismissed(entry_id, o), others, self.links.workers)
        return {o for o, no in zip(others, dismissed, strict=True) if not no}

    def settle(self) -> None:
        """After the checks so far (a batch): links of the checked images to images no longer indexed go (those just
        linked: deleted while being linked; those linked before that a check no longer found), and every link of a
        checked image that left the index itself while its check wrote links. One forced refresh of the index for all
        of them; what it no longer holds is confirmed gone (a HEAD each) before its links go."""
        unsettled, self._unsettled = self._unsettled, {}
        if not unsettled:
            return
        ids = sorted({*unsettled, *(o for others in unsettled.values() for o in others)})
        backend = self.service.backend
        backend.refresh(force=True)
        held = backend.keys(ids)
        missing = [i for i in ids if i not in held]
        there = parallel(self.service.index_store.has_entry, missing, self.links.workers)
        gone = {i for i, present in zip(missing, there, strict=True) if not present}
        for entry_id, others in unsettled.items():
            if entry_id in gone:
                self.links.forget(entry_id)
            elif dropped := sorted(others & gone):
                self.links.unlink((entry_id, o) for o in dropped)
                logger.info("removed links of %s to %d images no longer indexed", entry_id, len(dropped))


def _evidence(entry: Entry, copy: Entry) -> Evidence | None:
    """The geometric check of the image against its copy (None for an entry without a recorded size)."""
    try:
        query = as_query(entry.features)
        return evidence(
            query.features, query.mirrored, copy.features, Frame.of_entry(entry.meta), Frame.of_entry(copy.meta)
        )
    except BadRequest:
        return None


def is_weak(cosine: float, found: Evidence | None, keypoints: tuple[int, int]) -> bool:
    """Whether a copy found on this whole-image cosine is weak: the geometric check (found; None: not run) had
    keypoints enough in both images (their counts) and found too few inliers (see WEAK_COSINE)."""
    if found is None or cosine >= WEAK_COSINE or min(keypoints) < WEAK_KEYPOINTS:
        return False
    return (0 if found.degenerate else found.inliers) < WEAK_INLIERS


def _region(found: Evidence | None) -> tuple[float, float, float, float] | None:
    """Where the image sits in its copy's pixels, by the geometric check (None where it places it nowhere, or where
    the copy sits inside the image instead: a meme, a screenshot of it; compare's original_region shows that)."""
    box = None if found is None or found.inset else found.region_box()
    return (box[0], box[1], box[2], box[3]) if box else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class CopyBatch:
    """An SQS batch of ids from the copies queue, checked one after another on one event loop."""

    def __init__(self, checker: CopyChecker, on_checked: Callable[[Checked], None] | None = None) -> None:
        self.checker = checker
        self.on_checked = on_checked
        self.loop = asyncio.new_event_loop()  # not the thread's current one (that may be another framework's)
        checker.begin()

    def handle_record(self, record: SQSRecord) -> None:
        """A batch processor's record handler: check the id the message names (ValueError if it names none)."""
        request = CheckRequest.from_body(record.json_body)
        checked = self.loop.run_until_complete(self.checker.check(request.id, request.announce))
        if self.on_checked is not None:
            self.on_checked(checked)

    def close(self) -> None:
        """Stop the batch's event loop."""
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


@contextmanager
def copy_batch(
    checker: CopyChecker | None = None, on_checked: Callable[[Checked], None] | None = None
) -> Iterator[CopyBatch]:
    """A batch on the container's checker unless one is given, settled (CopyChecker.settle) when it ends without an
    error; on_checked sees what each check did."""
    batch = CopyBatch(checker or get_checker(), on_checked)
    try:
        yield batch
        batch.checker.settle()  # an error here fails the whole batch: its checks are redone, converging
    finally:
        batch.close()


@functools.lru_cache(maxsize=1)
def get_checker() -> CopyChecker:
    """The container's checker: a SearchService on a wiring of its own, made on first use. A check searches with an
    indexed image, which matches no regions (SearchService), so its index reads and holds no details."""
    settings = replace(get_settings(), details_held=0)
    return CopyChecker(SearchService(settings, wiring=wire(settings)))
