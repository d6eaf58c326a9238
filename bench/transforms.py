"""The copy-detection queries: each variant a family, a parameter and an edit (BGR uint8 -> BGR or grayscale),
saved as a JPEG; random choices come from a generator seeded by the original's and the variant's names, so a run
makes the same queries every time."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

Image = np.ndarray
Transform = Callable[[Image, np.random.Generator], Image]
#: an edit that puts the original among other photos (Variant.others of them, never indexed ones)
Composite = Callable[[Image, np.random.Generator, Sequence[Image]], Image]

DEFAULT_QUALITY = 95
OVERLAY_TEXT = "(c) PicTrace 2026"


@dataclass(frozen=True)
class Variant:
    """One query edit: family (as the issue names it), parameter label, the edit, and the JPEG quality to save at."""

    family: str
    param: str
    apply: Transform | Composite
    quality: int = DEFAULT_QUALITY
    others: int = 0  # other photos the edit needs (apply is then a Composite)

    @property
    def name(self) -> str:
        """family/param, e.g. 'crop/30%'."""
        return f"{self.family}/{self.param}"


def rng_for(original: str, variant: str) -> np.random.Generator:
    """The generator for one (original, variant) pair: same pair, same numbers, on every machine."""
    return np.random.default_rng(zlib.crc32(f"{original}|{variant}".encode()))


def crop(img: Image, rng: np.random.Generator, fraction: float) -> Image:
    """Cut away `fraction` of the area: a window of the same aspect, sqrt(1 - fraction) of each side, at random."""
    h, w = img.shape[:2]
    side = float(np.sqrt(1.0 - fraction))
    ch, cw = max(1, round(h * side)), max(1, round(w * side))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw].copy()


def rotate(img: Image, rng: np.random.Generator, degrees: float) -> Image:
    """Rotate counter-clockwise; multiples of 90 exact, other angles on the same canvas (black corners)."""
    if degrees % 90 == 0:
        turns = int(degrees // 90) % 4
        codes = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}
        return img.copy() if turns == 0 else cv2.rotate(img, codes[turns])
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(
        img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )


def hflip(img: Image, rng: np.random.Generator) -> Image:
    """Mirror left-right."""
    return cv2.flip(img, 1)


def downscale(img: Image, rng: np.random.Generator, factor: float) -> Image:
    """Shrink both sides by `factor` (area interpolation), never below 16 px."""
    h, w = img.shape[:2]
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def identity(img: Image, rng: np.random.Generator) -> Image:
    """No edit (the JPEG family changes only the quality it is saved at)."""
    return img


def brightness_contrast(img: Image, rng: np.random.Generator, alpha: float, beta: float) -> Image:
    """pixel * alpha + beta, saturated to 0..255."""
    return cv2.convertScaleAbs(img, alpha=alpha, beta=beta)


def grayscale(img: Image, rng: np.random.Generator) -> Image:
    """One channel of luminance."""
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img.copy()


def blur(img: Image, rng: np.random.Generator, relative_sigma: float) -> Image:
    """Gaussian blur with sigma = relative_sigma x the long side (so it looks the same at any resolution)."""
    sigma = max(0.5, relative_sigma * max(img.shape[:2]))
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)


def overlay(img: Image, rng: np.random.Generator) -> Image:
    """A watermark: a translucent band of text across ~80 % of the width, a round logo in a random corner."""
    out = img.copy() if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), base = cv2.getTextSize(OVERLAY_TEXT, font, 1.0, 2)
    scale = 0.8 * w / tw
    thickness = max(1, round(2 * scale))
    (tw, th), base = cv2.getTextSize(OVERLAY_TEXT, font, scale, thickness)
    band_h = min(h, th + base + 2 * round(0.2 * th))
    y0 = int(rng.integers(0, max(1, h - band_h)))
    band = out[y0 : y0 + band_h]
    band[:] = cv2.addWeighted(band, 0.4, np.full_like(band, 255), 0.6, 0)
    x = (w - tw) // 2
    cv2.putText(out, OVERLAY_TEXT, (x, y0 + round(0.2 * th) + th), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    radius = max(4, round(0.08 * min(h, w)))
    cx = radius + 4 if rng.random() < 0.5 else w - radius - 4
    cy = radius + 4 if rng.random() < 0.5 else h - radius - 4
    cv2.circle(out, (cx, cy), radius, (30, 60, 220), -1, cv2.LINE_AA)
    cv2.circle(out, (cx, cy), max(2, radius * 2 // 3), (255, 255, 255), max(1, radius // 6), cv2.LINE_AA)
    return out


def aspect(img: Image, rng: np.random.Generator, x_factor: float) -> Image:
    """Stretch the width by x_factor, height unchanged."""
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * x_factor)), h), interpolation=cv2.INTER_LINEAR)


def border(img: Image, rng: np.random.Generator, fraction: float) -> Image:
    """A solid white border of `fraction` of each side's length on every side."""
    h, w = img.shape[:2]
    py, px = round(h * fraction), round(w * fraction)
    return cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def perspective(img: Image, rng: np.random.Generator, strength: float) -> Image:
    """A tilted print: the image warped into a quadrilateral with corners 0.5..1 x `strength` inside the canvas's."""
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    dx = rng.uniform(0.5, 1.0, 4) * strength * w
    dy = rng.uniform(0.5, 1.0, 4) * strength * h
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
    dst = src + signs * np.stack([dx, dy], axis=1).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    return cv2.warpPerspective(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


SCREEN = (1280, 800)  # the screenshot's canvas, width x height


def screenshot(img: Image, rng: np.random.Generator) -> Image:
    """The photo in the content area of a drawn 1280x800 window (title bar, toolbar, side panel, status bar), ~45 %."""
    src = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    w, h = SCREEN
    out = np.full((h, w, 3), (236, 236, 236), np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title, tool, status, side = 34, 44, 28, 260
    cv2.rectangle(out, (0, 0), (w, title), (48, 48, 48), -1)
    cv2.putText(out, "photo.jpg - Image Viewer", (16, 23), font, 0.6, (240, 240, 240), 1, cv2.LINE_AA)
    for i, colour in enumerate([(80, 80, 230), (60, 190, 240), (90, 200, 90)]):
        cv2.circle(out, (w - 24 - 26 * i, title // 2), 8, colour, -1, cv2.LINE_AA)
    cv2.rectangle(out, (0, title), (w, title + tool), (250, 250, 250), -1)
    for i, label in enumerate(["Open", "Save", "Zoom", "Share", "Edit"]):
        x = 12 + 92 * i
        cv2.rectangle(out, (x, title + 8), (x + 80, title + tool - 8), (215, 215, 215), -1)
        cv2.putText(out, label, (x + 12, title + 28), font, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.rectangle(out, (w - side, title + tool), (w, h - status), (245, 245, 245), -1)
    for i in range(9):
        text, y = f"Property {i + 1}: {int(rng.integers(100, 9999))}", title + tool + 30 + 38 * i
        cv2.putText(out, text, (w - side + 14, y), font, 0.5, (50, 50, 50), 1, cv2.LINE_AA)
    cv2.rectangle(out, (w - side + 14, h - status - 60), (w - 14, h - status - 20), (200, 120, 40), -1)
    cv2.putText(out, "Download", (w - side + 70, h - status - 33), font, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.rectangle(out, (0, h - status), (w, h), (60, 60, 60), -1)
    cv2.putText(out, "100 %   1 of 24   ready", (12, h - 9), font, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
    # the content area: the photo fitted with a margin, aspect kept, centred
    top, bottom, left, right = title + tool + 16, h - status - 16, 16, w - side - 16
    ih, iw = src.shape[:2]
    scale = min((right - left) / iw, (bottom - top) / ih)
    size = (max(1, round(iw * scale)), max(1, round(ih * scale)))
    shrink = size[0] * size[1] < iw * ih
    photo = cv2.resize(src, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    y = top + (bottom - top - size[1]) // 2
    x = left + (right - left - size[0]) // 2
    out[y : y + size[1], x : x + size[0]] = photo
    return out


def colour_shift(img: Image, rng: np.random.Generator, hue_degrees: float, saturation: float) -> Image:
    """A heavy colour filter: hue turned, saturation scaled, then blue x0.8 and red x1.2."""
    src = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(src, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_degrees / 2) % 180  # OpenCV's 8-bit hue is degrees / 2
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out *= np.array([0.8, 1.0, 1.2], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def _fit(img: Image, width: int, height: int) -> Image:
    return cv2.resize(img, (max(1, width), max(1, height)), interpolation=cv2.INTER_AREA)


def _cover(img: Image, width: int, height: int) -> Image:
    """img scaled to cover width x height, the middle cut out."""
    s = max(width / img.shape[1], height / img.shape[0])
    big = _fit(img, max(width, round(img.shape[1] * s)), max(height, round(img.shape[0] * s)))
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y : y + height, x : x + width]


CANVAS = 1280  # the width of the canvases (4:3) the originals are placed in


def inset(img: Image, rng: np.random.Generator, others: Sequence[Image], width: float) -> Image:
    """The original at `width` of the canvas's (at most 90 % of its height), somewhere inside others[0] (1280x960)."""
    out, (h, w) = _cover(others[0], CANVAS, CANVAS * 3 // 4), img.shape[:2]
    iw = min(round(width * CANVAS), round(0.9 * out.shape[0] * w / h))
    ih = max(1, round(iw * h / w))
    y, x = int(rng.integers(0, out.shape[0] - ih + 1)), int(rng.integers(0, CANVAS - iw + 1))
    out[y : y + ih, x : x + iw] = _fit(img, iw, ih)
    return out


def collage(img: Image, rng: np.random.Generator, others: Sequence[Image]) -> Image:
    """A 2 x 2 collage of 640 x 480 tiles: the original whole on white in one, three other photos in the rest."""
    tw, th, (h, w) = CANVAS // 2, CANVAS * 3 // 8, img.shape[:2]
    fw, fh = round(w * min(tw / w, th / h)), round(h * min(tw / w, th / h))
    tile = np.full((th, tw, 3), 255, np.uint8)
    tile[(th - fh) // 2 : (th - fh) // 2 + fh, (tw - fw) // 2 : (tw - fw) // 2 + fw] = _fit(img, fw, fh)
    tiles = [_cover(o, tw, th) for o in others[:3]]
    tiles.insert(int(rng.integers(0, 4)), tile)
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def _text(out: Image, text: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """text drawn as large as fits in box (x, y, width, height), centred."""
    font, size = cv2.FONT_HERSHEY_DUPLEX, cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, 1.0, 2)[0]
    scale = min(0.9 * box[2] / size[0], 0.6 * box[3] / size[1])
    org = (box[0] + (box[2] - round(size[0] * scale)) // 2, box[1] + (box[3] + round(size[1] * scale)) // 2)
    cv2.putText(out, text, org, font, scale, colour, max(1, round(2 * scale)), cv2.LINE_AA)


def meme(img: Image, rng: np.random.Generator) -> Image:
    """A meme: the original (1280 wide) with white caption bands of 20 % of its height above and below."""
    photo = _fit(img, CANVAS, round(img.shape[0] * CANVAS / img.shape[1]))
    band = round(0.2 * photo.shape[0])
    out = cv2.copyMakeBorder(photo, band, band, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    _text(out, "WHEN THE BENCH RUNS", (0, 0, CANVAS, band), (0, 0, 0))
    _text(out, f"AND FINDS COPY NO. {int(rng.integers(2, 99))}", (0, out.shape[0] - band, CANVAS, band), (0, 0, 0))
    return out


POST = (720, 1600)  # the social-post screenshot's canvas, width x height (a phone's)


def social_post(img: Image, rng: np.random.Generator, share: float) -> Image:
    """A phone's social feed: app bar, author, the photo (≤ `share` of the canvas, ≤ 680x900), actions, text rows."""
    (w, h), (ih, iw) = POST, img.shape[:2]
    out = np.full((h, w, 3), 255, np.uint8)
    cv2.rectangle(out, (0, 0), (w, 110), (180, 110, 40), -1)
    _text(out, "Feed", (0, 30, 200, 70), (255, 255, 255))
    cv2.circle(out, (50, 170), 30, (120, 160, 200), -1, cv2.LINE_AA)
    _text(out, f"user{int(rng.integers(10, 9999))} - 2 h", (90, 145, 320, 50), (40, 40, 40))
    s = min(680 / iw, 900 / ih, (share * w * h / (iw * ih)) ** 0.5)
    pw, ph = int(iw * s), int(ih * s)
    out[350 : 350 + ph, (w - pw) // 2 : (w - pw) // 2 + pw] = _fit(img, pw, ph)
    for i, label in enumerate(["Like", "Comment", "Share"]):
        _text(out, label, (20 + 230 * i, 365 + ph, 200, 50), (90, 90, 90))
    for top in range(220, h - 20, 40):  # text rows around the photo
        if not 330 < top < 440 + ph:
            cv2.rectangle(out, (20, top), (w - 20 - 160 * (top % 120 == 20), top + 20), (210, 210, 210), -1)
    return out


def chain(*steps: Transform) -> Transform:
    """Apply several edits in order (each draws from the same generator)."""

    def apply(img: Image, rng: np.random.Generator) -> Image:
        for step in steps:
            img = step(img, rng)
        return img

    return apply


def _p(fn: Callable[..., Image], *args: float) -> Transform:
    return lambda img, rng: fn(img, rng, *args)


def _c(fn: Callable[..., Image], *args: float) -> Composite:
    return lambda img, rng, others: fn(img, rng, others, *args)


VARIANTS: tuple[Variant, ...] = (
    Variant("crop", "10%", _p(crop, 0.10)),
    Variant("crop", "30%", _p(crop, 0.30)),
    Variant("crop", "50%", _p(crop, 0.50)),
    Variant("crop", "75% (25% kept)", _p(crop, 0.75)),
    Variant("rotation", "5deg", _p(rotate, 5)),
    Variant("rotation", "15deg", _p(rotate, 15)),
    Variant("rotation", "30deg", _p(rotate, 30)),
    Variant("rotation", "45deg", _p(rotate, 45)),
    Variant("rotation", "90deg", _p(rotate, 90)),
    Variant("flip", "horizontal", hflip),
    Variant("downscale", "1/2", _p(downscale, 0.5)),
    Variant("downscale", "1/4", _p(downscale, 0.25)),
    Variant("jpeg", "q50", identity, quality=50),
    Variant("jpeg", "q20", identity, quality=20),
    Variant("jpeg", "q10", identity, quality=10),
    Variant("brightness-contrast", "x1.3+30", _p(brightness_contrast, 1.3, 30)),
    Variant("brightness-contrast", "x0.6-20", _p(brightness_contrast, 0.6, -20)),
    Variant("grayscale", "luma", grayscale),
    Variant("blur", "sigma=0.5%", _p(blur, 0.005)),
    Variant("overlay", "text+logo", overlay),
    Variant("aspect", "width x1.5", _p(aspect, 1.5)),
    Variant("border", "white 12%", _p(border, 0.12)),
    Variant("combined", "crop20+half+q40", chain(_p(crop, 0.20), _p(downscale, 0.5)), quality=40),
    Variant("combined", "rot5+bright+overlay+q70", chain(_p(rotate, 5), _p(brightness_contrast, 1.2, 20), overlay), 70),
    Variant("perspective", "corners in 8-16%", _p(perspective, 0.16)),
    Variant("screenshot", "1280x800 window", screenshot, quality=90),
    Variant("colour", "hue+90 sat x1.5", _p(colour_shift, 90, 1.5)),
    # partial copies (issue 27): the original is a small part of the query
    Variant("small crop", "10% kept", _p(crop, 0.90)),
    Variant("small crop", "5% kept", _p(crop, 0.95)),
    Variant("inset", "40% width", _c(inset, 0.40), others=1),
    Variant("inset", "25% width", _c(inset, 0.25), others=1),
    Variant("collage", "2x2", _c(collage), others=3),
    Variant("meme", "caption bands", meme),
    Variant("social post", "phone, photo <= 30%", _p(social_post, 0.30), quality=90),
)

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(v.family for v in VARIANTS))
PARTIAL: tuple[str, ...] = tuple(dict.fromkeys(v.family for v in VARIANTS[27:]))  # issue 27: the original small


def pick_others(pool: Sequence[str], original: str, variant: Variant) -> list[str]:
    """A seeded choice of the variant.others photos (from pool, never indexed) put around `original`."""
    names = sorted(set(pool) - {original})
    picked = rng_for(original, f"{variant.name}#others").choice(len(names), variant.others, replace=False)
    return [names[int(i)] for i in picked]


def make_query(img: Image, original: str, variant: Variant, others: Sequence[Image] = ()) -> bytes:
    """The JPEG bytes of one transformed original (others: the photos a Composite puts around it)."""
    rng, composite = rng_for(original, variant.name), cast(Composite, variant.apply)
    out = composite(img, rng, others) if variant.others else cast(Transform, variant.apply)(img, rng)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, variant.quality])
    if not ok:
        raise ValueError(f"could not encode {variant.name} of {original}")
    return buf.tobytes()
