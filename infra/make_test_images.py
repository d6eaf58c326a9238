#!/usr/bin/env python3
"""Regenerate the small test images in tests/data/ and check how OpenCV decodes them.

usage: .venv/bin/python infra/make_test_images.py [OUT_DIR]   (default: tests/data)

Every picture is a real photograph bundled with scikit-image (no download), downscaled
with Lanczos and written with Pillow; the output is deterministic for a given
scikit-image/Pillow version. Each file is kept under 60 KB:

  astronaut.jpg     skimage astronaut, 320x320 RGB, baseline JPEG q85
  coffee.png        skimage coffee, 256x171 RGB truecolor PNG (posterized to 5 bits
                    per channel so that a photo fits in 60 KB as PNG)
  chelsea.webp      skimage chelsea (cat), 320x213 RGB, lossy WebP q80
  rocket.bmp        skimage rocket, 256x171, 8-bit palette BMP (24-bit would be ~130 KB)
  camera.tiff       skimage camera, 256x256 grayscale TIFF, deflate-compressed
  rgba.png          skimage motorcycle_left, 224x151 RGBA PNG: opaque ellipse with a
                    soft edge, fully transparent corners (RGB zeroed there)
  corrupt.jpg       FF D8 FF (JPEG magic) + 2045 seeded random bytes (2 KB, no FF byte,
                    so no JPEG marker can appear by chance)
  truncated.jpg     the first 40% of astronaut.jpg's bytes (no EOI marker)
  empty.jpg         0 bytes
  not_an_image.txt  plain text

After writing, each file is passed to cv2.imdecode(IMREAD_UNCHANGED) and the result is
compared with what is expected (decodes with this shape / fails); exit status 1 if not.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from typing import Any

import cv2
import numpy as np
import skimage.data as skdata
from PIL import Image, ImageOps

MAX_BYTES = 60 * 1024


def downscale(arr: np.ndarray, long_side: int) -> Image.Image:
    im = Image.fromarray(arr)
    w, h = im.size
    s = long_side / max(w, h)
    return im.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)


def encode(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def build() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    files["astronaut.jpg"] = encode(downscale(skdata.astronaut(), 320), "JPEG", quality=85)
    files["coffee.png"] = encode(ImageOps.posterize(downscale(skdata.coffee(), 256), 5), "PNG", optimize=True)
    files["chelsea.webp"] = encode(downscale(skdata.chelsea(), 320), "WEBP", quality=80, method=6)
    files["rocket.bmp"] = encode(downscale(skdata.rocket(), 256).quantize(256), "BMP")
    files["camera.tiff"] = encode(downscale(skdata.camera(), 256), "TIFF", compression="tiff_adobe_deflate")

    moto = np.asarray(ImageOps.posterize(downscale(skdata.stereo_motorcycle()[0], 224), 5)).copy()
    h, w = moto.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2 + 0.5) / (h / 2), (xx - w / 2 + 0.5) / (w / 2))
    alpha = np.clip((1 - r) * 4 * 255, 0, 255).astype(np.uint8)
    moto[alpha == 0] = 0
    files["rgba.png"] = encode(Image.fromarray(np.dstack([moto, alpha]), "RGBA"), "PNG", optimize=True)

    rng = np.random.default_rng(20240101)
    files["corrupt.jpg"] = b"\xff\xd8\xff" + rng.integers(0, 0xFF, 2045, dtype=np.uint8).tobytes()
    jpeg = files["astronaut.jpg"]
    files["truncated.jpg"] = jpeg[: int(len(jpeg) * 0.4)]
    files["empty.jpg"] = b""
    files["not_an_image.txt"] = (
        b"This is a plain text file, not an image.\nPicTrace must reject it with a clear error instead of crashing.\n"
    )
    return files


# name -> expected cv2.imdecode(IMREAD_UNCHANGED) shape, or None when decoding must fail
EXPECTED: dict[str, tuple[int, ...] | None] = {
    "astronaut.jpg": (320, 320, 3),
    "coffee.png": (171, 256, 3),
    "chelsea.webp": (213, 320, 3),
    "rocket.bmp": (171, 256, 3),
    "camera.tiff": (256, 256),
    "rgba.png": (151, 224, 4),
    "corrupt.jpg": None,
    "truncated.jpg": None,
    "empty.jpg": None,
    "not_an_image.txt": None,
}


def decode(data: bytes) -> np.ndarray | None:
    if not data:
        return None  # cv2.imdecode raises (assertion !buf.empty()) on an empty buffer
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "data")
    os.makedirs(out, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = build()

    ok = True
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        arr = decode(data)
        got = None if arr is None else arr.shape
        good = got == EXPECTED[name] and len(data) < MAX_BYTES
        ok &= good
        what = "fails to decode" if got is None else "decodes to " + "x".join(map(str, got))
        print(f"{'ok ' if good else 'BAD'} {name:18s} {len(data):6d} bytes  {what}")
    if not ok:
        print("some files are not as expected", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
