"""Details of an indexed image (issue 27): find a query that is a detail cut out of an indexed photo.

A detail cut small out of a photo (a tenth of it, a twentieth) has a global embedding far from the photo's: the
whole-image search does not rank the original first reliably, and its verdict does not call it a copy. So each
indexed image also has the embeddings of its windows (DETAIL_GRIDS: a 5 x 5 grid of windows a quarter of its sides,
each overlapping its neighbours), decoded large enough that a window keeps detail (DETAIL_SHORT_SIDE): its details,
made after the image is indexed by the details stage (pictrace.detailstage) and stored beside its entry (float16:
25.6 KiB per image at 512 dimensions). A search whose whole query finds no copy compares the query with the details
of every candidate it has (pictrace.regions.Regions.detail): the best centred cosine is the candidate's ``detail``.
A crop that small may not bring its photo into any shortlist, so the in-memory index holds every image's details too
(quantised: 12.5 KiB per image) and brings the BY_DETAIL images whose details match the query best (best_detail,
pictrace.index.memory.EmbeddingIndex.by_detail).

Only models whose calibration has a region rule with a detail threshold get details (the constants hold for the
embedding they were fitted on), only where regions are searched (Settings.regions), and only images whose content
keeps DETAIL_MIN_SIDE pixels on its short side (a window of a smaller one is a few dozen pixels).
"""

from __future__ import annotations

import numpy as np

from pictrace.embedding import Embedder
from pictrace.images import decode_image
from pictrace.rerank import trim_border
from pictrace.verdict import Scoring
from pictrace.windows import Grid, cut, grid_boxes

#: the windows embedded per indexed image: (side as a share of the image's side, windows per side)
DETAIL_GRIDS: tuple[Grid, ...] = ((1 / 4, 5),)
DETAILS = sum(steps * steps for _, steps in DETAIL_GRIDS)
#: the image is decoded for its details with this many pixels on its short side (or all it has): 192 per window
DETAIL_SHORT_SIDE = 768
#: content shorter than this on its short side gets no details
DETAIL_MIN_SIDE = 128
#: what a detail's cosine loses in the ranking against a whole image's final score
DETAIL_PENALTY = 0.10


#: candidates the whole query brings from the index's details (pictrace.index.memory), best by best_detail
BY_DETAIL = 4
_CHUNK = 64  # images whose details are widened to float32 at a time (3.3 MB: 60 ms at N = 10,000 here, 360 at 1,024)


def quantised(details: np.ndarray) -> np.ndarray:
    """An image's details (k, d) as the in-memory index holds them: one int8 row of k * d, each detail scaled to its
    largest value (a detail counts by its direction: best_detail)."""
    rows = np.asarray(details, np.float32)
    peak = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12)
    return np.round(rows * (127.0 / peak)).astype(np.int8).reshape(-1)


def best_detail(details: np.ndarray, query: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Per image, the best cosine of a unit query with any of its details, both centred on centre (None: as they
    are): details (images, k * d), a row of k details each, float or quantised (each taken by its direction); -inf
    for an image whose row is zeros (it has none)."""
    dim = len(query)
    q = np.asarray(query, np.float32)
    c = np.zeros(dim, np.float32) if centre is None else np.asarray(centre, np.float32)
    centred = q - c
    centred /= float(np.linalg.norm(centred)) or 1.0
    offset, cc = float(c @ centred), float(c @ c)
    out = np.empty(len(details), np.float32)
    for start in range(0, len(details), _CHUNK):
        block = details[start : start + _CHUNK]
        rows = np.asarray(block, np.float32).reshape(-1, dim)
        lengths = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        has = lengths > 0
        lengths[~has] = 1.0
        along, towards = (rows @ centred) / lengths, (rows @ c) / lengths  # as unit rows
        cosines = (along - offset) / np.sqrt(np.maximum(1.0 - 2.0 * towards + cc, 1e-12))
        out[start : start + len(block)] = np.where(has, cosines, -np.inf).reshape(len(block), -1).max(axis=1)
    return out


def wants_details(scoring: Scoring, regions: bool) -> bool:
    """Whether images are indexed with details: regions searched, and the model's region rule judges details."""
    return regions and scoring.region is not None and scoring.region.detail_cosine > 0


def embed_details(model: Embedder, data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray | None:
    """The embeddings of the image's windows (DETAIL_GRIDS) in its content (without its uniform border), (DETAILS,
    dim) float16 unit rows; None for content short of DETAIL_MIN_SIDE. InvalidImage if the bytes cannot be decoded this
    large (the decode's limits)."""
    image = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, short_side=DETAIL_SHORT_SIDE)
    content = trim_border(image.bgr)
    height, width = content.shape[:2]
    if min(height, width) < DETAIL_MIN_SIDE:
        return None
    return model.embed(cut(content, grid_boxes(height, width, DETAIL_GRIDS))).astype(np.float16)
