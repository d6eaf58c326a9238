"""Partial copies through the search service (issue 27): a photo at a quarter of the width inside a photo that is not
indexed is found first and called a copy through the query's regions; a detail cut out of a photo, through the
photo's details (made by the details handler from the queue ingest fills); a whole-image copy never pays for them."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import read

INDEXED = ["astronaut.jpg", "chelsea.webp", "rocket.bmp", "camera.tiff"]  # coffee.png stays out: the background


def _image(name: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)


def _inset() -> bytes:
    out = cv2.resize(_image("coffee.png"), (1280, 960), interpolation=cv2.INTER_AREA)
    photo = _image("astronaut.jpg")
    w = 320
    h = round(w * photo.shape[0] / photo.shape[1])
    out[520 : 520 + h, 820 : 820 + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _search(stack: Any, data: bytes, regions: bool, region_rule: bool = True, prepare: Any = None) -> Any:
    """The query searched on the stack once the indexed photos and their details are in; prepare(service): called
    before it."""
    from pictrace.embedding import get_embedder
    from pictrace.ingest import Ingestor
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings

    from infra.local import details_worker

    settings = Settings.from_env(regions=regions)
    s3, ingestor = stack.client("s3"), Ingestor(settings)
    for name in INDEXED:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        ingestor.sync_key(f"images/{name}")
    details_worker(stack).drain()  # the stack's DetailsFunction, on the ids ingest queued
    scoring = None  # the model's own
    if not region_rule:  # the model's calibration as fitted, less its region rule
        embedder = get_embedder(settings.model_dir)
        fitted = settings.scoring(embedder.weights, embedder.preprocess)
        assert fitted.calibration is not None
        scoring = replace(fitted, calibration=replace(fitted.calibration, region=None))
    service = SearchService(settings, scoring=scoring)
    if prepare is not None:
        prepare(service)
    return asyncio.run(service.search(SearchQuery(image=data)))


ASTRONAUT = hashlib.sha256(read("astronaut.jpg")).hexdigest()


def test_a_photo_small_inside_another_is_found_and_called_a_copy_by_its_region(stack: Any) -> None:
    result = _search(stack, _inset(), regions=True)
    top = result.results[0]
    assert top.id == ASTRONAUT and top.match
    assert top.scores.region_inliers >= 10 and top.scores.final == top.scores.region  # verified: ranked on it
    assert "regions" in result.timings
    assert not any(h.match for h in result.results[1:])  # the other indexed photos are not in it


def test_a_region_search_asks_once_for_details_that_are_not_there(stack: Any) -> None:
    """Details not made yet (the stage still behind) are asked for once per search, not again for the live hits."""
    asked: list[str] = []

    def without_details(service: Any) -> None:
        for name in INDEXED:
            key = service.layout.details_key(hashlib.sha256(read(name)).hexdigest())
            stack.client("s3").delete_object(Bucket=stack.bucket, Key=key)
        presign = service.details.presign
        service.details.presign = lambda key: asked.append(key) or presign(key)

    result = _search(stack, _inset(), regions=True, prepare=without_details)
    assert result.results[0].id == ASTRONAUT and "regions" in result.timings
    assert asked and len(asked) == len(set(asked)) and all("/details/" in k for k in asked)


def test_without_regions_the_whole_query_misses_the_copy(stack: Any) -> None:
    result = _search(stack, _inset(), regions=False)
    assert not any(h.match for h in result.results) and "regions" not in result.timings


def test_a_whole_image_copy_does_not_search_regions(stack: Any) -> None:
    result = _search(stack, read("astronaut.jpg"), regions=True)
    assert result.results[0].id == ASTRONAUT and result.results[0].match
    assert "regions" not in result.timings and result.results[0].scores.region == 0.0


def test_a_model_whose_calibration_has_no_region_rule_does_not_search_regions(stack: Any) -> None:
    result = _search(stack, _inset(), regions=True, region_rule=False)
    assert not any(h.match for h in result.results) and "regions" not in result.timings


SIDE = 0.316  # of each side: a tenth of the area


def _detail() -> bytes:
    """A tenth of the astronaut's area, cut off-centre (its helmet's side), upscaled as a screenshot would be."""
    photo = _image("astronaut.jpg")
    h, w = photo.shape[:2]
    side = round(h * SIDE)
    cut = photo[h // 10 : h // 10 + side, w // 2 : w // 2 + side]
    return cv2.imencode(".png", cv2.resize(cut, (3 * side, 3 * side), interpolation=cv2.INTER_CUBIC))[1].tobytes()


def test_a_detail_cut_out_of_an_indexed_photo_is_found_and_called_a_copy_by_the_photos_details(stack: Any) -> None:
    result = _search(stack, _detail(), regions=True)
    top = result.results[0]
    assert top.id == ASTRONAUT and top.match and "detail" in top.scores.explain
    assert top.scores.detail > top.scores.cosine + 0.1 and not any(h.match for h in result.results[1:])


def test_the_details_stage_writes_the_details_of_every_image_large_enough_to_have_them(stack: Any) -> None:
    from pictrace.details import DETAILS
    from pictrace.index.layout import Entry, Layout, details_from_bytes
    from pictrace.ingest import Ingestor
    from pictrace.settings import Settings

    _search(stack, _detail(), regions=True)
    s3, layout = stack.client("s3"), Layout(Settings.from_env().index_prefix)
    for name in INDEXED:  # all of them have DETAIL_MIN_SIDE pixels on their short side (a smaller one: test_regions)
        entry_id = hashlib.sha256(read(name)).hexdigest()
        entry = Entry.from_bytes(s3.get_object(Bucket=stack.bucket, Key=layout.entry_key(entry_id))["Body"].read())
        body = s3.get_object(Bucket=stack.bucket, Key=layout.details_key(entry_id))["Body"].read()
        assert details_from_bytes(body).shape == (DETAILS, len(entry.embedding))
    s3.delete_object(Bucket=stack.bucket, Key="images/astronaut.jpg")
    assert Ingestor(Settings.from_env()).sync_key("images/astronaut.jpg").action == "deleted"  # its details go too
    assert "Contents" not in s3.list_objects_v2(Bucket=stack.bucket, Prefix=layout.details_key(ASTRONAUT))


def test_details_backfill_queues_every_indexed_image_and_the_stage_makes_the_missing_details(stack: Any) -> None:
    """An index built before the details stage: `pictrace details-backfill` queues every image on the local stack's
    details queue (found from its S3 endpoint), and the details handler makes the details that are missing."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pictrace.index.layout import Layout
    from pictrace.settings import Settings

    from infra.local import details_worker

    _search(stack, _detail(), regions=True)
    s3, layout = stack.client("s3"), Layout(Settings.from_env().index_prefix)
    ids = [hashlib.sha256(read(name)).hexdigest() for name in INDEXED]
    for entry_id in ids[:2]:
        s3.delete_object(Bucket=stack.bucket, Key=layout.details_key(entry_id))
    env = {k: v for k, v in os.environ.items() if k != "PICTRACE_DETAILS_QUEUE_URL"}
    command = [str(Path(sys.executable).parent / "pictrace"), "details-backfill", "--json", "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["queued"] == len(INDEXED), done.stderr
    worker = details_worker(stack)
    worker.drain()
    assert worker.processed == len(INDEXED) and worker.failed == 0
    for entry_id in ids:
        s3.head_object(Bucket=stack.bucket, Key=layout.details_key(entry_id))


@pytest.mark.parametrize("by_detail", [True, False])
def test_a_detail_that_no_shortlist_brings_is_found_through_the_details_the_index_holds(
    stack: Any, by_detail: bool
) -> None:
    """At scale a detail's whole embedding ranks its photo far down (on the bench, a 5 % crop of a photo: 63rd of
    1,000), beyond the shortlist and every region's candidates: here they are made to miss it. The details the
    index holds bring it back; without them, it is lost."""

    def hide(service: Any) -> None:
        candidates, details = service.backend.candidates, service.backend.by_detail
        service.backend.candidates = lambda *a, **k: [c for c in candidates(*a, **k) if c.id != ASTRONAUT]
        service.backend.by_detail = details if by_detail else lambda *a, **k: []

    result = _search(stack, _detail(), regions=True, prepare=hide)
    if by_detail:
        top = result.results[0]
        assert top.id == ASTRONAUT and top.match and "detail" in top.scores.explain
    else:
        assert ASTRONAUT not in {h.id for h in result.results}


def test_the_index_holds_each_images_details_from_the_stages_change_marker_and_from_the_segments(stack: Any) -> None:
    """The details stage marks the entry changed after writing its details: a warm reader's row takes them, and
    compaction folds them into the segments a cold reader loads (pictrace.index.memory.EmbeddingIndex.by_detail)."""
    from pictrace.detailstage import DetailStage
    from pictrace.embedding import get_embedder
    from pictrace.pipeline import prepare
    from pictrace.settings import Settings
    from pictrace.wiring import compact, wire

    settings = Settings.from_env()
    _search(stack, read("astronaut.jpg"), regions=True)  # the photos indexed and their details made
    embedder = get_embedder(settings.model_dir)
    query = prepare(_detail(), lambda: embedder, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels)
    gists = np.zeros((8, 256), np.float32)

    def best(prefix: str | None = None) -> list[str]:
        return [c.id for c in wire(settings).backend.by_detail(query.embedding, gists, 1, prefix)]

    assert best() == [ASTRONAUT]  # every entry read with its details (no compaction yet)
    assert best("images/chelsea") != [ASTRONAUT]
    wiring = wire(settings)
    wiring.store.delete(wiring.index.layout.details_key(ASTRONAUT))
    compact(wiring)  # the segments hold the details made, zeros for the astronaut's
    warm = wire(settings).backend
    assert [c.id for c in warm.by_detail(query.embedding, gists, 1, None)] != [ASTRONAUT]
    assert DetailStage(settings, wiring.store, wiring.index).detail(ASTRONAUT).action == "detailed"
    warm.refresh(force=True)  # the stage's change marker: the row read again, with its details
    assert [c.id for c in warm.by_detail(query.embedding, gists, 1, None)] == [ASTRONAUT]
    compact(wiring)
    assert not wiring.index.changes() and best() == [ASTRONAUT]  # folded into the segments
