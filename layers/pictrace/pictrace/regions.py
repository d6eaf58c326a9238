"""Partial copies (issue 27): when the whole query finds no copy, search its regions.

A query that holds an indexed photo small (inside another picture, a collage, a screenshot of a post) has a global
embedding far from the photo's. Its regions do not: SSCD embeds 25 crops of the query (a 3 x 3 grid of windows half
its sides and a 4 x 4 grid of windows a third of them, each overlapping its neighbours), and the rectangle of each
picture pasted whole into it that its edges draw (up to 3: pictrace.pasted), each crop is searched, and
every candidate gets the best centred cosine of any crop with it (``region``). The best candidates by it are
verified: ORB + RANSAC between the crop that matched and the candidate (``region_inliers``: inliers found inside
that region, at its scale, where the whole query's ORB keypoints are spread over the other picture too).

The ranking takes a candidate's region cosine where the region is verified (REGION_INLIERS), and that cosine less
UNVERIFIED_PENALTY where it is not, whichever of it and the whole query's final score is higher; so an original the
whole query ranks first loses its place only to a better region match. The verdict judges the two apart: a
candidate is a copy when the whole query's final score is (the calibrated verdict, never on a region's score), or
when its region passes the model's fitted region rule (pictrace.verdict.RegionRule, calibration.json's ``region``:
a cosine alone, or a lower one with the inliers its tier asks for). A model whose calibration has no region rule has
no region search: its constants hold for the embedding they were fitted on.

Search runs this only when its best result is not already a copy with some confidence (CONFIDENT: so whole-image
copies cost nothing more), only for image queries, and only where the model's calibration has a region rule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np

from pictrace.details import DETAIL_PENALTY, best_detail
from pictrace.embedding import Embedder, l2_normalise
from pictrace.index.layout import Entry
from pictrace.pasted import pasted_boxes
from pictrace.rerank import Features, Scores, compute_features, correspondences, trim_border
from pictrace.results import Hit
from pictrace.verdict import RegionRule, Scoring
from pictrace.windows import Box, cut, grid_boxes

logger = logging.getLogger(__name__)

#: (window side as a share of the query's side, windows per side): halves overlapping by half, and thirds by a third
#: (a 4 x 4 grid of thirds against a 3 x 3 one, on the bench: insets ranked first 0.925 against 0.863, called copies
#: 0.725 against 0.613, for 25 crops against 18)
GRIDS = ((1 / 2, 3), (1 / 3, 4))
#: candidates each crop brings from the index
PER_CROP = 4
#: candidates verified by ORB + RANSAC on their region, best by region cosine
VERIFY = 6
#: a region with at least this many inliers is verified: the ranking takes its cosine as it is
REGION_INLIERS = 10
UNVERIFIED_PENALTY = 0.15
#: a best result called a copy with a lower similarity (percent) still has the regions searched: a call that close to
#: the threshold (32 % for sscd) may be the picture around a pasted photo, unindexed but like an indexed one (on the
#: bench, 4 more of its 544 queries search regions: 2 insets, one of them its original at rank 13 until then, and 2
#: JPEG copies)
CONFIDENT = 50.0


def regions_wanted(hits: list[Hit]) -> bool:
    """Whether the regions of a query with these hits (best first) are searched: unless its best result is already a
    copy with some confidence (CONFIDENT)."""
    return not (hits and hits[0].match and hits[0].similarity >= CONFIDENT)


def region_boxes(height: int, width: int) -> list[Box]:
    """The crops' boxes in an image of this size (GRIDS), row by row."""
    return grid_boxes(height, width, GRIDS)


@dataclass(frozen=True)
class Regions:
    """The query's crops, their boxes and their embeddings (unit rows, and centred on the model's reference), and the
    whole query's embedding (matched against the candidates' details: pictrace.details)."""

    query: np.ndarray
    crops: list[np.ndarray]
    boxes: list[Box]
    vectors: np.ndarray  # (crops, dim), unit length
    centred: np.ndarray  # (crops, dim), centred and unit length

    def best(self, embeddings: np.ndarray, centre: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """For each indexed embedding (rows), the best centred cosine of any crop with it and that crop's index."""
        by_crop = self.centred @ _centred(np.asarray(embeddings, np.float32), centre).T
        return by_crop.max(axis=0), by_crop.argmax(axis=0)

    def detail(self, details: np.ndarray, centre: np.ndarray | None) -> float:
        """The best centred cosine of the whole query with any of a candidate's details (pictrace.details); 0 for an
        image too small to have any."""
        if not len(details):
            return 0.0
        return float(best_detail(np.reshape(details, (1, -1)), self.query, centre)[0])

    def inliers(self, crop: int, candidate: Features) -> int:
        """ORB matches of one crop with a candidate that agree on one affine transform (RANSAC)."""
        return correspondences(compute_features(self.crops[crop]), candidate).inliers


def embed_regions(image: np.ndarray, query: np.ndarray, embedder: Embedder, centre: np.ndarray | None) -> Regions:
    """The crops of an image's content (without its uniform border) embedded by the model: its windows
    (region_boxes), then the rectangles of pictures pasted into it (pictrace.pasted); query: the whole image's
    embedding."""
    content = trim_border(image)
    boxes = region_boxes(*content.shape[:2]) + pasted_boxes(content)
    crops = cut(content, boxes)
    vectors = embedder.embed(crops)
    return Regions(query, crops, boxes, vectors, _centred(vectors, centre))


def _centred(rows: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Rows centred on centre (None: as they are), each scaled to unit length."""
    return l2_normalise(rows - centre if centre is not None else rows)


def region_final(cosine: float, inliers: int) -> float:
    """What a region match is worth in the ranking: its cosine if verified, else less UNVERIFIED_PENALTY."""
    return cosine if inliers >= REGION_INLIERS else cosine - UNVERIFIED_PENALTY


def with_region(scores: Scores, cosine: float, inliers: int, verified: bool, detail: float = 0.0) -> Scores:
    """A candidate's scores with its region's and its detail's (pictrace.details): the final score the best of the
    whole query's, the region's (region_final) and the detail's (less DETAIL_PENALTY)."""
    region_worth = region_final(cosine, inliers if verified else 0)
    worth = max(region_worth, detail - DETAIL_PENALTY)
    s = replace(scores, region=cosine, region_inliers=inliers, detail=detail)
    if worth <= scores.final:
        return s
    if region_worth >= detail - DETAIL_PENALTY:
        explain = f"a region of the query matches it (cosine {cosine:.2f}, {inliers} ORB keypoints agree inside it)"
    else:
        explain = f"the query matches a detail of it (cosine {detail:.2f})"
    return replace(s, final=worth, explain=explain)


def to_verify(region: np.ndarray) -> set[int]:
    """Which candidates get their region verified: the best VERIFY by region cosine."""
    return {int(i) for i in np.argsort(-np.asarray(region), kind="stable")[:VERIFY]}


def rejudge(
    live: list[tuple[Hit, Entry]],
    details: Mapping[str, np.ndarray],
    regions: Regions,
    centre: np.ndarray | None,
    scoring: Scoring,
    pool: Executor,
) -> list[Hit]:
    """The hits (with their entries) with their regions' scores and their details' (the query's embedding against
    the details of those that have them, by id: pictrace.details): each one's best region cosine, the best VERIFY of
    them verified (in the pool), ranked by the best of their final, region and detail scores and called a copy by the
    whole query's verdict or by the calibration's region rule; the cosine ranks over them all."""
    rule: RegionRule | None = scoring.region
    cosines, crops = regions.best(np.stack([e.embedding for _, e in live]), centre)
    chosen = sorted(to_verify(cosines))
    counted = pool.map(lambda i: regions.inliers(int(crops[i]), live[i][1].features), chosen)
    inliers = dict(zip(chosen, counted, strict=True))
    out = []
    for i, (h, _entry) in enumerate(live):
        detail = regions.detail(details[h.id], centre) if h.id in details else 0.0
        s = with_region(h.scores, float(cosines[i]), inliers.get(i, 0), i in inliers, detail)
        whole = bool(h.match)  # the whole query's verdict, on its own score (and the template check)
        by_region = rule is not None and not s.template and rule.is_copy(s.region, s.region_inliers, s.detail)
        match = whole or by_region
        out.append(replace(h, scores=s, similarity=scoring.verdict(s.final).similarity, match=match))
    by_cosine = {h.id: r for r, h in enumerate(sorted(out, key=lambda h: -h.scores.cosine), start=1)}
    return sorted((replace(h, rank_cosine=by_cosine[h.id]) for h in out), key=lambda h: -h.scores.final)
