"""Rerank signals on real photos: SSIM agrees with scikit-image, ORB finds the same picture."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from pictrace.compare import MIN_REGION_INLIERS, Frame, evidence, plausible
from pictrace.images import DecodedImage, decode_image
from pictrace.rerank import (
    D4_NAMES,
    ORB_LONG_SIDE,
    ORB_RATIO,
    RANSAC_PX,
    THUMB_SIZE,
    QueryFeatures,
    Weights,
    as_query,
    compute_features,
    content_box,
    correspondences,
    geometric_inliers,
    gist,
    mirrored_features,
    orb_size,
    score,
    ssim,
    to_verify,
    trim_border,
)
from skimage.metrics import structural_similarity

from tests.conftest import PHOTOS, read
from tests.regions import iou


def query_of(bgr: np.ndarray) -> QueryFeatures:
    """A query's features from its (trimmed) pixels."""
    return as_query(compute_features(bgr))


def bgr(name: str) -> np.ndarray:
    return decode_image(read(name), max_bytes=10**8, max_pixels=10**8).bgr


def test_ssim_agrees_with_scikit_image_on_real_pairs() -> None:
    thumbs = [compute_features(bgr(n)).thumb for n in PHOTOS]
    for a in thumbs:
        for b in thumbs:
            ours = ssim(a, b)
            ref = structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
            )
            assert abs(ours - ref) < 1e-3


def test_features_have_the_documented_shapes() -> None:
    f = compute_features(bgr("astronaut.jpg"))
    assert f.thumb.shape == (THUMB_SIZE, THUMB_SIZE) and f.thumb.dtype == np.uint8
    assert len(f.keypoints) == len(f.descriptors) > 50
    assert f.descriptors.shape[1] == 32 and f.descriptors.dtype == np.uint8


def test_a_resized_copy_scores_higher_than_another_photo() -> None:
    original = bgr("astronaut.jpg")
    copy = cv2.resize(original, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    q = query_of(copy)
    same = score(0.9, q, compute_features(original), gist_score=0.9)
    other = score(0.9, q, compute_features(bgr("coffee.png")), gist_score=0.9)
    assert same.ssim > other.ssim and same.orb > other.orb and same.final > other.final
    assert same.inliers >= 30 > other.inliers and same.geometry == 1.0
    assert 0.0 <= other.final <= same.final <= 1.0
    assert same.explain == "same structure pixel by pixel (SSIM)"  # the heaviest weighted signal here
    geometric = score(0.9, q, compute_features(original), gist_score=0.9, weights=Weights(0.1, 0.1, 0.1, 1.0))
    assert geometric.explain == f"{geometric.inliers} ORB keypoints agree on one affine transform"


def test_image_without_keypoints_scores_zero_orb() -> None:
    flat = np.full((200, 300, 3), 127, np.uint8)
    q = query_of(flat)
    assert len(q.features.descriptors) == 0
    scores = score(0.5, q, compute_features(bgr("coffee.png")))
    assert scores.orb == 0.0 and scores.inliers == 0


def test_geometry_survives_a_crop_and_a_rotation() -> None:
    original = bgr("astronaut.jpg")
    h, w = original.shape[:2]
    turned = cv2.warpAffine(original, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0), (w, h))
    cropped = original[h // 5 :, : w - w // 5]
    for query in (turned, cropped):
        assert geometric_inliers(compute_features(query), compute_features(original))[1] >= 20
    assert geometric_inliers(compute_features(cropped), compute_features(bgr("chelsea.webp")))[1] < 10


def test_gist_finds_flips_turns_brightness_and_grayscale() -> None:
    original = bgr("chelsea.webp")
    target = gist(compute_features(original).thumb)
    gray = cv2.cvtColor(cv2.cvtColor(original, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cases = {
        "flip": (original[:, ::-1], {"flip"}),
        "rot90": (np.rot90(original), {"rot270"}),  # the query turned back matches the original
        "brightness": (cv2.convertScaleAbs(original, alpha=0.6, beta=-20), {"identity"}),
        "grayscale": (gray, {"identity"}),
    }
    other = gist(compute_features(bgr("coffee.png")).thumb)
    for name, (query, turns) in cases.items():
        variants = query_of(np.ascontiguousarray(query)).gists
        best = int(np.argmax(variants @ target))
        assert D4_NAMES[best] in turns, name
        assert float(variants[best] @ target) > 0.9 > float(np.max(variants @ other)), name


def test_uniform_borders_are_trimmed_and_content_is_kept() -> None:
    original = bgr("astronaut.jpg")
    padded = cv2.copyMakeBorder(original, 30, 30, 40, 40, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    assert trim_border(padded).shape == original.shape
    assert trim_border(original).shape == original.shape


def test_content_box_is_what_trim_border_keeps() -> None:
    original = bgr("astronaut.jpg")
    padded = cv2.copyMakeBorder(original, 30, 20, 40, 10, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    h, w = original.shape[:2]
    assert content_box(padded) == (30, 30 + h, 40, 40 + w)
    assert content_box(original) == (0, h, 0, w)


def test_correspondences_are_the_matches_geometric_inliers_counts() -> None:
    original = bgr("astronaut.jpg")
    h, w = original.shape[:2]
    cropped = original[h // 5 :, : w - w // 5]
    q, c = compute_features(cropped), compute_features(original)
    found = correspondences(q, c)
    assert (found.matches, found.inliers) == geometric_inliers(q, c)
    assert found.affine is not None and found.inliers >= 30
    mapped = found.query_points @ found.affine[:, :2].T + found.affine[:, 2]
    errors = np.linalg.norm(mapped - found.candidate_points, axis=1)
    assert np.all(errors[found.inlier] <= RANSAC_PX + 1e-3)
    # keypoints live in the ORB image: the long side scaled to ORB_LONG_SIDE
    ow, oh = orb_size(w, h)
    assert max(ow, oh) == ORB_LONG_SIDE and np.all(c.keypoints < (ow, oh))
    nothing = correspondences(query_of(np.full((50, 50, 3), 9, np.uint8)).features, c)
    assert nothing.matches == nothing.inliers == 0 and nothing.affine is None


def test_ratio_test_matches_are_brute_force_knn_matchings() -> None:
    """The ratio-test matches are those of OpenCV's BFMatcher.knnMatch (k=2), in the same order, for real pairs:
    the same picture cropped, a different picture, a mirror image."""
    original = bgr("astronaut.jpg")
    h, w = original.shape[:2]
    features = [
        compute_features(original),
        compute_features(original[h // 5 :, : w - w // 5]),
        compute_features(bgr("chelsea.webp")),
        mirrored_features(original),
    ]
    for q in features:
        for c in features:
            pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q.descriptors, c.descriptors, k=2)
            good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ORB_RATIO * p[1].distance]
            found = correspondences(q, c)
            assert found.matches == len(good) > 0
            assert np.array_equal(found.query_points, q.keypoints[[m.queryIdx for m in good]])
            assert np.array_equal(found.candidate_points, c.keypoints[[m.trainIdx for m in good]])


def decoded(image: np.ndarray) -> DecodedImage:
    return DecodedImage(np.ascontiguousarray(image), "png", image.shape[1], image.shape[0])


def test_evidence_locates_edited_copies_in_the_original_s_pixels() -> None:
    original = bgr("chelsea.webp")
    h, w = original.shape[:2]
    x0, y0, x1, y1 = w // 4, h // 5, w // 4 + w // 2, h // 5 + h // 2
    crop = original[y0:y1, x0:x1]
    padded = cv2.copyMakeBorder(crop, 25, 25, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))  # a border to trim
    indexed = compute_features(original)
    cases = {  # query, where it lies in the original, (rotation, mirrored) of the query relative to it
        "crop": (crop, (x0, y0, x1, y1), (0, False)),
        "crop with a border": (padded, (x0, y0, x1, y1), (0, False)),
        "turned": (np.rot90(crop), (x0, y0, x1, y1), (90, False)),
        "turned back": (np.rot90(crop, 3), (x0, y0, x1, y1), (-90, False)),
        "mirrored": (crop[:, ::-1], (x0, y0, x1, y1), (0, True)),
        "half size": (cv2.resize(original, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (0, 0, w, h), (0, False)),
    }
    for name, (image, where, (rotation, mirrored)) in cases.items():
        query = decoded(image)
        content = trim_border(query.bgr)
        features = replace(query_of(content), mirrored=mirrored_features(content))
        ev = evidence(
            features.features,
            features.mirrored,
            indexed,
            Frame.of_decoded(query),
            Frame.of_entry({"width": w, "height": h}),
        )
        assert ev.region is not None and iou(ev.region, where) > 0.9, name
        summary = ev.transform_summary()
        assert summary is not None and summary["mirrored"] is mirrored and ev.mirrored is mirrored, name
        assert abs(float(summary["rotation_degrees"]) - rotation) < 2, (name, summary)
        expected_scale = 0.5 if name == "half size" else 1.0
        assert abs(float(summary["scale"]) - expected_scale) < 0.05, (name, summary)
        # the inliers are in each image's own pixels: the query's points fall in the query, the others in the photo
        assert np.all(ev.query_points >= 0) and np.all(ev.query_points <= (query.width, query.height))
        assert np.all(ev.indexed_points >= 0) and np.all(ev.indexed_points <= (w, h))
    unrelated = decoded(bgr("coffee.png"))
    ev = evidence(
        compute_features(unrelated.bgr), None, indexed, Frame.of_decoded(unrelated), Frame.of_decoded(decoded(original))
    )
    assert ev.inliers < MIN_REGION_INLIERS and ev.region is None and ev.affine is None


def test_degenerate_transforms_are_not_evidence() -> None:
    """RANSAC may collapse the query onto a few pixels, where every match agrees: that is no transform a copy has."""
    turn = np.array([[0.0, -0.5, 100.0], [0.5, 0.0, 20.0]])  # a quarter turn at half size
    assert plausible(turn) and plausible(np.array([[-2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))  # mirrored, twice the size
    assert not plausible(np.array([[0.006, 0.0, 10.0], [0.0, 0.001, 5.0]]))  # measured between unrelated photos
    assert not plausible(np.array([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))  # one direction stretched 4x
    # a query of repeated texture against a photo: whatever RANSAC finds, a degenerate fit yields no inliers
    rng = np.random.default_rng(3)
    noise = cv2.resize(rng.integers(0, 255, (40, 40, 3), np.uint8), (400, 400), interpolation=cv2.INTER_NEAREST)
    original = bgr("chelsea.webp")
    query = decoded(noise)
    ev = evidence(
        compute_features(noise),
        None,
        compute_features(original),
        Frame.of_decoded(query),
        Frame.of_decoded(decoded(original)),
    )
    assert ev.region is None and (ev.degenerate or ev.inliers < MIN_REGION_INLIERS)


def test_to_verify_checks_the_best_by_each_weighed_signal() -> None:
    cosine = np.array([0.9, 0.8, 0.1, 0.0, 0.2, 0.3])
    gist_scores = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.99])
    quick = np.array([0.1, 0.9, 0.8, 0.0, 0.0, 0.0])
    # the best 2 by the quick score, the best 1 by cosine and the best 1 by gist
    assert to_verify(cosine, gist_scores, quick, 2) == {1, 2, 0, 5}
    # a fusion that does not weigh gist: no candidate is checked for its gist alone
    assert to_verify(cosine, None, quick, 2) == {1, 2, 0}
