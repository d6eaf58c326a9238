"""The image pipeline every image goes through, indexed or queried: bytes -> validated image -> uniform border
trimmed -> embedding and rerank features, with an optional stage timer. Ingest, search, compare and the CLI's
backfill (through ingest) all run it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pictrace.embedding import Embedder
from pictrace.images import DecodedImage, decode_image
from pictrace.rerank import Features, QueryFeatures, as_query, compute_features, content_box

logger = logging.getLogger(__name__)


class Timer:
    """Milliseconds per stage, each measured from the end of the stage before (or from the start)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._started = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Close a stage now."""
        now = time.perf_counter()
        self.timings[stage] = round((now - self._last) * 1000, 2)
        self._last = now

    def total(self) -> dict[str, float]:
        """The stages and their total so far."""
        self.timings["total"] = round((time.perf_counter() - self._started) * 1000, 2)
        return self.timings


@dataclass(frozen=True)
class Prepared:
    """What the pipeline made of one image's bytes."""

    image: DecodedImage
    content: np.ndarray  # BGR without its uniform border (padding is not content)
    embedding: np.ndarray  # unit length
    features: Features
    size: int  # bytes
    box: tuple[int, int, int, int]  # the content within the decoded pixels: top, bottom, left, right

    def query_features(self) -> QueryFeatures:
        """The features as a query uses them: with the gists of the image's 8 flips and quarter turns."""
        return as_query(self.features)

    def content_box(self) -> list[int]:
        """The content's box (x0, y0, x1, y1) in the file's pixels (an image may be decoded smaller)."""
        top, bottom, left, right = self.box
        sx, sy = self.image.width / self.image.bgr.shape[1], self.image.height / self.image.bgr.shape[0]
        return [round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)]

    def described(self) -> dict[str, Any]:
        """Format, width, height and bytes, as results describe a query."""
        return {"format": self.image.format, "width": self.image.width, "height": self.image.height, "bytes": self.size}


def prepare(
    data: bytes,
    embedder: Callable[[], Embedder],
    *,
    max_bytes: int,
    max_pixels: int,
    timer: Timer | None = None,
) -> Prepared:
    """Decode within the limits (InvalidImage, ImageTooLarge), trim the border, embed, compute rerank features.

    embedder: asked for once the image is known to be valid (so an invalid image never loads the model).
    timer: laps "decode" (decoding and trimming) and "embed" (embedding and features).
    """
    image = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    box = content_box(image.bgr)  # uniform padding is not content (on the indexed and the query side alike)
    content = image.bgr[box[0] : box[1], box[2] : box[3]]
    if timer is not None:
        timer.lap("decode")
    model = embedder()
    embedding = model.embed([content])[0]
    features = compute_features(content)
    if timer is not None:
        timer.lap("embed")
    return Prepared(image, content, embedding, features, len(data), box)
