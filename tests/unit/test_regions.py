"""Partial copies (pictrace.regions, issue 27): a photo small inside another picture is found by the query's regions,
verified inside the region that matched, and called a copy; an unrelated picture is not; and a region match never
takes first place from the whole query's best without beating it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest
from pictrace import details, regions
from pictrace.details import DETAIL_PENALTY
from pictrace.index.layout import Entry
from pictrace.rerank import Scores, compute_features
from pictrace.results import Hit
from pictrace.verdict import Calibration, RegionRule, Scoring, Weights, calibration_for

from tests.conftest import DATA


def _read(name: str) -> np.ndarray:
    img = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _inset(photo: np.ndarray, background: np.ndarray, width: float) -> np.ndarray:
    out = cv2.resize(background, (1280, 960), interpolation=cv2.INTER_AREA)
    w = round(1280 * width)
    h = round(w * photo.shape[0] / photo.shape[1])
    out[500 : 500 + h, 700 : 700 + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    return out


def test_boxes_cover_the_image_at_two_scales() -> None:
    boxes = regions.region_boxes(900, 1200)
    assert len(boxes) == 25
    assert all(0 <= x0 < x1 <= 1200 and 0 <= y0 < y1 <= 900 for x0, y0, x1, y1 in boxes)
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes} == {(600, 450), (400, 300)}
    assert (0, 0, 600, 450) in boxes and (600, 450, 1200, 900) in boxes  # the quadrants are among the halves


def test_a_photo_at_a_quarter_of_the_width_is_found_by_a_region_and_verified(embedder: Any) -> None:
    astronaut, coffee, camera = _read("astronaut.jpg"), _read("coffee.png"), _read("camera.tiff")
    query = _inset(astronaut, coffee, 0.25)
    indexed = embedder.embed([astronaut, camera])
    whole = embedder.embed([query])[0] @ indexed.T
    found = regions.embed_regions(query, embedder.embed([query])[0], embedder, None)
    best, crop = found.best(indexed, None)
    assert best[0] > whole[0] + 0.2  # the region sees the astronaut far better than the whole query does
    assert best[0] > best[1] + 0.2
    x0, y0, x1, y1 = found.boxes[int(crop[0])]
    assert x0 <= 700 + 160 and y0 <= 500 + 120 and x1 >= 700 + 160 and y1 >= 500 + 120  # it holds the inset's centre
    inliers = found.inliers(int(crop[0]), compute_features(astronaut))
    assert inliers >= RULE.verified[0][1] and RULE.is_copy(float(best[0]), inliers)
    chance = found.inliers(int(crop[1]), compute_features(camera))
    assert chance < regions.REGION_INLIERS and not RULE.is_copy(float(best[1]), chance)


def _hit(name: str, final: float) -> Hit:
    scores = Scores(cosine=final, ssim=0.0, orb=0.0, orb_matches=0, final=final)
    return Hit(name, (f"{name}.jpg",), None, scores, 0.0, 1)


RULE = RegionRule(match_cosine=0.6, verified=((0.3, 35),), detail_cosine=0.55)
CALIBRATED = Scoring(
    Weights(1, 0, 0, 0), (), Calibration("sscd", "p", Weights(1, 0, 0, 0), (), 30, -12, 0.4, 1, 1, region=RULE)
)


class _Regions(regions.Regions):
    """Regions with given best cosines per candidate and given inliers (no model, no ORB)."""

    def __init__(self, cosines: list[float], inliers: list[int]) -> None:
        crops = [np.zeros((8, 8, 3), np.uint8)] * len(cosines)
        super().__init__(np.array([1.0, 0.0], np.float32), crops, [(0, 0, 8, 8)] * len(cosines), np.eye(2), np.eye(2))
        self._cosines, self._inliers = cosines, inliers

    def best(self, embeddings: np.ndarray, centre: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self._cosines), np.arange(len(self._cosines))

    def inliers(self, crop: int, candidate: Any) -> int:
        return self._inliers[crop]


def _detail(cosine: float) -> np.ndarray:
    """Details whose best cosine with _Regions' query ([1, 0]) is this, and another far off."""
    return np.array([[cosine, np.sqrt(1 - cosine**2)], [0.0, 1.0]], np.float16)


def _rejudge(
    hits: list[Hit],
    cosines: list[float],
    inliers: list[int],
    scoring: Scoring = CALIBRATED,
    details: list[float | None] | None = None,
) -> list[Hit]:
    empty = compute_features(np.zeros((32, 32, 3), np.uint8))
    live = [(h, Entry(h.id, h.keys, np.zeros(2, np.float32), empty)) for h in hits]
    made = {h.id: _detail(d) for h, d in zip(hits, details or [None] * len(hits), strict=True) if d is not None}
    with ThreadPoolExecutor(1) as pool:
        return regions.rejudge(live, made, _Regions(cosines, inliers), None, scoring, pool)


def test_a_verified_region_match_is_ranked_first_and_called_a_copy() -> None:
    out = _rejudge([_hit("whole", 0.30), _hit("inset", 0.10)], [0.32, 0.38], [0, 40])
    assert [h.id for h in out] == ["inset", "whole"]
    assert out[0].match and out[0].scores.final == pytest.approx(0.38) and out[0].scores.region_inliers == 40
    assert out[0].rank_cosine == 2 and not out[1].match


def test_an_unverified_region_match_must_beat_the_whole_query_by_the_penalty() -> None:
    # 0.38 less the penalty is below the whole query's 0.30: the cosine's first stays first, nothing is a copy
    out = _rejudge([_hit("whole", 0.30), _hit("other", 0.10)], [0.30, 0.38], [0, 3])
    assert [h.id for h in out] == ["whole", "other"] and not any(h.match for h in out)
    assert out[1].scores.final == pytest.approx(0.38 - regions.UNVERIFIED_PENALTY) and out[1].scores.region == 0.38
    out = _rejudge([_hit("whole", 0.20), _hit("other", 0.10)], [0.20, 0.20 + regions.UNVERIFIED_PENALTY + 0.05], [0, 3])
    assert out[0].id == "other" and not out[0].match  # beaten by a region, but not called a copy on chance matches


def test_a_strong_region_cosine_alone_is_a_copy_and_a_weak_one_with_chance_matches_is_not() -> None:
    ((cosine, inliers),) = RULE.verified
    assert RULE.is_copy(RULE.match_cosine, 0)
    assert RULE.is_copy(cosine, inliers)
    assert not RULE.is_copy(0.29, 200)  # chance matches pile up inliers at low cosines
    assert not RULE.is_copy(cosine, inliers - 1)
    assert not RULE.is_copy(cosine - 0.01, 200)


def test_each_verified_tier_asks_fewer_inliers_of_a_closer_region_and_none_lends_its_cosine_to_another() -> None:
    rule = RegionRule(match_cosine=0.6, verified=((0.3, 35), (0.38, 15)))
    assert rule.is_copy(0.30, 35) and rule.is_copy(0.38, 15) and rule.is_copy(0.59, 15)
    assert not rule.is_copy(0.37, 34)  # the first tier's cosine with fewer inliers than it asks
    assert not rule.is_copy(0.38, 14) and not rule.is_copy(0.29, 100)
    assert RegionRule.from_row({"match_cosine": 0.6, "verified": [[0.3, 35], [0.38, 15]]}) == rule


def test_the_default_models_rule_refuses_what_unrelated_pictures_reached_on_the_bench() -> None:
    rule = calibration_for("sscd", "sscd-short256").region  # type: ignore[union-attr]
    assert rule is not None and rule.fitted
    assert not rule.is_copy(0.58, 0)  # a rotated photo's black corners against a dark figure
    assert not rule.is_copy(0.36, 23)  # a drawn window's chrome against another picture
    assert not rule.is_copy(0.27, 32)  # a collage's chance matches
    assert not rule.is_copy(0.41, 4) and not rule.is_copy(0.39, 7)  # the most inliers unrelated results had at 0.38+
    assert not rule.is_copy(0.31, 28) and not rule.is_copy(0.26, 30)  # a held-out photo of coins against others
    assert rule.is_copy(0.46, 135) and rule.is_copy(0.62, 0)  # insets of the bench's photos
    assert rule.is_copy(0.43, 16) and rule.is_copy(0.41, 17)  # small insets, ORB confirming fewer keypoints


def test_without_a_region_rule_a_region_ranks_but_never_makes_a_copy() -> None:
    calibration = replace(CALIBRATED.calibration, region=None)  # type: ignore[type-var]
    out = _rejudge(
        [_hit("whole", 0.20), _hit("inset", 0.10)], [0.20, 0.9], [0, 200], replace(CALIBRATED, calibration=calibration)
    )
    assert out[0].id == "inset" and not out[0].match


def test_a_region_score_is_ranked_but_never_judged_by_the_whole_query_threshold() -> None:
    # verified (>= REGION_INLIERS), it ranks first at 0.45, above the calibration's 0.4; too few inliers for a copy
    out = _rejudge([_hit("whole", 0.20), _hit("window", 0.10)], [0.20, 0.45], [0, regions.REGION_INLIERS + 2])
    assert out[0].id == "window" and out[0].scores.final == pytest.approx(0.45) and not out[0].match
    assert out[0].similarity > 50  # the similarity is the ranked score's; the verdict is not
    # an unverified one, beyond the threshold after its penalty, is not a copy either under match_cosine
    out = _rejudge([_hit("whole", 0.20), _hit("corners", 0.10)], [0.20, 0.58], [0, 0])
    assert out[0].id == "corners" and out[0].scores.final == pytest.approx(0.58 - regions.UNVERIFIED_PENALTY)
    assert not out[0].match


def test_a_detail_of_a_candidate_that_matches_the_query_ranks_it_and_calls_it_a_copy() -> None:
    # the whole query and its regions see the original at 0.15: a detail of it matches the query at 0.70
    out = _rejudge([_hit("other", 0.30), _hit("original", 0.15)], [0.2, 0.15], [0, 0], details=[0.30, 0.70])
    assert [h.id for h in out] == ["original", "other"] and out[0].match and not out[1].match
    assert out[0].scores.detail == pytest.approx(0.70, abs=1e-3) and out[1].scores.detail == pytest.approx(
        0.30, abs=1e-3
    )
    assert out[0].scores.final == pytest.approx(0.70 - DETAIL_PENALTY, abs=1e-3) and "detail" in out[0].scores.explain


def test_a_detail_below_the_rule_ranks_but_is_no_copy_and_entries_without_details_score_none() -> None:
    out = _rejudge([_hit("other", 0.30), _hit("original", 0.15)], [0.2, 0.15], [0, 0], details=[None, 0.50])
    assert out[0].id == "original" and out[0].scores.final == pytest.approx(0.50 - DETAIL_PENALTY, abs=1e-3)
    assert not any(h.match for h in out) and out[1].scores.detail == 0.0
    without = replace(CALIBRATED.calibration, region=replace(RULE, detail_cosine=0.0))  # type: ignore[type-var]
    out = _rejudge(
        [_hit("other", 0.30), _hit("original", 0.15)],
        [0.2, 0.15],
        [0, 0],
        replace(CALIBRATED, calibration=without),
        [None, 0.9],
    )
    assert out[0].id == "original" and not out[0].match  # a rule without a detail threshold calls no detail a copy


def test_a_tenth_of_a_photo_matches_one_of_its_details_better_than_the_whole_photo_or_another_photo(
    embedder: Any,
) -> None:
    astronaut, camera = _read("astronaut.jpg"), _read("camera.tiff")
    ok, astronaut_jpeg = cv2.imencode(".jpg", astronaut)
    assert ok
    h, w = astronaut.shape[:2]
    query = astronaut[h // 8 : h // 8 + round(h * 0.316), w // 2 : w // 2 + round(w * 0.316)]  # 10 % of its area
    limits: dict[str, int] = {"max_bytes": 10**8, "max_pixels": 10**8}
    mine = details.embed_details(embedder, astronaut_jpeg.tobytes(), **limits)
    theirs = details.embed_details(
        embedder, cv2.imencode(".png", cv2.resize(camera, (400, 400)))[1].tobytes(), **limits
    )
    assert mine is not None and theirs is not None
    assert mine.shape == (details.DETAILS, embedder.dim) and mine.dtype == np.float16
    q = embedder.embed([query])[0]
    found = regions.Regions(q, [], [], np.zeros((0, len(q))), np.zeros((0, len(q))))
    whole = float(embedder.embed([astronaut])[0] @ q)
    assert found.detail(mine, None) > max(whole, found.detail(theirs, None)) + 0.1
    small = cv2.imencode(".png", cv2.resize(camera, (details.DETAIL_MIN_SIDE - 1,) * 2))[1].tobytes()
    assert details.embed_details(embedder, small, **limits) is None  # too small to have details


def test_regions_are_searched_unless_the_best_result_is_a_confident_copy() -> None:
    def best(match: bool | None, similarity: float) -> list[Hit]:
        return [replace(_hit("a", 0.5), match=match, similarity=similarity), _hit("b", 0.1)]

    assert not regions.regions_wanted(best(True, regions.CONFIDENT))
    assert not regions.regions_wanted(best(True, 97.0))
    assert regions.regions_wanted(best(True, regions.CONFIDENT - 1))  # called, but only just: the regions may do better
    assert regions.regions_wanted(best(False, 97.0))
    assert regions.regions_wanted(best(None, 97.0))  # no verdict
    assert regions.regions_wanted([])
    # the threshold's own similarity is below it: a call at the threshold searches regions (sscd: 32 %)
    calibration = calibration_for("sscd", "sscd-short256")
    assert calibration is not None
    at_threshold = Scoring(calibration.fusion, (), calibration).verdict(calibration.threshold)
    assert at_threshold.match and at_threshold.similarity < regions.CONFIDENT
