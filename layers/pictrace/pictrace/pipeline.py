"""The image pipeline every image goes through, indexed or queried: bytes -> validated image -> uniform border
trimmed -> embedding and rerank features, with an optional stage timer. Ingest, search, compare and the CLI's
backfill (through ingest) all run it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pictrace.embedding import Embedder
from pictrace.frames import framed_photo
from pictrace.images import DecodedImage, decode_image
from pictrace.rerank import (
    ORB_LONG_SIDE,
    Features,
    QueryFeatures,
    as_query,
    compute_features,
    content_box,
    mirrored_features,
)

logger = logging.getLogger(__name__)

#: the largest side any embedding preprocessing (pictrace.embedding.PREPROCESS) resizes an image to: sscd-square320's
#: 320 (sscd-short256 and sscd-short288 a short side of 256 and 288, Keras' ResNet50 224x224). The content keeps at
#: least this many pixels on its short side, so the model never gets an enlarged image.
MODEL_SHORT_SIDE = 320
#: the content keeps at least this many pixels on its long side: what ORB runs on (thumbnail and gist need less)
FEATURES_LONG_SIDE = ORB_LONG_SIDE


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
class Decoded:
    """An image decoded as small as the later stages allow, and its content (without the uniform border)."""

    image: DecodedImage
    box: tuple[int, int, int, int]  # the content within the decoded pixels: top, bottom, left, right
    size: int  # bytes

    @property
    def content(self) -> np.ndarray:
        """BGR without the uniform border (padding is not content)."""
        top, bottom, left, right = self.box
        return self.image.bgr[top:bottom, left:right]

    def prepared(self, embedding: np.ndarray, features: Features, mirrored: Features | None = None) -> Prepared:
        """The pipeline's result, given the content's embedding and rerank features (and its mirror image's)."""
        return Prepared(self.image, self.content, embedding, features, self.size, self.box, mirrored)


def decode_content(data: bytes, *, max_bytes: int, max_pixels: int) -> Decoded:
    """Decode within the limits (InvalidImage, ImageTooLarge) at the smallest size whose content (the image
    without its uniform border) still has MODEL_SHORT_SIDE pixels on its short side and FEATURES_LONG_SIDE on its
    long side, or all the file has; and find that content."""
    short_side, long_side = MODEL_SHORT_SIDE, FEATURES_LONG_SIDE
    while True:
        image = decode_image(
            data, max_bytes=max_bytes, max_pixels=max_pixels, short_side=short_side, long_side=long_side
        )
        box = content_box(image.bgr)  # uniform padding is not content (on the indexed and the query side alike)
        h, w = box[1] - box[0], box[3] - box[2]
        # a trimmed border can leave the content short of what the stages need: decode less reduced (rare)
        short_of = max(MODEL_SHORT_SIDE / min(h, w), FEATURES_LONG_SIDE / max(h, w))
        reduced = max(image.bgr.shape[:2]) < max(image.width, image.height)
        if short_of <= 1 or not reduced:
            return Decoded(image, box, len(data))
        short_side = max(short_side + 1, math.ceil(min(image.bgr.shape[:2]) * short_of))
        long_side = max(long_side + 1, math.ceil(max(image.bgr.shape[:2]) * short_of))


@dataclass(frozen=True)
class Prepared:
    """What the pipeline made of one image's bytes."""

    image: DecodedImage
    content: np.ndarray  # BGR without its uniform border (padding is not content)
    embedding: np.ndarray  # unit length
    features: Features
    size: int  # bytes
    box: tuple[int, int, int, int]  # the content within the decoded pixels: top, bottom, left, right
    mirrored: Features | None = None  # the content's mirror image's features (prepare's mirror=True)

    def query_features(self) -> QueryFeatures:
        """The features as a query uses them: with the gists of the image's 8 flips and quarter turns (and the
        mirror image's ORB features, when they were made)."""
        return replace(as_query(self.features), mirrored=self.mirrored)

    def content_box(self) -> list[int]:
        """The content's box (x0, y0, x1, y1) in the file's pixels (an image may be decoded smaller)."""
        top, bottom, left, right = self.box
        # a reduction is the same on both axes; the long sides compare right even when the decoder turned the
        # image upright (EXIF orientation) and the file's width and height are the other way round
        scale = max(self.image.width, self.image.height) / max(self.image.bgr.shape[:2])
        return [round(left * scale), round(top * scale), round(right * scale), round(bottom * scale)]

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
    pool: Executor | None = None,
    mirror: bool = False,
) -> Prepared:
    """Decode within the limits (InvalidImage, ImageTooLarge) as small as the stages allow (decode_content), trim
    the border, embed, compute rerank features.

    embedder: asked for once the image is known to be valid (so an invalid image never loads the model).
    timer: laps "decode" (decoding and trimming) and "embed" (embedding and features).
    pool: the rerank features are made there while the model embeds (one image's latency: a query), rather than
    after it.
    mirror: also the features of the content's mirror image (a query's, for candidates that matched it mirrored).
    """
    decoded = decode_content(data, max_bytes=max_bytes, max_pixels=max_pixels)
    if timer is not None:
        timer.lap("decode")
    model = embedder()
    content = decoded.content
    jobs = [compute_features] + ([mirrored_features] if mirror else [])
    if pool is None:
        embedding, inner = embed_content(model, content)
        made = [job(content) for job in jobs]
    else:
        futures = [pool.submit(job, content) for job in jobs]
        embedding, inner = embed_content(model, content)
        made = [future.result() for future in futures]
    if timer is not None:
        timer.lap("embed")
    return decoded.prepared(embedding, replace(made[0], inner=inner), made[1] if mirror else None)


def embed_content(model: Embedder, content: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The content's embedding, and the embedding of the photo it frames (pictrace.frames) or None."""
    photo = framed_photo(content)
    if photo is None:
        return model.embed([content])[0], None
    both = model.embed([content, photo])
    return both[0], both[1]
