"""Windows over an image: grids of overlapping crops, as the query's regions (pictrace.regions) and an indexed
image's details (pictrace.details) cut them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image
#: a grid: (window side as a share of the image's side, windows per side), spread evenly from edge to edge
Grid = tuple[float, int]


def grid_boxes(height: int, width: int, grids: Sequence[Grid]) -> list[Box]:
    """The windows' boxes in an image of this size, grid by grid, row by row."""
    boxes = []
    for side, steps in grids:
        ch, cw = max(1, round(height * side)), max(1, round(width * side))
        for i in range(steps):
            for j in range(steps):
                y = round(i * (height - ch) / (steps - 1)) if steps > 1 else (height - ch) // 2
                x = round(j * (width - cw) / (steps - 1)) if steps > 1 else (width - cw) // 2
                boxes.append((x, y, x + cw, y + ch))
    return boxes


def cut(image: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    """The image's pixels in each box (contiguous copies)."""
    return [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]
