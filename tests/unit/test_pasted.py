"""Pasted pictures (pictrace.pasted, issue 27): a photo pasted whole into another is found by the rectangle its edges
draw, wherever it sits (against the picture's edge too); a photo with nothing pasted in, or only straight lines that
close no rectangle, has none; and the query's regions include the rectangle."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from pictrace import pasted, regions

from tests import drawn


def _paste(photo: str, background: str, box: tuple[int, int, int, int]) -> np.ndarray:
    out = cv2.resize(drawn.photo(background), (1280, 960), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = cv2.resize(drawn.photo(photo), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def _near(found: tuple[int, int, int, int], truth: tuple[int, int, int, int], slack: int = 16) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(found, truth, strict=True))


@pytest.mark.parametrize(
    ("photo", "background", "box"),
    [
        ("astronaut.jpg", "coffee.png", (700, 500, 1020, 820)),  # a quarter of the width, inside
        ("coffee.png", "chelsea.webp", (200, 120, 712, 504)),  # 40 %, inside
        ("chelsea.webp", "coffee.png", (0, 300, 420, 620)),  # against the picture's left edge
        ("rocket.bmp", "astronaut.jpg", (860, 0, 1200, 400)),  # against its top edge
    ],
)
def test_a_pasted_photo_is_found_where_it_sits(photo: str, background: str, box: tuple[int, int, int, int]) -> None:
    found = pasted.pasted_boxes(_paste(photo, background, box))
    assert found and len(found) <= pasted.MOST
    assert all(0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 960 for x0, y0, x1, y1 in found)
    assert any(_near(f, box) for f in found), (found, box)


@pytest.mark.parametrize("name", ["astronaut.jpg", "coffee.png", "chelsea.webp", "grass.jpg", "gravel.jpg"])
def test_a_photo_with_nothing_pasted_in_has_no_rectangle(name: str) -> None:
    img = cv2.resize(drawn.photo(name), (1280, 960), interpolation=cv2.INTER_AREA)
    assert pasted.pasted_boxes(img) == []


def test_straight_lines_that_close_no_rectangle_are_not_a_picture() -> None:
    img = cv2.resize(drawn.photo("grass.jpg"), (1280, 960), interpolation=cv2.INTER_AREA)
    img[480:] = (200, 120, 40)  # a horizon across the whole picture: one side inside
    img[:, 600:604] = (0, 0, 0)  # a pole from top to bottom crossing it
    assert pasted.pasted_boxes(img) == []


def test_a_plain_or_tiny_picture_has_none() -> None:
    assert pasted.pasted_boxes(np.full((600, 800, 3), 128, np.uint8)) == []
    assert pasted.pasted_boxes(np.zeros((10, 12, 3), np.uint8)) == []
    assert pasted.pasted_boxes(np.zeros((300, 400), np.uint8)) == []  # greyscale: no paste, no error


def test_the_query_regions_include_the_pasted_rectangle(embedder: Any) -> None:
    query = _paste("astronaut.jpg", "coffee.png", (760, 560, 1080, 880))
    found = regions.embed_regions(query, embedder.embed([query])[0], embedder, None)
    grid = regions.region_boxes(*query.shape[:2])
    assert found.boxes[: len(grid)] == grid
    extra = found.boxes[len(grid) :]
    assert len(extra) == len(found.vectors) - len(grid) >= 1
    assert any(_near(b, (760, 560, 1080, 880)) for b in extra)
    _, crop = found.best(embedder.embed([drawn.photo("astronaut.jpg")]), None)
    assert found.boxes[int(crop[0])] in extra  # the rectangle sees the astronaut best
