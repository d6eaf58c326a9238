"""The query as search scores and judges it: what it is (Queried) and how its results are scored and called a copy
(Judge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pictrace.compare import Frame, evidence
from pictrace.embedding import Embedder
from pictrace.errors import BadRequest
from pictrace.frames import framed_cosine
from pictrace.images import DecodedImage
from pictrace.index.layout import Entry
from pictrace.rerank import QueryFeatures, Scores, centred_cosine
from pictrace.templates import TEMPLATE_INLIERS
from pictrace.verdict import Scoring, Weights

#: a result whose whole-image verdict the template check withdrew says so (Scores.explain)
TEMPLATE_EXPLAIN = "the same template (a watermark, a caption band) around different pictures: not called a copy"


@dataclass(frozen=True)
class Queried:
    """A query as search and compare use it: the model, the query's embedding and features (an image's with its
    mirror image's), what it is (described), where its features sit in its pixels (frame), and its decoded image
    where there is one (an image query's; an indexed query's with compare's picture)."""

    embedder: Embedder
    vector: np.ndarray
    features: QueryFeatures
    described: dict[str, Any]
    frame: Frame
    image: DecodedImage | None


@dataclass(frozen=True)
class Judge:
    """The query as the rerank scores it: its embedding and features, and how the model scores and judges."""

    vector: np.ndarray
    features: QueryFeatures
    scoring: Scoring
    centre: np.ndarray | None  # scoring.centre as an array (None: the plain cosine)
    matches_only: bool = False  # see pictrace.search.SearchQuery
    frame: Frame | None = None  # where the query's features sit in its pixels (None: no template check)

    @property
    def fusion(self) -> Weights:
        """The final score's weights."""
        return self.scoring.fusion

    def computes(self, signal: str) -> bool:
        """Whether a costly signal ("ssim", "geometry") is computed: unless matches_only, if the fusion weighs it."""
        return not self.matches_only or getattr(self.fusion, signal) > 0

    def cosine(self, entry: Entry) -> float:
        """The score's cosine of the query with an indexed image, centred on the model's reference; judged by
        what either image frames (pictrace.frames)."""
        cosine = centred_cosine(self.vector, entry.embedding, self.centre)
        pair = (self.vector, self.features.features.inner), (entry.embedding, entry.features.inner)
        return framed_cosine(cosine, *pair, self.centre)

    def template(self, scores: Scores, entry: Entry) -> bool:
        """Whether a result the geometric check aligned with the query (scores.inliers) shares only a template with
        it (pictrace.templates): checked again with the transform, as compare shows it."""
        if scores.inliers < TEMPLATE_INLIERS or self.frame is None:
            return False
        try:
            target = Frame.of_entry(entry.meta)
        except BadRequest:  # an entry without a recorded size: nothing to place the query in
            return False
        q = self.features
        return evidence(q.features, q.mirrored, entry.features, self.frame, target).template
