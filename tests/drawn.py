"""Pictures drawn around the test photos: the photo in an app's window, as a screenshot shows it."""

from __future__ import annotations

import cv2
import numpy as np

from tests.conftest import read

WINDOW = (960, 600)  # width, height
FONT = cv2.FONT_HERSHEY_SIMPLEX


def photo(name: str) -> np.ndarray:
    """A test photo as BGR."""
    return cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)


def in_window(bgr: np.ndarray, caption: str = "photo.jpg") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photo fitted into the content area of a drawn viewer window (title bar, toolbar, a side panel of text,
    status bar), and where it lies there (x0, y0, x1, y1)."""
    w, h = WINDOW
    out = np.full((h, w, 3), 236, np.uint8)
    cv2.rectangle(out, (0, 0), (w, 30), (48, 48, 48), -1)
    cv2.putText(out, f"{caption} - Viewer", (12, 21), FONT, 0.55, (240, 240, 240), 1, cv2.LINE_AA)
    cv2.rectangle(out, (0, 30), (w, 70), (250, 250, 250), -1)
    for i, label in enumerate(["Open", "Save", "Zoom", "Share"]):
        cv2.rectangle(out, (10 + 90 * i, 38), (85 + 90 * i, 62), (215, 215, 215), -1)
        cv2.putText(out, label, (20 + 90 * i, 56), FONT, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.rectangle(out, (w - 220, 70), (w, h - 26), (245, 245, 245), -1)
    for i in range(8):
        cv2.putText(out, f"Property {i + 1}: {i * 37 + 11}", (w - 205, 100 + 34 * i), FONT, 0.45, (50, 50, 50), 1)
    cv2.rectangle(out, (0, h - 26), (w, h), (60, 60, 60), -1)
    cv2.putText(out, "100 %   ready", (10, h - 8), FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    left, top, right, bottom = 16, 86, w - 236, h - 42
    scale = min((right - left) / bgr.shape[1], (bottom - top) / bgr.shape[0])
    pw, ph = round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)
    x0, y0 = left + (right - left - pw) // 2, top + (bottom - top - ph) // 2
    out[y0 : y0 + ph, x0 : x0 + pw] = cv2.resize(bgr, (pw, ph), interpolation=cv2.INTER_AREA)
    return out, (x0, y0, x0 + pw, y0 + ph)


def screenshot(name: str) -> bytes:
    """A PNG of the test photo in the drawn window (in_window)."""
    return bytes(cv2.imencode(".png", in_window(photo(name))[0])[1])


def watermarked(bgr: np.ndarray) -> np.ndarray:
    """The picture under a big watermark: a pale band of text across it and a round logo in a corner, drawn at the
    same place whatever the picture (a photographer's or a stock site's)."""
    out = bgr.copy() if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    band = out[h // 4 : h // 4 + h // 8]
    band[:] = cv2.addWeighted(band, 0.4, np.full_like(band, 255), 0.6, 0)
    at, scale = (w // 12, h // 4 + h // 11), 1.6 * w / 600
    cv2.putText(out, "(c) PicTrace 2026", at, cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), 3)
    radius = h // 12
    cv2.circle(out, (radius + 4, radius + 4), radius, (30, 60, 220), -1, cv2.LINE_AA)
    cv2.circle(out, (radius + 4, radius + 4), radius * 2 // 3, (255, 255, 255), max(1, radius // 6), cv2.LINE_AA)
    return out
