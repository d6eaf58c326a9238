"""The search pipeline: embed the query, cosine shortlist, fetch candidates' features, rerank, answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import numpy as np

from pictrace.compare import Comparison, Frame, evidence, load_original
from pictrace.details import BY_DETAIL
from pictrace.embedding import Embedder, get_embedder
from pictrace.errors import BadRequest, NotFound, UpstreamError
from pictrace.fetch import index_fetcher
from pictrace.index.backend import ShortlistBackend
from pictrace.index.layout import Entry, Layout, details_from_bytes
from pictrace.index.rows import Candidate
from pictrace.judge import TEMPLATE_EXPLAIN, Judge, Queried
from pictrace.limits import check_entry_id, check_search_limits
from pictrace.modelfetch import ensure_model
from pictrace.pipeline import Prepared, Timer, prepare
from pictrace.regions import PER_CROP, embed_regions, regions_wanted, rejudge
from pictrace.rerank import Scores, as_query, quick_score, score, to_verify, turned_ssim
from pictrace.results import Hit, SearchResult
from pictrace.settings import Settings
from pictrace.snapstart import WARM_UP
from pictrace.storage import PresignedLinks, Store
from pictrace.verdict import Scoring
from pictrace.wiring import Wiring, wire

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchQuery:
    """A query: image bytes, or the id of an indexed image."""

    image: bytes | None = None
    id: str | None = None
    prefix: str | None = None  # only images with a key under it (a folder, a tenant)
    #: True (the copy check): only results called a copy, no others fetched; signals the fusion does not weigh are 0
    matches_only: bool = False
    #: the entry of the indexed image `id` names, as the caller has just read it (SearchService.entry): not read again
    entry: Entry | None = None


class SearchService:
    """Everything a search needs, created once per container and reused across warm invocations."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        backend: ShortlistBackend | None = None,
        scoring: Scoring | None = None,
        wiring: Wiring | None = None,
    ) -> None:
        """wiring: the container's store, index store and backend (pictrace.wiring); else wired here from the
        settings, with the store and backend given. scoring: how results are scored and judged; None: the model's,
        with the settings' fusion weights."""
        self.settings = settings
        self._scoring = scoring
        self._centre: tuple[tuple[float, ...], np.ndarray | None] | None = None
        w = wiring or wire(settings, store, backend)
        self.store = w.store
        self.index_store = w.index
        self.layout: Layout = self.index_store.layout
        # the shortlist: in memory (cosine centred on the model's reference, and gist) or Amazon S3 Vectors (cosine)
        self.backend = w.backend
        self._embedder = embedder
        self.links = PresignedLinks(self.store, settings.presign_seconds)  # the hits' links to their originals
        self.entry_links = PresignedLinks(self.store, 300)  # what the fetcher reads entries by
        self.fetcher = index_fetcher(self.entry_links.get, Entry.from_bytes, settings)  # embedding, features, keys
        self.details = index_fetcher(self.entry_links.get, details_from_bytes, settings)  # pictrace.details

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = get_embedder(ensure_model(self.settings), self.settings.weights)
        return self._embedder

    def scoring(self, embedder: Embedder) -> Scoring:
        """How this service scores and judges a model's results: as given, else the model's calibration with the
        settings' fusion weights (pictrace.verdict)."""
        return self._scoring or self.settings.scoring(embedder.weights, embedder.preprocess)

    def _judge(self, queried: Queried, matches_only: bool = False) -> Judge:
        """The query as the rerank scores it (matches_only: SearchQuery's), the model's scoring and centre."""
        scoring = self.scoring(queried.embedder)
        if self._centre is None or self._centre[0] != scoring.centre:
            array = np.asarray(scoring.centre, dtype=np.float32) if scoring.centre else None
            self._centre = (scoring.centre, array)
        return Judge(queried.vector, queried.features, scoring, self._centre[1], matches_only, queried.frame)

    def warm(self) -> dict[str, float]:
        """Load everything a first search needs now (pictrace.snapstart): the model, the index, and the features of
        as many indexed images as the feature cache holds (a restored copy fetches only the candidates beyond them);
        seconds per stage."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        self._checked_embedder().embed([WARM_UP])
        timings["model"] = time.perf_counter() - t
        t = time.perf_counter()
        self.backend.refresh(force=True)  # in memory: the whole index now rather than on the first search
        timings["index"] = time.perf_counter() - t
        t = time.perf_counter()
        loop = asyncio.new_event_loop()  # not the thread's current loop (asyncio.run would unset that: Mangum's)
        try:
            ids = islice(self.index_store.entry_ids(), self.fetcher.cache_size)
            loop.run_until_complete(self.fetcher.fetch_many([self.layout.entry_key(i) for i in ids]))
        except UpstreamError as exc:  # a head start only: searches fetch what is not cached
            logger.warning("indexed images' features not cached ahead: %s", exc)
        finally:
            loop.close()
        timings["features"] = time.perf_counter() - t
        return timings

    def renew(self) -> None:
        """After a SnapStart restore: look at S3 for what changed since, sign links with the restored credentials."""
        self.backend.expire()
        self.links.clear()
        self.entry_links.clear()

    def link(self, key: str) -> str:
        """A presigned link to an original image (valid for at least half of presign_seconds)."""
        return self.links.get(key)

    async def entry(self, entry_id: str, keys: tuple[str, ...] | None = None) -> Entry:
        """An indexed entry by id; NotFound if there is none. keys: its keys as the caller has just read them from the
        index (a hit's, or backend.keys'), not asked for again."""
        check_entry_id(entry_id)
        keys = keys or (await asyncio.to_thread(self.backend.keys, [entry_id])).get(entry_id)
        found = await self.fetcher.fetch_many([self.layout.entry_key(entry_id)]) if keys else {}
        if not keys or not found:  # not indexed (or deleted since): cached features do not count
            raise NotFound(f"no indexed image with id {entry_id}")
        entry: Entry = next(iter(found.values()))
        return replace(entry, keys=keys)  # the keys as the index has them now

    async def search(self, query: SearchQuery, top_k: int | None = None, shortlist: int | None = None) -> SearchResult:
        """The indexed images most similar to the query, best first."""
        top_k = top_k or self.settings.top_k
        shortlist = shortlist or self.settings.shortlist
        check_search_limits(top_k, shortlist)
        shortlist = max(shortlist, top_k)
        timer = Timer()
        with ThreadPoolExecutor(max_workers=2) as pool:  # OpenCV releases the GIL
            # the index looks at S3 for changes (a new container: loads it whole) while the model loads and the
            # query is decoded and embedded; the "refresh" stage is what is left to wait for after that
            refreshing = asyncio.ensure_future(asyncio.to_thread(self.backend.refresh))
            try:
                queried = await self._query(query, timer, pool)
            except BaseException:
                await asyncio.gather(refreshing, return_exceptions=True)  # the query's error is the answer
                raise
            await refreshing
            timer.lap("refresh")
            judge = self._judge(queried, query.matches_only)
            candidates = await asyncio.to_thread(self._shortlist, judge, shortlist, query.prefix)
            if query.matches_only and self.backend.centred:  # its cosines are the score's (not so S3 Vectors')
                candidates = [c for c in candidates if judge.scoring.could_be_copy(c.cosine, c.gist)]
            timer.lap("scan")
            early = self._scoring_on_arrival(judge, candidates, pool)
            fetched = await self.fetcher.fetch_many([self.layout.entry_key(c.id) for c in candidates], early.arrived)
            timer.lap("fetch")  # and the rerank of what had arrived
            hits = await asyncio.to_thread(self._rerank, judge, candidates, fetched, pool, early.scores)
            timer.lap("rerank")
            if self.settings.regions and judge.scoring.region and regions_wanted(hits):
                hits = await self._widen(judge, queried, hits, query.prefix, pool)
                timer.lap("regions")
        return SearchResult(hits[:top_k], timer.total(), queried.described, self.backend.count())

    async def _widen(
        self, judge: Judge, queried: Queried, hits: list[Hit], prefix: str | None, pool: ThreadPoolExecutor
    ) -> list[Hit]:
        """An image query's hits and its regions' (pictrace.regions) with their details' (pictrace.details), ranked
        and judged on the better score."""
        if queried.image is None:
            return hits
        gists, centre = judge.features.gists, judge.centre
        regions, got = await asyncio.gather(  # the hits' details fetched (and cached) while regions are embedded
            asyncio.to_thread(embed_regions, queried.image.bgr, queried.vector, queried.embedder, centre),
            self.details.fetch_many(asked := [self.layout.details_key(h.id) for h in hits]),
        )
        found = await asyncio.to_thread(  # each region's candidates, and the images with a detail like the query
            lambda: (
                [self.backend.candidates(v, gists, PER_CROP, prefix, False, centre) for v in regions.vectors]
                + [self.backend.by_detail(queried.vector, gists, BY_DETAIL, prefix, centre)]
            )
        )
        new = list({c.id: c for cs in found for c in cs if c.id not in {h.id for h in hits}}.values())
        fetched = await self.fetcher.fetch_many([self.layout.entry_key(c.id) for c in new])
        everything = hits + (await asyncio.to_thread(self._rerank, judge, new, fetched, pool) if new else [])
        entries = await self.fetcher.fetch_many([self.layout.entry_key(h.id) for h in everything])
        live = [(h, entries[k]) for h in everything if (k := self.layout.entry_key(h.id)) in entries]
        if not live:
            return hits
        got |= await self.details.fetch_many([k for h in new if (k := self.layout.details_key(h.id)) not in asked])
        details = {h.id: got[k] for h, _ in live if (k := self.layout.details_key(h.id)) in got}
        return await asyncio.to_thread(rejudge, live, details, regions, judge.centre, judge.scoring, pool)

    def _scoring_on_arrival(self, judge: Judge, candidates: list[Candidate], pool: ThreadPoolExecutor) -> _EarlyScores:
        """When every candidate gets the geometric check (no more of them than `verify`), each is scored in the pool
        as soon as its entry is in, while the others are still being fetched; otherwise nothing is started early
        (which ones get the check depends on every candidate's other signals)."""
        early = _EarlyScores()
        if len(candidates) > self.settings.verify:
            return early
        by_key = {self.layout.entry_key(c.id): c for c in candidates}

        def arrived(key: str, entry: Entry) -> None:
            c = by_key[key]
            args = (judge.cosine(entry), judge.features, entry.features, c.gist, c.transform, judge.fusion)
            s = None if judge.computes("ssim") else 0.0
            early.scores[key] = pool.submit(lambda: score(*args, geometry=judge.computes("geometry"), ssim_score=s))

        early.arrived = arrived
        return early

    async def _query(
        self, query: SearchQuery, timer: Timer, pool: ThreadPoolExecutor, picture: bool | None = None
    ) -> Queried:
        """The model and the query as search and compare use it: an indexed image's entry, or image bytes through the
        pipeline (with its mirror image's features). pool: where the model is loaded (a container's first search:
        while the query is read and decoded) and an image's features are made while the model embeds it. picture:
        compare's (None for search): an indexed query is described with its format and size, and with True its
        original is decoded too, for a rendering."""
        loading = pool.submit(self._checked_embedder)
        if query.id is not None:
            embedder = await asyncio.wrap_future(loading)  # an index of another model answers nothing, not even 404
            entry = query.entry if query.entry is not None else await self.entry(query.id)
            timer.lap("decode")
            timer.lap("embed")
            described: dict[str, Any] = {"id": entry.id, "keys": list(entry.keys)}
            if picture is not None:  # compare says what the indexed query is, too
                described.update({k: entry.meta[k] for k in ("format", "width", "height") if k in entry.meta})
            image = None
            if picture:
                image = await asyncio.to_thread(load_original, self.store, self.settings, entry.keys[0])
                timer.lap("decode")
            frame = Frame.of_decoded(image) if image is not None else Frame.of_entry(entry.meta)
            return Queried(embedder, entry.embedding, as_query(entry.features), described, frame, image)
        if query.image is None:
            raise BadRequest("give an image (file, url or image_base64) or the id of an indexed image")
        prepared = await asyncio.to_thread(self._prepare, query.image, timer, pool, loading.result)
        frame = Frame.of_decoded(prepared.image)
        features = prepared.query_features()
        return Queried(loading.result(), prepared.embedding, features, prepared.described(), frame, prepared.image)

    def _checked_embedder(self) -> Embedder:
        """The model, checked against the index's model record (each once per container: loaded, or fetched, on a
        container's first search)."""
        embedder = self.embedder
        self.index_store.check_model(embedder)
        return embedder

    def _prepare(
        self, data: bytes, timer: Timer, pool: ThreadPoolExecutor, embedder: Callable[[], Embedder] | None = None
    ) -> Prepared:
        """A query image through the pipeline, within the settings' limits: with its mirror image's features, made
        in the pool while the model embeds. embedder: where the model comes from once the image is decoded (default:
        the container's)."""
        s, model = self.settings, embedder or (lambda: self.embedder)
        return prepare(data, model, max_bytes=s.max_bytes, max_pixels=s.max_pixels, timer=timer, pool=pool, mirror=True)

    def _shortlist(self, judge: Judge, shortlist: int, prefix: str | None) -> list[Candidate]:
        """The backend's candidates (with their current keys); half of them by gist only when the fusion weighs gist
        (every candidate is fetched and reranked); for a query that frames a photo, that photo's too (frames)."""
        by_layout, gists = judge.fusion.gist > 0, judge.features.gists
        found = self.backend.candidates(judge.vector, gists, shortlist, prefix, by_layout, judge.centre)
        if (inner := judge.features.features.inner) is None:
            return found
        framed = self.backend.candidates(inner, gists, shortlist, prefix, False, judge.centre)
        return list({c.id: c for c in sorted([*found, *framed], key=lambda c: c.cosine)}.values())  # the best of each

    def _rerank(
        self,
        judge: Judge,
        candidates: list[Candidate],
        fetched: dict[str, Any],
        pool: ThreadPoolExecutor,
        early: Mapping[str, Future[Scores]] | None = None,
    ) -> list[Hit]:
        """The live candidates (fetched, still indexed) scored, judged and sorted by final score; early: scores
        already under way (with the geometric check) by entry key. Each candidate's cosine is the score's, from its
        entry: the same on either backend."""
        live = []
        for c in candidates:
            if (entry := fetched.get(self.layout.entry_key(c.id))) is not None and c.keys:  # else deleted since
                live.append((replace(c, cosine=judge.cosine(entry)), entry, c.keys))
        by_cosine = {c.id: rank for rank, (c, _, _) in enumerate(sorted(live, key=lambda x: -x[0].cosine), start=1)}
        keys_of = [self.layout.entry_key(c.id) for c, _, _ in live]
        if early and all(k in early for k in keys_of):
            all_scores = [early[k].result() for k in keys_of]
        else:
            all_scores = self._score_all(judge, live, pool)
        hits = []
        for (c, entry, keys), s in zip(live, all_scores, strict=True):
            judged = judge.scoring.verdict(s.final)
            match = judged.match
            if match and judge.template(s, entry):  # aligned, yet different pictures (pictrace.templates)
                s, match = replace(s, template=True, explain=TEMPLATE_EXPLAIN), False
            hits.append(Hit(c.id, keys, self.link(keys[0]), s, judged.similarity, by_cosine[c.id], match=match))
        hits.sort(key=lambda h: h.scores.final, reverse=True)
        return hits

    def _score_all(
        self, judge: Judge, live: list[tuple[Candidate, Entry, tuple[str, ...]]], pool: ThreadPoolExecutor
    ) -> list[Scores]:
        """Every live candidate's scores; geometry (ORB matching + RANSAC), the costly signal, only for the best
        `verify` candidates by the others (rerank.to_verify)."""
        weights = judge.fusion
        with_ssim = judge.computes("ssim")
        ssims = [turned_ssim(judge.features, e.features, c.transform) if with_ssim else 0.0 for c, e, _ in live]
        quick = [quick_score(c.cosine, c.gist, s, weights) for (c, _, _), s in zip(live, ssims, strict=True)]
        verified = to_verify(
            np.array([c.cosine for c, _, _ in live]),
            np.array([c.gist for c, _, _ in live]) if weights.gist > 0 else None,
            np.array(quick),
            self.settings.verify if judge.computes("geometry") else 0,
        )

        def one(i: int) -> Scores:
            c, e, _ = live[i]
            args = (c.cosine, judge.features, e.features, c.gist, c.transform, weights)
            return score(*args, geometry=i in verified, ssim_score=ssims[i])

        return list(pool.map(one, range(len(live))))

    async def compare(self, query: SearchQuery, entry_id: str, picture: bool = False) -> Comparison:
        """The query against one indexed image: the result search would give for it (scores, similarity) and the
        evidence behind it (pictrace.compare). With picture, both images are decoded for rendering (an indexed
        original is read from the bucket within max_bytes and max_pixels, like any query image)."""
        timer = Timer()
        await asyncio.to_thread(self._checked_embedder)
        target = await self.entry(entry_id)
        target_image = None
        target_frame = Frame.of_entry(target.meta)
        if picture:
            target_image = await asyncio.to_thread(load_original, self.store, self.settings, target.keys[0])
            target_frame = Frame.of_decoded(target_image)
        timer.lap("fetch")
        with ThreadPoolExecutor(max_workers=2) as pool:
            queried = await self._query(query, timer, pool, picture)
        features = queried.features
        candidate = await asyncio.to_thread(self.backend.candidate, queried.vector, features.gists, target)
        fetched = {self.layout.entry_key(target.id): target}
        with ThreadPoolExecutor(max_workers=1) as pool:
            hits = await asyncio.to_thread(self._rerank, self._judge(queried), [candidate], fetched, pool)
        if not hits:
            raise NotFound(f"no indexed image with id {entry_id}")
        found = await asyncio.to_thread(
            evidence, features.features, features.mirrored, target.features, queried.frame, target_frame
        )
        timer.lap("compare")
        return Comparison(hits[0], found, queried.described, target, queried.image, target_image, timer.total())


@dataclass
class _EarlyScores:
    """Scores started as entries arrive (SearchService._scoring_on_arrival): the fetcher's callback and the futures
    by entry key."""

    arrived: Callable[[str, Entry], None] | None = None
    scores: dict[str, Future[Scores]] = field(default_factory=dict)
