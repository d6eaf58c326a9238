"""Partial copies through the search service (issue 27): a photo at a quarter of the width inside a photo that is not
indexed is found first and called a copy through the query's regions; a whole-image copy never pays for them."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

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


def _search(stack: Any, data: bytes, regions: bool, region_rule: bool = True) -> Any:
    from pictrace.embedding import get_embedder
    from pictrace.ingest import Ingestor
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings

    settings = Settings.from_env(regions=regions)
    s3, ingestor = stack.client("s3"), Ingestor(settings)
    for name in INDEXED:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        ingestor.sync_key(f"images/{name}")
    scoring = None  # the model's own
    if not region_rule:  # the model's calibration as fitted, less its region rule
        embedder = get_embedder(settings.model_dir)
        fitted = settings.scoring(embedder.weights, embedder.preprocess)
        assert fitted.calibration is not None
        scoring = replace(fitted, calibration=replace(fitted.calibration, region=None))
    return asyncio.run(SearchService(settings, scoring=scoring).search(SearchQuery(image=data)))


ASTRONAUT = hashlib.sha256(read("astronaut.jpg")).hexdigest()


def test_a_photo_small_inside_another_is_found_and_called_a_copy_by_its_region(stack: Any) -> None:
    result = _search(stack, _inset(), regions=True)
    top = result.results[0]
    assert top.id == ASTRONAUT and top.match
    assert top.scores.region_inliers >= 10 and top.scores.final == top.scores.region  # verified: ranked on it
    assert "regions" in result.timings
    assert not any(h.match for h in result.results[1:])  # the other indexed photos are not in it


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
