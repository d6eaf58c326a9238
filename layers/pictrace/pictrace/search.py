"""The search pipeline: embed the query, cosine shortlist, fetch candidates' features, rerank, answer."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pictrace.compare import Comparison, Frame, evidence, load_original
from pictrace.embedding import Embedder, get_embedder
from pictrace.errors import BadRequest, NotFound
from pictrace.fetch import ObjectFetcher
from pictrace.images import decode_image
from pictrace.index import Candidate, EmbeddingIndex, Entry, IndexStore
from pictrace.modelfetch import ensure_model
from pictrace.rerank import (
    D4,
    QueryFeatures,
    Scores,
    describe_query,
    gist,
    gist_variants,
    quick_score,
    score,
    to_verify,
    trim_border,
    turned_ssim,
    with_mirror,
)
from pictrace.segments import SegmentedView, SegmentStore
from pictrace.settings import Settings
from pictrace.snapstart import WARM_UP
from pictrace.storage import Store
from pictrace.vectors import VectorIndex
from pictrace.verdict import calibration_for, verdict

logger = logging.getLogger(__name__)

MAX_TOP_K = 100
MAX_SHORTLIST = 500


@dataclass(frozen=True)
class Query:
    """A query: image bytes, or the id of an indexed image."""

    image: bytes | None = None
    id: str | None = None
    prefix: str | None = None  # only images with a key under it (a folder, a tenant)


@dataclass
class Hit:
    """One result."""

    id: str
    keys: tuple[str, ...]
    url: str | None
    scores: Scores
    similarity: float  # percent: the calibrated probability of being a copy (pictrace.verdict)
    rank_cosine: int
    match: bool | None = None  # a copy of the query? None where the model has no calibration


@dataclass
class SearchResult:
    """Results best first, with the time each stage took (ms)."""

    results: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    indexed: int | None = 0  # None: the index lives in S3 Vectors (not counted per search)


class SearchService:
    """Everything a search needs, created once per container and reused across warm invocations."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        vectors: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        # index_backend s3vectors: the shortlist is Amazon S3 Vectors' QueryVectors (cosine only, no gist)
        self.vectors = vectors or (
            VectorIndex(settings.vector_bucket, settings.vector_index)
            if settings.index_backend == "s3vectors"
            else None
        )
        self.store = store or Store(settings.bucket)
        self.index_store = IndexStore(self.store, settings.index_prefix)
        segments = SegmentedView(SegmentStore(self.index_store, settings.fetch_concurrency))
        self.index = EmbeddingIndex(
            self.index_store, settings.refresh_seconds, settings.fetch_concurrency, segments=segments
        )
        self._embedder = embedder
        self.fetcher = ObjectFetcher(
            lambda key: self.store.presign_get(key, 300),
            Entry.from_bytes,
            concurrency=settings.fetch_concurrency,
            cache_size=settings.feature_cache,
            timeout=settings.url_timeout,
        )

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use."""
        if self._embedder is None:
            self._embedder = get_embedder(ensure_model(self.settings), self.settings.weights)
        return self._embedder

    def warm(self) -> dict[str, float]:
        """Load everything a first search needs (model, index) now; seconds per stage (pictrace.snapstart)."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        embedder = self.embedder
        embedder.embed([WARM_UP])
        self.index_store.check_model(embedder.weights, embedder.dim)
        timings["model"] = time.perf_counter() - t
        if self.vectors is None:  # the in-memory backend: the whole index now rather than on the first search
            t = time.perf_counter()
            self.index.refresh(force=True)
            timings["index"] = time.perf_counter() - t
        return timings

    def renew(self) -> None:
        """After a SnapStart restore: the next search looks at S3 for what changed since the snapshot."""
        self.index.expire()

    def link(self, key: str) -> str:
        """A presigned link to an original image."""
        return self.store.presign_get(key, self.settings.presign_seconds)

    async def entry(self, entry_id: str) -> Entry:
        """An indexed entry by id; NotFound if there is none."""
        _check_id(entry_id)
        if self.vectors is not None:
            keys = (await asyncio.to_thread(self.vectors.get, [entry_id])).get(entry_id)
        else:
            await asyncio.to_thread(self.index.refresh)
            keys = self.index.keys.get(entry_id)
        found = await self.fetcher.fetch_many([self.index_store.entry_key(entry_id)]) if keys else {}
        if not keys or not found:  # not indexed (or deleted since): cached features do not count
            raise NotFound(f"no indexed image with id {entry_id}")
        entry: Entry = next(iter(found.values()))
        return replace(entry, keys=keys)  # the keys as the index has them now

    async def search(self, query: Query, top_k: int | None = None, shortlist: int | None = None) -> SearchResult:
        """The indexed images most similar to the query, best first."""
        top_k = top_k or self.settings.top_k
        shortlist = shortlist or self.settings.shortlist
        if not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K}")
        if not 1 <= shortlist <= MAX_SHORTLIST:
            raise BadRequest(f"shortlist must be between 1 and {MAX_SHORTLIST}")
        shortlist = max(shortlist, top_k)
        timings: dict[str, float] = {}
        started = t = time.perf_counter()
        embedder = self.embedder
        await asyncio.to_thread(self.index_store.check_model, embedder.weights, embedder.dim)  # once per container

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[stage] = round((now - t) * 1000, 2)
            t = now

        described: dict[str, Any]
        bgr: np.ndarray | None = None
        if query.id is not None:
            entry = await self.entry(query.id)
            vector = entry.embedding
            features = QueryFeatures(entry.features, gist_variants(entry.features.thumb))
            described = {"id": entry.id, "keys": list(entry.keys)}
            lap("decode")
            lap("embed")
        elif query.image is not None:
            image = await asyncio.to_thread(
                decode_image, query.image, max_bytes=self.settings.max_bytes, max_pixels=self.settings.max_pixels
            )
            described = {
                "format": image.format,
                "width": image.width,
                "height": image.height,
                "bytes": len(query.image),
            }
            bgr = trim_border(image.bgr)
            lap("decode")
            vector, features = await asyncio.to_thread(self._embed_and_describe, bgr)
            lap("embed")
        else:
            raise BadRequest("give an image (file, url or image_base64) or the id of an indexed image")
        candidates, keys_of = await asyncio.to_thread(self._shortlist, vector, features, shortlist, query.prefix, lap)
        keys = [self.index_store.entry_key(c.id) for c in candidates]
        fetched = await self.fetcher.fetch_many(keys)
        lap("fetch")
        if bgr is not None and any(D4[c.transform][1] for c in candidates):
            features = await asyncio.to_thread(with_mirror, features, bgr)
        hits = await asyncio.to_thread(self._rerank, features, candidates, fetched, keys_of)
        lap("rerank")
        timings["total"] = round((time.perf_counter() - started) * 1000, 2)
        return SearchResult(hits[:top_k], timings, described, None if self.vectors is not None else len(self.index))

    def _shortlist(
        self, vector: np.ndarray, features: QueryFeatures, shortlist: int, prefix: str | None, lap: Any
    ) -> tuple[list[Candidate], dict[str, tuple[str, ...]]]:
        """Candidates and their current keys: from the in-memory index, or from S3 Vectors' QueryVectors."""
        if self.vectors is not None:
            lap("refresh")
            neighbours = self.vectors.query(vector, shortlist, prefix)
            lap("scan")
            return [Candidate(n.id, n.cosine, 0.0, 0) for n in neighbours], {n.id: n.keys for n in neighbours}
        self.index.refresh()
        lap("refresh")
        candidates = self.index.candidates(vector, features.gists, (shortlist + 1) // 2, key_prefix=prefix)
        lap("scan")
        return candidates, self.index.keys

    def _embed_and_describe(self, bgr: np.ndarray) -> tuple[np.ndarray, QueryFeatures]:
        return self.embedder.embed([bgr])[0], describe_query(bgr)

    def _rerank(
        self,
        features: QueryFeatures,
        candidates: list[Candidate],
        fetched: dict[str, Any],
        keys_of: dict[str, tuple[str, ...]],
    ) -> list[Hit]:
        weights = self.settings.fusion(self.embedder.weights)
        calibration = calibration_for(self.embedder.weights)
        by_cosine = {c.id: rank for rank, c in enumerate(sorted(candidates, key=lambda c: -c.cosine), start=1)}
        live = []
        for c in candidates:
            entry = fetched.get(self.index_store.entry_key(c.id))
            keys = keys_of.get(c.id, ())
            if entry is not None and keys:  # else deleted since the scan
                live.append((c, entry, keys))
        # geometry (ORB matching + RANSAC) is the costly signal: only for the best candidates by the others
        ssims = [turned_ssim(features, e.features, c.transform) for c, e, _ in live]
        quick = [quick_score(c.cosine, c.gist, s, weights) for (c, _, _), s in zip(live, ssims, strict=True)]
        verified = to_verify(
            np.array([c.cosine for c, _, _ in live]),
            np.array([c.gist for c, _, _ in live]),
            np.array(quick),
            self.settings.verify,
        )

        def one(i: int) -> Scores:
            c, entry, _ = live[i]
            return score(
                c.cosine,
                features,
                entry.features,
                c.gist,
                c.transform,
                weights,
                geometry=i in verified,
                ssim_score=ssims[i],
            )

        with ThreadPoolExecutor(max_workers=2) as pool:  # OpenCV releases the GIL
            all_scores = list(pool.map(one, range(len(live))))
        hits = []
        for (c, _, keys), s in zip(live, all_scores, strict=True):
            judged = verdict(s.final, calibration)
            hits.append(Hit(c.id, keys, self.link(keys[0]), s, judged.similarity, by_cosine[c.id], match=judged.match))
        hits.sort(key=lambda h: h.scores.final, reverse=True)
        return hits

    async def compare(self, query: Query, entry_id: str, picture: bool = False) -> Comparison:
        """The query against one indexed image: the result search would give for it (scores, similarity) and the
        evidence behind it (pictrace.compare). With picture, both images are decoded for rendering (an indexed
        original is read from the bucket within max_bytes and max_pixels, like any query image)."""
        timings: dict[str, float] = {}
        started = t = time.perf_counter()
        embedder = self.embedder
        await asyncio.to_thread(self.index_store.check_model, embedder.weights, embedder.dim)  # once per container

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[stage] = round((now - t) * 1000, 2)
            t = now

        target = await self.entry(entry_id)
        target_image = query_image = None
        target_frame = Frame.of_entry(target.meta)
        if picture:
            target_image = await asyncio.to_thread(load_original, self.store, self.settings, target.keys[0])
            target_frame = Frame.of_decoded(target_image)
        lap("fetch")
        described: dict[str, Any]
        if query.id is not None:
            source = await self.entry(query.id)
            vector = source.embedding
            features = QueryFeatures(source.features, gist_variants(source.features.thumb))
            described = {"id": source.id, "keys": list(source.keys)}
            described.update({k: source.meta[k] for k in ("format", "width", "height") if k in source.meta})
            query_frame = Frame.of_entry(source.meta)
            if picture:
                query_image = await asyncio.to_thread(load_original, self.store, self.settings, source.keys[0])
                query_frame = Frame.of_decoded(query_image)
            lap("decode")
        elif query.image is not None:
            query_image = await asyncio.to_thread(
                decode_image, query.image, max_bytes=self.settings.max_bytes, max_pixels=self.settings.max_pixels
            )
            described = {
                "format": query_image.format,
                "width": query_image.width,
                "height": query_image.height,
                "bytes": len(query.image),
            }
            query_frame = Frame.of_decoded(query_image)
            bgr = trim_border(query_image.bgr)
            lap("decode")
            vector, features = await asyncio.to_thread(self._embed_and_describe, bgr)
            features = await asyncio.to_thread(with_mirror, features, bgr)
            lap("embed")
        else:
            raise BadRequest("give an image (file, url or image_base64) or the id of an indexed image")
        if self.vectors is not None:  # as QueryVectors scores it: raw cosine, no layout turn
            candidate = Candidate(target.id, float(np.dot(vector, target.embedding)), 0.0, 0)
        else:
            await asyncio.to_thread(self.index.refresh)
            cosine = float(np.dot(vector, target.embedding))
            if len(self.index):  # centred on the index mean, as the shortlist computes it
                mean = self.index._centring(self.index.matrices)[0]
                a, b = vector.astype(np.float32) - mean, target.embedding.astype(np.float32) - mean
                cosine = float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))
            by_turn = features.gists @ gist(target.features.thumb)
            turn = int(np.argmax(by_turn))
            candidate = Candidate(target.id, cosine, float(by_turn[turn]), turn)
        fetched = {self.index_store.entry_key(target.id): target}
        hits = await asyncio.to_thread(self._rerank, features, [candidate], fetched, {target.id: target.keys})
        if not hits:
            raise NotFound(f"no indexed image with id {entry_id}")
        found = await asyncio.to_thread(
            evidence, features.features, features.mirrored, target.features, query_frame, target_frame
        )
        lap("compare")
        timings["total"] = round((time.perf_counter() - started) * 1000, 2)
        return Comparison(hits[0], found, described, target, query_image, target_image, timings)


def _check_id(entry_id: str) -> None:
    if len(entry_id) != 64 or any(c not in "0123456789abcdef" for c in entry_id):
        raise BadRequest("id must be the 64-character lowercase hex SHA-256 of an indexed image")
