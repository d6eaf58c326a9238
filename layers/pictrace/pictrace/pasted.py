"""Pasted pictures (issue 27): find a photo pasted whole into another picture by the rectangle its edges draw.

A photo pasted into another one (an inset, a tile of a collage) is bounded by straight edges where the colours
change at once, all along each side: rows and columns across which the picture steps. Natural edges (a horizon, a
window frame) rarely close a rectangle with four such sides. The query's regions (pictrace.regions) are grid
windows, which cut a small inset in pieces or with the picture around it; the rectangle is the inset itself, and its
embedding is the photo's (on the bench's 544 queries: 18 of its 26 insets found, the original's centred cosine with
the rectangle 0.72-0.89, where the grid's best window had 0.57-0.60 on the hardest; held-out photos pasted the same
way 0.28 at most with any indexed image).

A rectangle is reported where (at SIDE pixels on the long side) at least two of its sides are edges inside the
picture (a side on the picture's own edge counts as closed: an inset placed against it), each covering COVER of its
length with a colour step of at least STEP grey levels in one channel, and it spans MIN_SIDE..MAX_SIDE of the
picture's width and height.
"""

from __future__ import annotations

import cv2
import numpy as np

from pictrace.windows import Box

#: the long side the detection runs at (pixels)
SIDE = 384
#: a side steps where a channel changes by at least this many grey levels across two pixels
STEP = 20
#: the share of a side's length that must step
COVER = 0.85
#: a rectangle's width and height, as a share of the picture's: at least MIN_SIDE, at most MAX_SIDE
MIN_SIDE, MAX_SIDE = 0.12, 0.9
#: pixels two sides' ends may differ by (at SIDE), and within which a side is looked for
TOLERANCE = 3
#: rectangles reported at most (largest first)
MOST = 3
#: straight edges tried at most (longest first)
EDGES = 64
#: a picture with fewer pixels on its short side at SIDE has no rectangle worth a crop
MIN_PIXELS = 16


def pasted_boxes(bgr: np.ndarray) -> list[Box]:
    """The rectangles (x0, y0, x1, y1 in the image's pixels) where a picture seems pasted into it, largest first."""
    h, w = bgr.shape[:2]
    scale = min(1.0, SIDE / max(h, w))
    small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    small = small.reshape(small.shape[0], small.shape[1], -1).astype(np.int16)
    height, width = small.shape[:2]
    if min(height, width) < MIN_PIXELS:
        return []
    across_rows = np.zeros((height, width), bool)  # steps between the row above and the row below
    across_rows[1:-1] = np.abs(small[2:] - small[:-2]).max(axis=2) >= STEP
    across_cols = np.zeros((height, width), bool)
    across_cols[:, 1:-1] = np.abs(small[:, 2:] - small[:, :-2]).max(axis=2) >= STEP
    edges = _edges(across_rows, round(MIN_SIDE * width))
    found = _rectangles(edges, (across_rows, across_cols), (height, width))
    return [
        (min(w, round(x0 / scale)), min(h, round(y0 / scale)), min(w, round(x1 / scale)), min(h, round(y1 / scale)))
        for x0, y0, x1, y1 in found
    ]


def _edges(steps: np.ndarray, min_length: int) -> np.ndarray:
    """Horizontal straight edges (rows of (y, x0, x1)): runs of stepping pixels at least min_length long in a row
    (gaps of a pixel or two closed), one per edge (the longest of the rows it spans), longest first."""
    closed = cv2.morphologyEx(steps.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 5), np.uint8))
    change = np.diff(np.pad(closed, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, ends = np.argwhere(change == 1), np.argwhere(change == -1)  # row-major: they pair up in order
    runs = np.column_stack([starts[:, 0], starts[:, 1], ends[:, 1]])
    runs = runs[runs[:, 2] - runs[:, 1] >= max(1, min_length)]
    runs = runs[np.argsort(-(runs[:, 2] - runs[:, 1]), kind="stable")][: 8 * EDGES]
    kept: list[np.ndarray] = []
    for run in runs:
        if len(kept) >= EDGES:
            break
        if not kept or not (np.abs(np.array(kept) - run) <= (TOLERANCE, 2 * TOLERANCE, 2 * TOLERANCE)).all(1).any():
            kept.append(run)
    return np.array(kept, np.int64).reshape(-1, 3)


def _rectangles(edges: np.ndarray, steps: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]) -> list[Box]:
    """The rectangles closed by two horizontal edges that overlap (or one and the picture's top or bottom) and by
    the columns nearest their ends that step all along between them (or the picture's left or right), their top and
    bottom stepping all along between those columns, with at least two sides inside the picture; largest first."""
    height, width = shape
    across_rows, across_cols = steps
    down = np.vstack([np.zeros((1, width), np.int32), np.cumsum(across_cols, axis=0, dtype=np.int32)])
    along = np.hstack([np.zeros((height, 1), np.int32), np.cumsum(across_rows, axis=1, dtype=np.int32)])
    y, x0, x1 = edges[:, 0], edges[:, 1], edges[:, 2]
    overlap = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]) >= MIN_SIDE * width
    gap = np.abs(y[:, None] - y[None])
    i, j = np.nonzero(np.triu(overlap & (gap >= MIN_SIDE * height) & (gap <= MAX_SIDE * height), 1))
    tried: list[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = [
        (int(y[a]), int(y[b]), (int(x0[a]), int(x0[b])), (int(x1[a]), int(x1[b]))) for a, b in zip(i, j, strict=True)
    ]
    for e in edges.tolist():  # against the picture's top, its bottom
        tried += [(0, e[0], (e[1],), (e[2],)), (e[0], height, (e[1],), (e[2],))]
    boxes = []
    for top, bottom, lefts, rights in tried:
        y0, y1 = min(top, bottom), max(top, bottom)
        if not MIN_SIDE * height <= y1 - y0 <= MAX_SIDE * height:
            continue
        sides = _shut(down[y1] - down[y0], y1 - y0, lefts, rights, width)
        if sides is None:
            continue
        left, right = sides
        inside = (y0 > TOLERANCE) + (y1 < height - TOLERANCE) + (left > 0) + (right < width)
        if inside >= 2 and all(_row(along, r, left, right) >= COVER for r in (y0, y1) if 0 < r < height):
            boxes.append((left, y0, right, y1))
    found: list[Box] = []
    for box in sorted(set(boxes), key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b)):
        if all(max(abs(p - q) for p, q in zip(box, b, strict=True)) > 2 * TOLERANCE for b in found):
            found.append(box)
            if len(found) == MOST:
                break
    return found


def _shut(
    stepped: np.ndarray, rows: int, lefts: tuple[int, ...], rights: tuple[int, ...], width: int
) -> tuple[int, int] | None:
    """The left and right sides between two rows (stepped: how many of the rows each column steps across): the column
    that steps most near the edges' left ends, and near their right ends (the picture's edge where they reach it);
    None unless both step along COVER of the rows and the box is wide enough."""
    share = stepped / max(1, rows)
    ends = []
    for near, edge in ((lefts, 0), (rights, width)):
        lo, hi = max(0, min(near) - TOLERANCE), min(width, max(near) + TOLERANCE + 1)
        if abs(min(near) - edge) <= TOLERANCE or abs(max(near) - edge) <= TOLERANCE:
            ends.append(edge)
            continue
        best = lo + int(np.argmax(share[lo:hi]))
        if share[best] < COVER:
            return None
        ends.append(best if edge == 0 else best + 1)
    left, right = ends
    return (left, right) if MIN_SIDE * width <= right - left <= MAX_SIDE * width else None


def _row(along: np.ndarray, y: int, x0: int, x1: int) -> float:
    """The share of columns x0..x1 across which the picture steps near row y (the best row)."""
    rows = slice(max(0, y - TOLERANCE), y + TOLERANCE + 1)
    return float((along[rows, x1] - along[rows, x0]).max()) / max(1, x1 - x0)
