"""What a search fetches and reranks: the best `shortlist` by cosine, and the gist half only when the model's
fusion weighs gist (SSCD's does not: each candidate costs a GET and a rerank)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from typing import Any

import numpy as np
from pictrace.index.layout import Layout

from tests.conftest import PHOTOS, read


def _searched(stack: Any, shortlist: int, weight_gist: float) -> tuple[list[bool], list[Any], set[str], Any, Any]:
    """(by_layout of each backend call, the candidates it gave, the entry keys the search fetched, the result, the
    backend) for astronaut.jpg as the query."""
    from pictrace.ingest import Ingestor
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings
    from pictrace.wiring import wire

    settings = Settings.from_env(weight_gist=weight_gist)
    s3 = stack.client("s3")
    ingestor = Ingestor(settings)
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        ingestor.sync_key(f"images/{name}")
    wiring = wire(settings)
    backend = wiring.backend
    service = SearchService(settings, wiring=wiring)
    calls: list[bool] = []
    offered: list[Any] = []
    centres: list[Any] = []
    inner = backend.candidates

    def candidates(
        query: np.ndarray,
        gists: np.ndarray,
        k: int,
        prefix: str | None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Any]:
        found = inner(query, gists, k, prefix, by_layout, centre)
        centres.append(centre)
        calls.append(by_layout)
        offered.extend(found)
        return found

    backend.candidates = candidates  # type: ignore[method-assign]
    fetched: set[str] = set()
    presign = service.fetcher.presign
    service.fetcher.presign = lambda key: fetched.add(key) or presign(key)  # type: ignore[func-returns-value]
    result = asyncio.run(service.search(SearchQuery(image=read("astronaut.jpg")), top_k=shortlist, shortlist=shortlist))
    scoring = service.scoring(service.embedder)  # the shortlist is centred on the model's reference
    assert all((c is None) == (not scoring.centre) for c in centres)
    assert all(c is None or c.tolist() == list(np.float32(scoring.centre)) for c in centres)
    return calls, offered, fetched, result, functools.partial(inner, centre=centres[0])


def test_without_a_gist_weight_the_shortlist_is_the_best_by_cosine_and_only_it_is_fetched(stack: Any) -> None:
    calls, offered, fetched, result, backend = _searched(stack, shortlist=2, weight_gist=0.0)
    assert calls == [False]
    assert len(offered) == 2 and fetched == {Layout("index/").entry_key(c.id) for c in offered}
    # the two best of every image by centred cosine, as the whole index ranks them
    from pictrace.pipeline import prepare

    query = prepare(read("astronaut.jpg"), lambda: _embedder(), max_bytes=10**8, max_pixels=10**9)
    everything = backend(query.embedding, query.query_features().gists, len(PHOTOS), None, False)
    assert len(everything) == len(PHOTOS)
    assert [c.id for c in offered] == [c.id for c in sorted(everything, key=lambda c: -c.cosine)[:2]]
    assert result.results[0].id == hashlib.sha256(read("astronaut.jpg")).hexdigest()
    assert {h.id for h in result.results} == {c.id for c in offered}


def test_with_a_gist_weight_the_gist_half_is_asked_for_and_fetched(stack: Any) -> None:
    calls, offered, fetched, result, _ = _searched(stack, shortlist=6, weight_gist=0.3)
    assert calls == [True]
    assert fetched == {Layout("index/").entry_key(c.id) for c in offered}
    assert result.results[0].id == hashlib.sha256(read("astronaut.jpg")).hexdigest()


def _embedder() -> Any:
    from pictrace.embedding import get_embedder
    from pictrace.settings import get_settings

    return get_embedder(get_settings().model_dir)


def test_candidates_scored_as_their_entries_arrive_score_as_the_rerank_would(stack: Any) -> None:
    """No more candidates than `verify`: each is scored (geometry included) as soon as its entry is in; the scores
    are the ones rerank.score gives the same candidate."""
    from pictrace.index.store import IndexStore
    from pictrace.pipeline import prepare
    from pictrace.rerank import centred_cosine, score
    from pictrace.settings import get_settings
    from pictrace.storage import Store

    _, offered, _, result, _ = _searched(stack, shortlist=3, weight_gist=0.0)
    settings = get_settings()
    assert len(offered) <= settings.verify
    # as the search makes a query's features: with its mirror image's
    prepared = prepare(read("astronaut.jpg"), _embedder, max_bytes=10**8, max_pixels=10**9, mirror=True)
    features = prepared.query_features()
    index_store = IndexStore(Store(settings.bucket), settings.index_prefix)
    scoring = settings.scoring(_embedder().weights, _embedder().preprocess)
    centre = np.asarray(scoring.centre, dtype=np.float32) if scoring.centre else None
    by_id = {c.id: c for c in offered}
    assert {h.id for h in result.results} == set(by_id)
    for hit in result.results:
        c = by_id[hit.id]
        entry = index_store.get_entry(c.id)[0]
        cosine = centred_cosine(prepared.embedding, entry.embedding, centre)  # the entry's, on any backend
        expected = score(cosine, features, entry.features, c.gist, c.transform, scoring.fusion)
        assert hit.scores == expected
    assert result.results[0].scores.inliers >= 30  # the query itself: the geometric check ran


def test_a_search_for_matches_only_fetches_and_computes_only_what_a_verdict_needs(stack: Any) -> None:
    """matches_only (the copy check's): the results called a copy, with the same order, final scores and verdicts,
    without fetching the candidates that could not be one, nor the SSIM and the geometric check SSCD's fitted fusion
    gives no weight; both when the candidates are scored as they arrive (verify 16) and after the fetch (verify 1)."""
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings
    from pictrace.wiring import wire

    _searched(stack, shortlist=2, weight_gist=0.0)  # indexes the photos
    query = read("astronaut.jpg")

    def verdicts(hits: list[Any]) -> list[tuple[str, float, bool | None, float]]:
        return [(h.id, h.scores.final, h.match, h.similarity) for h in hits]

    for verify in (16, 1):
        settings = Settings.from_env(verify=verify)
        service = SearchService(settings, wiring=wire(settings))
        fusion = service.scoring(service.embedder).fusion
        assert fusion.cosine > 0 and fusion.ssim == fusion.geometry == 0
        full = asyncio.run(service.search(SearchQuery(image=query), top_k=4, shortlist=4))
        fetched: set[str] = set()
        service.fetcher.presign = functools.partial(_presign_noted, service.fetcher.presign, fetched)  # type: ignore[method-assign]
        service.fetcher.clear()  # nothing cached: every entry the search reads is fetched
        lean = asyncio.run(service.search(SearchQuery(image=query, matches_only=True), top_k=4, shortlist=4))
        matches = [h for h in full.results if h.match]
        assert len(full.results) == 4 and len(matches) == 1 and verdicts(lean.results) == verdicts(matches)
        assert fetched == {Layout("index/").entry_key(matches[0].id)}
        assert full.results[0].scores.inliers >= 30 and full.results[0].scores.ssim > 0.9
        assert all(h.scores.inliers == 0 and h.scores.ssim == 0.0 for h in lean.results)


def _presign_noted(presign: Any, noted: set[str], key: str) -> Any:
    noted.add(key)
    return presign(key)
