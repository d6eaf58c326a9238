"""Why two images match: ORB correspondences, the affine transform and the matched region, and a picture of them.

Coordinates are each image's own pixels (the file's width and height, before any reduction while decoding), with
(0, 0) the top-left corner of the top-left pixel, x to the right and y down. The indexed side's keypoints come from
its index entry (ORB coordinates of the image with its uniform border trimmed); they are mapped back with the
entry's width and height, which is exact unless ingest trimmed a border: then only the picture (which decodes the
original, and so knows the border) is exact, and `Evidence.exact` says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from pictrace.errors import BadRequest, ImageTooLarge, NotFound, ObjectTooLarge, UpstreamError
from pictrace.images import DecodedImage, decode_image
from pictrace.index.layout import Entry
from pictrace.rerank import Features, content_box, correspondences, orb_size
from pictrace.results import Hit
from pictrace.settings import Settings
from pictrace.storage import Store
from pictrace.templates import TEMPLATE_INLIERS, agreement, shares_template, thumb_affine

logger = logging.getLogger(__name__)

#: pictures: each image scaled to this height (less if that would make it wider than MAX_SIDE_WIDTH)
PICTURE_HEIGHT = 480
MAX_SIDE_WIDTH = 800
PICTURE_GAP = 24
HEADER = 30
MAX_LINES = 150  # inlier lines drawn (the JSON lists every inlier)
PICTURE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
THUMBNAIL_SIDE = 320
#: fewer inliers than this name no region: chance agreements of unrelated images reach a handful (RANSAC, 6 px)
MIN_REGION_INLIERS = 12
#: the original is inset in the query when it covers a share of the query under this times the share of the original
#: the query covers (a whole-image copy covers about all of both; a meme's caption bands leave the photo ~0.8)
INSET_COVER = 0.9
#: a transform whose scale (either singular value, ORB pixels to ORB pixels) is outside this range, or that stretches
#: one direction more than MAX_STRETCH times the other, is degenerate: RANSAC collapsing the query onto a few pixels
#: makes every match an "inlier" (measured: up to 63 between unrelated textured photos, at scales below 0.01)
SCALE_RANGE = (0.1, 10.0)
MAX_STRETCH = 3.0
REGION_COLOUR = (40, 200, 40)  # BGR
OUTLIER_COLOUR = (200, 200, 200)


@dataclass(frozen=True)
class Frame:
    """How one image's ORB coordinates map to its own pixels."""

    width: int  # the file's pixels
    height: int
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1): the content ORB described, in the file's pixels
    orb: tuple[int, int]  # (width, height) of the image ORB ran on
    exact: bool = True  # False: the border ingest may have trimmed is unknown (assumed none)

    @classmethod
    def of_decoded(cls, image: DecodedImage) -> Frame:
        """The frame of a decoded image whose trimmed content was described (what ingest and search do)."""
        h, w = image.bgr.shape[:2]
        top, bottom, left, right = content_box(image.bgr)
        fx, fy = image.width / w, image.height / h
        box = (left * fx, top * fy, right * fx, bottom * fy)
        return cls(image.width, image.height, box, orb_size(right - left, bottom - top))

    @classmethod
    def of_entry(cls, meta: dict[str, Any]) -> Frame:
        """The frame of an indexed image from its metadata: exact if it records the content box it was described
        with (`content_box`: x0, y0, x1, y1 in its pixels), else assuming no border was trimmed."""
        width, height = int(meta.get("width") or 0), int(meta.get("height") or 0)
        if width <= 0 or height <= 0:
            raise BadRequest("the indexed image has no recorded size")
        recorded = meta.get("content_box")
        if isinstance(recorded, list | tuple) and len(recorded) == 4:
            x0, y0, x1, y1 = (float(v) for v in recorded)
            return cls(width, height, (x0, y0, x1, y1), orb_size(round(x1 - x0), round(y1 - y0)))
        return cls(width, height, (0.0, 0.0, float(width), float(height)), orb_size(width, height), exact=False)

    def to_pixels(self) -> np.ndarray:
        """3x3 matrix taking ORB pixel-index coordinates to the file's continuous pixel coordinates."""
        x0, y0, x1, y1 = self.box
        sx, sy = (x1 - x0) / self.orb[0], (y1 - y0) / self.orb[1]
        return np.array([[sx, 0.0, x0 + 0.5 * sx], [0.0, sy, y0 + 0.5 * sy], [0.0, 0.0, 1.0]])

    def outline(self) -> np.ndarray:
        """The content box's corners (4, 2), clockwise from the top left."""
        x0, y0, x1, y1 = self.box
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


@dataclass(frozen=True)
class Evidence:
    """What the geometric check found, in each image's own pixels."""

    matches: int  # ORB matches passing the ratio test
    inliers: int  # those agreeing on one affine transform (RANSAC)
    mirrored: bool  # the query matched mirrored
    query_points: np.ndarray  # (matches, 2)
    indexed_points: np.ndarray  # (matches, 2)
    inlier: np.ndarray  # (matches,) bool
    affine: np.ndarray | None  # (2, 3): query pixels -> indexed pixels (None under MIN_REGION_INLIERS inliers)
    region: np.ndarray | None  # (4, 2): the query's outline mapped into the indexed image (the same)
    query_outline: np.ndarray  # (4, 2): that outline in the query
    exact: bool
    degenerate: bool = False  # RANSAC's transform collapses or stretches the query: its inliers do not count
    original_region: np.ndarray | None = None  # (4, 2): the indexed image's outline mapped into the query
    inset: bool = False  # the indexed image sits inside the query (see placed_inside), not the query inside it
    agreement: float | None = None  # pictrace.templates: the share of the blocks they share that agree

    @property
    def template(self) -> bool:
        """Whether the two share only a template (pictrace.templates), not a picture."""
        return shares_template(self.inliers, self.agreement)

    def transform_summary(self) -> dict[str, float | bool] | None:
        """How the query sits in the indexed image: turned counter-clockwise by rotation_degrees (after a left-right
        mirror when mirrored), at `scale` query pixels per indexed pixel."""
        if self.affine is None:
            return None
        a = self.affine[:, :2]
        det = float(np.linalg.det(a))
        if abs(det) < 1e-12:
            return None
        b = np.linalg.inv(a)  # indexed pixels -> query pixels
        mirrored = det < 0
        turn = b @ np.diag([-1.0, 1.0]) if mirrored else b  # what is left after undoing the mirror
        angle = -math.degrees(math.atan2(float(turn[1, 0]), float(turn[0, 0])))  # y points down on screen
        return {
            "rotation_degrees": round((angle + 180) % 360 - 180, 1),
            "scale": round(1 / math.sqrt(abs(det)), 4),
            "mirrored": mirrored,
        }

    def region_box(self) -> list[float] | None:
        """The region's bounding box (x0, y0, x1, y1)."""
        return _box(self.region)

    def original_region_box(self) -> list[float] | None:
        """The original_region's bounding box (x0, y0, x1, y1), in the query's pixels."""
        return _box(self.original_region)


@dataclass
class Comparison:
    """A query compared with one indexed image: the score search would give and the evidence behind it."""

    hit: Hit
    evidence: Evidence
    query: dict[str, Any]  # what the query was (format and size, or id and keys)
    target: Entry
    query_image: DecodedImage | None = None  # decoded for the picture
    target_image: DecodedImage | None = None
    timings: dict[str, float] = field(default_factory=dict)


def evidence(
    query: Features,
    mirrored: Features | None,
    candidate: Features,
    query_frame: Frame,
    candidate_frame: Frame,
) -> Evidence:
    """The correspondences of the query (or of its mirror image, when that agrees better) with the candidate."""
    found = correspondences(query, candidate)
    flip = np.eye(3)
    flipped = False
    if mirrored is not None:
        other = correspondences(mirrored, candidate)
        if other.inliers > found.inliers:
            found, flipped = other, True
            # the mirror's ORB x' is the query's orb_width - 1 - x
            flip = np.array([[-1.0, 0.0, query_frame.orb[0] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    q_pix, c_pix = query_frame.to_pixels(), candidate_frame.to_pixels()
    q_points = _apply(q_pix @ flip, found.query_points)
    c_points = _apply(c_pix, found.candidate_points)
    affine = region = original_region = share = None
    inset = False
    outline = query_frame.outline()
    inlier = found.inlier
    degenerate = found.affine is not None and not plausible(found.affine)
    if degenerate:
        inlier = np.zeros_like(inlier)
    elif found.affine is not None and found.inliers >= MIN_REGION_INLIERS:
        orb_affine = np.vstack([found.affine, [0.0, 0.0, 1.0]])
        full = c_pix @ orb_affine @ flip @ np.linalg.inv(q_pix)  # flip is its own inverse
        affine = full[:2]
        region = _apply(full, outline)
        original_region = _apply(np.linalg.inv(full), candidate_frame.outline())
        inset = placed_inside(original_region, outline, region, candidate_frame.outline())
        if found.inliers >= TEMPLATE_INLIERS:
            moved = thumb_affine(full, query_frame.box, candidate_frame.box)
            share = agreement(query.thumb, candidate.thumb, moved)
    return Evidence(
        matches=found.matches,
        inliers=int(inlier.sum()),
        mirrored=flipped,
        query_points=q_points,
        indexed_points=c_points,
        inlier=inlier,
        affine=affine,
        region=region,
        query_outline=outline,
        exact=query_frame.exact and candidate_frame.exact,
        degenerate=degenerate,
        original_region=original_region,
        inset=inset,
        agreement=share,
    )


def placed_inside(
    original_in_query: np.ndarray, query: np.ndarray, query_in_original: np.ndarray, original: np.ndarray
) -> bool:
    """Whether the original sits inside the query (an inset, a collage, a meme, a screenshot) rather than the query
    inside the original (a crop) or on all of it: the share of the query the original covers is under INSET_COVER
    times the share of the original the query covers. Outlines (4, 2), each in its own image's pixels."""
    return _covered(original_in_query, query) < INSET_COVER * _covered(query_in_original, original)


def _covered(polygon: np.ndarray, outline: np.ndarray) -> float:
    """The share of a convex outline's area that a convex polygon covers."""
    area = abs(cv2.contourArea(outline.astype(np.float32)))
    inter, _ = cv2.intersectConvexConvex(polygon.astype(np.float32), outline.astype(np.float32))
    return float(inter) / area if area > 0 else 0.0


def _box(polygon: np.ndarray | None) -> list[float] | None:
    if polygon is None:
        return None
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    return [round(float(v), 1) for v in (*lo, *hi)]


def plausible(affine: np.ndarray) -> bool:
    """Whether an affine transform (ORB pixels to ORB pixels) could relate a copy to its original: a bounded scale
    and no strong stretch of one direction against the other."""
    big, small = np.linalg.svd(np.asarray(affine, np.float64)[:, :2], compute_uv=False)
    return bool(SCALE_RANGE[0] <= small and big <= SCALE_RANGE[1] and big <= MAX_STRETCH * small)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (n, 2) through a 3x3 (or 2x3) affine matrix."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def load_original(store: Store, settings: Settings, key: str) -> DecodedImage:
    """An indexed image's original from the bucket, within the limits every query image is held to."""
    try:
        data = store.get(key, max_bytes=settings.max_bytes).body
    except NotFound:
        raise NotFound(f"the original {key} is no longer in the bucket") from None
    except ObjectTooLarge as exc:
        raise ImageTooLarge(f"the original {key} is {exc.amount}; the limit is {settings.max_bytes} bytes") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("403", "AccessDenied"):  # a missing key, where the role may not list the images prefix
            raise NotFound(f"the original {key} cannot be read (gone, or not readable by this service)") from None
        raise UpstreamError(f"the original {key} could not be read ({code})") from exc
    except BotoCoreError as exc:
        raise UpstreamError(f"the original {key} could not be read ({type(exc).__name__})") from exc
    return decode_image(data, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels)


def thumbnail(image: DecodedImage, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG of the image whose long side is at most `side` pixels."""
    h, w = image.bgr.shape[:2]
    scale = min(1.0, side / max(h, w))
    small = cv2.resize(image.bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise UpstreamError("the thumbnail could not be encoded")
    return buf.tobytes()


def render(comparison: Comparison, fmt: str = "png") -> bytes:
    """Both images side by side (query left, indexed right), inlier matches as lines, outliers as faint dots, the
    query's outline and the matched region drawn in green; PNG or JPEG, at most 2 x MAX_SIDE_WIDTH wide."""
    if fmt not in PICTURE_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(PICTURE_FORMATS)} (or json)")
    if comparison.query_image is None or comparison.target_image is None:
        raise BadRequest("the comparison was made without its images")
    ev = comparison.evidence
    left, lscale = _fit(comparison.query_image)
    right, rscale = _fit(comparison.target_image)
    height = max(left.shape[0], right.shape[0])
    width = left.shape[1] + PICTURE_GAP + right.shape[1]
    canvas = np.full((HEADER + height, width, 3), 255, np.uint8)
    canvas[HEADER : HEADER + left.shape[0], : left.shape[1]] = left
    xr = left.shape[1] + PICTURE_GAP
    canvas[HEADER : HEADER + right.shape[0], xr : xr + right.shape[1]] = right

    def at_left(points: np.ndarray) -> np.ndarray:
        return points * lscale + (0.0, HEADER)

    def at_right(points: np.ndarray) -> np.ndarray:
        return points * rscale + (xr, HEADER)

    shift = 4  # sub-pixel drawing: coordinates in 1/16 pixel
    unit = 1 << shift

    def ipts(points: np.ndarray) -> np.ndarray:
        return np.round((points - 0.5) * unit).astype(np.int32)

    faint = canvas.copy()
    for p in np.vstack([at_left(ev.query_points[~ev.inlier]), at_right(ev.indexed_points[~ev.inlier])]):
        cv2.circle(faint, tuple(int(v) for v in ipts(p)), 2 * unit, OUTLIER_COLOUR, 1, cv2.LINE_AA, shift)
    cv2.addWeighted(faint, 0.5, canvas, 0.5, 0, dst=canvas)
    inliers = np.flatnonzero(ev.inlier)
    if len(inliers) > MAX_LINES:
        inliers = inliers[np.linspace(0, len(inliers) - 1, MAX_LINES).round().astype(int)]
    lines = canvas.copy()
    for n, i in enumerate(inliers):
        hue = int(180 * n / max(1, len(inliers)))
        colour = cv2.cvtColor(np.array([[[hue, 220, 230]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        c = tuple(int(v) for v in colour)
        a = tuple(int(v) for v in ipts(at_left(ev.query_points[i : i + 1])[0]))
        b = tuple(int(v) for v in ipts(at_right(ev.indexed_points[i : i + 1])[0]))
        cv2.line(lines, a, b, c, 1, cv2.LINE_AA, shift)
        cv2.circle(lines, a, 3 * unit, c, 1, cv2.LINE_AA, shift)
        cv2.circle(lines, b, 3 * unit, c, 1, cv2.LINE_AA, shift)
    cv2.addWeighted(lines, 0.85, canvas, 0.15, 0, dst=canvas)
    if ev.inset and ev.original_region is not None:  # where the original sits in the query
        cv2.polylines(canvas, [ipts(at_left(ev.original_region))], True, REGION_COLOUR, 3, cv2.LINE_AA, shift)
    else:  # where the query sits in the original
        cv2.polylines(canvas, [ipts(at_left(ev.query_outline))], True, REGION_COLOUR, 2, cv2.LINE_AA, shift)
        if ev.region is not None:
            cv2.polylines(canvas, [ipts(at_right(ev.region))], True, REGION_COLOUR, 3, cv2.LINE_AA, shift)
    cv2.putText(canvas, _caption(comparison), (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 88]
    ok, buf = cv2.imencode(ext, canvas, params)
    if not ok:
        raise UpstreamError("the picture could not be encoded")
    return buf.tobytes()


def _fit(image: DecodedImage) -> tuple[np.ndarray, float]:
    """The image scaled to the picture's height (or width limit), and the scale from its file's pixels."""
    h, w = image.bgr.shape[:2]
    scale = min(PICTURE_HEIGHT / h, MAX_SIDE_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = cv2.resize(image.bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return resized, size[0] / image.width


def _caption(comparison: Comparison) -> str:
    ev = comparison.evidence
    match = getattr(comparison.hit, "match", None)
    verdict = "copy" if match is True else "not a copy" if match is False else ""
    parts = [f"{verdict}  " if verdict else "", f"similarity {comparison.hit.similarity:.1f}%"]
    if ev.degenerate:
        parts.append(f" - {ev.matches} ORB matches, no plausible transform between them")
    else:
        parts.append(f" - {ev.inliers} of {ev.matches} ORB matches agree on one affine transform")
    summary = ev.transform_summary()
    if summary is not None:
        parts.append(f" (rotation {summary['rotation_degrees']:g} deg, scale {summary['scale']:.2f}")
        parts.append(", mirrored)" if summary["mirrored"] else ")")
    return "".join(parts)


def evidence_json(ev: Evidence, max_pairs: int = 500) -> dict[str, Any]:
    """The evidence as the API answers it: counts, inlier correspondences (at most max_pairs), transform, region."""
    inliers = np.flatnonzero(ev.inlier)[:max_pairs]

    def rounded(points: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 1), round(float(y), 1)] for x, y in points]

    return {
        "matches": ev.matches,
        "inliers": ev.inliers,
        "mirrored": ev.mirrored,
        "correspondences": [
            {"query": q, "indexed": i}
            for q, i in zip(rounded(ev.query_points[inliers]), rounded(ev.indexed_points[inliers]), strict=True)
        ],
        "affine": None if ev.affine is None else [[round(float(v), 6) for v in row] for row in ev.affine],
        "transform": ev.transform_summary(),
        "region": None if ev.region is None else rounded(ev.region),
        "region_box": ev.region_box(),
        "query_outline": rounded(ev.query_outline),
        "original_region": None if ev.original_region is None else rounded(ev.original_region),
        "original_region_box": ev.original_region_box(),
        "inset": ev.inset,
        "agreement": None if ev.agreement is None else round(ev.agreement, 3),
        "template": ev.template,
        "exact": ev.exact,
        "degenerate": ev.degenerate,
    }
