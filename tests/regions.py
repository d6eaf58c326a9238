"""Geometry helpers the tests measure regions with."""

from __future__ import annotations

import cv2
import numpy as np


def iou(polygon: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Intersection over union of a convex polygon (n, 2) and an axis-aligned box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    poly = np.asarray(polygon, np.float32)
    inter, _ = cv2.intersectConvexConvex(poly, rect)
    union = abs(cv2.contourArea(poly)) + (x1 - x0) * (y1 - y0) - inter
    return float(inter / union) if union > 0 else 0.0
