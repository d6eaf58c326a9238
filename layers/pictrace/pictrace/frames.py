"""Framed photos (issue 28): a photo shown inside drawn surroundings, such as an app's window or a feed.

Two screenshots of different photos in the same app share most of their pixels, so the model's embeddings of the
whole pictures are close. That closeness comes from the frame, not from the photo. So an image that frames a photo
also gets an embedding of that photo (``Features.inner``), and a pair in which either image frames a photo is as
similar as what is framed (framed_cosine): at most a little more than that (SLACK), and as much where the framed
photo matches better than the whole pictures do (a screenshot of a photo whose window the model sees more than the
photo: a lawn, gravel). A query that frames a photo is shortlisted by that photo's embedding too (pictrace.search).

A photo is framed where a textured region (pixels whose 3 x 3 neighbourhood varies) is surrounded on all four
sides by a flat ring that is not the image's edge, and covers a share of the image between MIN_SHARE and MAX_SHARE.
A photo on a plain backdrop (a product shot) is framed too: its copies are framed alike, and SLACK keeps a pair
whose framed photo matches a little less well than the whole.

The constants were chosen on the bench's copies phase (bench/phases/duplicates.py, 410 images, sscd): 38 of its 38
screenshots framed and 2 other images (a clock on a plain wall). MIN_FILL was 0.1 at first: two screenshots of
mostly flat photos (a beige backdrop with icons, a plain green) were then not framed, and SLACK 0.1 let two framed
textures (a grid, a truchet pattern; framed photos' cosine 0.32) through; with 0.05 each, those two links between
different photos go and 2 of the 1,882 true ones (0.935 of the copy pairs linked, against 0.936). On the bench's
1,700 queries of issue 27 no whole-image verdict in any query's top 10 changes.
The cosine was only ever lowered until the same day: screenshots of low-detail photos (a lawn in a window: 0.26
for the whole pictures, 0.67 for the framed photo) were then copies of nothing. Raised to the framed photo's cosine
(and the query shortlisted by it), the copies phase's pairs in groups went 0.963 -> 0.982 (screenshots 0.89 -> 0.99)
with no new link between different photos; on those 1,700 queries, 17 more copies were called on the whole query
(screenshots, social posts) and no other result.
"""

from __future__ import annotations

import cv2
import numpy as np

from pictrace.rerank import centred_cosine, to_gray

#: the long side the detection runs at (pixels); a ring of RING pixels there
SIDE = 512
RING = 3
#: a pixel is flat when its 3 x 3 neighbourhood's standard deviation is under FLAT grey levels
FLAT = 2.0
#: the share of the ring's pixels that must be flat, on each side
RING_FLAT = 0.98
#: the framed region's bounding box, as a share of the image; and the share of that box its textured pixels fill
MIN_SHARE, MAX_SHARE, MIN_FILL = 0.05, 0.85, 0.05
#: textured regions tried, largest first
TRIED = 4
#: how far a pair's cosine may stay above the cosine of what is framed
SLACK = 0.05

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


def framed_box(bgr: np.ndarray) -> Box | None:
    """Where the image frames a photo (x0, y0, x1, y1 in its pixels), or None when it frames none."""
    gray = to_gray(bgr)
    h, w = gray.shape
    scale = min(1.0, SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, square = cv2.blur(small, (3, 3)), cv2.blur(small * small, (3, 3))
    textured = (np.sqrt(np.maximum(square - mean * mean, 0)) >= FLAT).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(textured, connectivity=4)
    for label in 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:TRIED]:
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if _framed(textured, (x, y, x + bw, y + bh), area):
            return round(x / scale), round(y / scale), round((x + bw) / scale), round((y + bh) / scale)
    return None


def _framed(textured: np.ndarray, box: Box, area: int) -> bool:
    """Whether a textured region with this bounding box and area is a framed photo."""
    x0, y0, x1, y1 = box
    height, width = textured.shape
    share = (x1 - x0) * (y1 - y0) / (width * height)
    if not (MIN_SHARE <= share <= MAX_SHARE and area >= MIN_FILL * (x1 - x0) * (y1 - y0)):
        return False
    if y0 < RING or x0 < RING or y1 + RING > height or x1 + RING > width:
        return False  # it reaches the image's edge: nothing frames it there
    rings = (
        textured[y0 - RING : y0, x0:x1],
        textured[y1 : y1 + RING, x0:x1],
        textured[y0:y1, x0 - RING : x0],
        textured[y0:y1, x1 : x1 + RING],
    )
    return all(1 - ring.mean() >= RING_FLAT for ring in rings)


def framed_photo(bgr: np.ndarray) -> np.ndarray | None:
    """The photo the image frames (framed_box), or None."""
    box = framed_box(bgr)
    return None if box is None else bgr[box[1] : box[3], box[0] : box[2]]


def framed_cosine(
    cosine: float,
    query: tuple[np.ndarray, np.ndarray | None],
    candidate: tuple[np.ndarray, np.ndarray | None],
    centre: np.ndarray | None,
) -> float:
    """A pair's cosine, given as `cosine`, judged by what either image frames: the best cosine of a framed photo with
    the other image or with its framed photo where that is higher, else at most SLACK above it. query and
    candidate: (embedding, the embedding of the photo it frames or None)."""
    (q, q_inner), (c, c_inner) = query, candidate
    pairs = [(q_inner, c)] if q_inner is not None else []
    if c_inner is not None:
        pairs += [(q, c_inner)] + ([(q_inner, c_inner)] if q_inner is not None else [])
    if not pairs:
        return cosine
    best = max(centred_cosine(a, b, centre) for a, b in pairs)
    return max(best, min(cosine, best + SLACK))
