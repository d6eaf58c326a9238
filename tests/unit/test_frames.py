"""Framed photos (pictrace.frames, issue 28): a photo inside a drawn window is found where it lies, a photo on its own
frames nothing, and a pair in which a picture frames a photo is as similar as what is framed, at most."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from pictrace.frames import SLACK, framed_box, framed_cosine, framed_photo
from pictrace.index.layout import Entry
from pictrace.pipeline import embed_content
from pictrace.rerank import compute_features, content_box

from tests.conftest import PHOTOS
from tests.drawn import in_window, photo


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize("name", PHOTOS)
def test_a_photo_in_a_drawn_window_is_framed_where_it_lies(name: str) -> None:
    window, where = in_window(photo(name))
    box = framed_box(window)
    assert box is not None and iou(box, where) >= 0.9, (box, where)


@pytest.mark.parametrize("name", PHOTOS)
def test_a_photo_its_crop_and_its_copy_with_text_over_it_frame_nothing(name: str) -> None:
    bgr = photo(name)
    h, w = bgr.shape[:2]
    captioned = bgr.copy()
    cv2.putText(captioned, "SALE -50%", (w // 10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 4)
    for picture in (bgr, bgr[h // 5 :, : w * 3 // 4], captioned):
        assert framed_box(picture) is None


def test_a_photo_on_a_plain_backdrop_is_framed_but_a_uniform_border_is_trimmed_first() -> None:
    """Padding is not a frame: the pipeline trims a uniform border (rerank.content_box) before looking for one."""
    bgr = photo("chelsea.webp")
    padded = cv2.copyMakeBorder(bgr, 40, 40, 60, 60, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    assert framed_box(padded) is not None
    top, bottom, left, right = content_box(padded)
    assert framed_box(padded[top:bottom, left:right]) is None


def test_framed_photo_is_the_image_inside_the_box() -> None:
    window, (x0, y0, x1, y1) = in_window(photo("coffee.png"))
    inner = framed_photo(window)
    # the box reaches a pixel or two into the margin (a pixel of the detection's 3 x 3 neighbourhoods)
    assert inner is not None and abs(inner.shape[1] - (x1 - x0)) <= 8 and abs(inner.shape[0] - (y1 - y0)) <= 8
    assert framed_photo(photo("coffee.png")) is None


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def test_a_pair_is_as_similar_as_what_is_framed() -> None:
    frame, photo_a, photo_b = unit([1, 0, 0, 0]), unit([0, 1, 0, 0]), unit([0, 0, 1, 0])
    shot_a, shot_b = unit(list(frame + photo_a)), unit(list(frame + photo_b))  # one window, different photos
    # neither frames a photo: the cosine as it is
    assert framed_cosine(0.5, (shot_a, None), (shot_b, None), None) == 0.5
    # both frame one, and what they frame differs: the frame's share of the cosine goes
    assert framed_cosine(0.5, (shot_a, photo_a), (shot_b, photo_b), None) == pytest.approx(SLACK)
    # a screenshot and the photo it shows: the photo matches what is framed better than the whole screenshot does
    assert framed_cosine(0.7, (shot_a, photo_a), (photo_a, None), None) == pytest.approx(1.0)
    assert framed_cosine(0.05, (photo_a, None), (shot_a, photo_a), None) == pytest.approx(1.0)
    # one frames a photo, the other is another photo: capped at what is framed (+ SLACK)
    assert framed_cosine(0.6, (photo_b, None), (shot_a, photo_a), None) == pytest.approx(SLACK)
    # what is framed a little less alike than the whole (a product shot's copy): the whole's cosine, up to SLACK more
    near = unit(list(photo_a + 0.6 * photo_b))  # 0.86 alike
    assert framed_cosine(0.99, (photo_a, photo_a), (near, near), None) == pytest.approx(float(near @ photo_a) + SLACK)


def test_embed_content_embeds_what_is_framed_only_when_something_is(embedder: object) -> None:
    window, _ = in_window(photo("rocket.bmp"))
    whole, inner = embed_content(embedder, window)  # type: ignore[arg-type]
    alone = embedder.embed([framed_photo(window)])[0]  # type: ignore[attr-defined]
    assert inner is not None and float(inner @ alone) > 0.999 and float(whole @ inner) < 0.9
    assert embed_content(embedder, photo("rocket.bmp"))[1] is None  # type: ignore[arg-type]


def test_an_entry_keeps_what_its_image_frames() -> None:
    features, embedding, inner = compute_features(photo("astronaut.jpg")), unit([1, 2, 3, 4]), unit([4, 3, 2, 1])
    plain = Entry("a" * 64, ("images/a.png",), embedding, features)
    assert Entry.from_bytes(plain.to_bytes()).features.inner is None  # none written (entries before frames): none
    framed = Entry.from_bytes(replace(plain, features=replace(features, inner=inner)).to_bytes())
    assert framed.features.inner is not None and np.allclose(framed.features.inner, inner)


def test_a_mostly_flat_photo_in_a_window_is_framed() -> None:
    """A plain backdrop with little on it (here a green ruled by a few thin lines) has few textured pixels: the photo's
    edge and its lines fill 5-10 % of its box, which is still a framed photo (two screenshots of the bench's were not
    framed while MIN_FILL was 0.1, and linked two different photos)."""
    plain = np.full((600, 600, 3), (120, 170, 60), np.uint8)
    for v in range(0, 600, 200):
        cv2.line(plain, (v, 0), (v, 599), (90, 140, 40), 1)
        cv2.line(plain, (0, v), (599, v), (90, 140, 40), 1)
    window, where = in_window(plain)
    box = framed_box(window)
    assert box is not None and iou(box, where) >= 0.9, (box, where)
