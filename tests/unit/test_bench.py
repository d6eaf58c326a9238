"""The bench's pure helpers: ranking metrics on hand-made rankings, the query transforms, the results' schema, and
the goal verdicts and tables the report renders. (The bench itself is `make bench`, not a test.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pictrace.index.backend import MemoryBackend
from pictrace.index.layout import Entry
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.rows import Loaded
from pictrace.rerank import compute_features

from bench import fit_fusion, metrics, results, stack, transforms
from bench.metrics import Quality
from bench.models import ModelConfig
from bench.phases.large_ingest import LargeIngest, NoLargeImages
from bench.profile import FULL, QUICK
from bench.report import goals, page, tables
from bench.results import ModelResult, Results
from tests.conftest import DATA

# --- metrics ---------------------------------------------------------------------------------------------------------


def test_first_rank() -> None:
    assert metrics.first_rank(["a", "b", "c"], {"c"}) == 3
    assert metrics.first_rank(["a", "b", "c"], {"b", "c"}) == 2
    assert metrics.first_rank(["a", "b"], {"z"}) is None
    assert metrics.first_rank([], {"a"}) is None


def test_average_precision_one_relevant_is_reciprocal_rank() -> None:
    assert metrics.average_precision(["x", "a"], {"a"}) == 0.5
    assert metrics.average_precision(["a"], {"a"}) == 1.0
    assert metrics.average_precision(["x", "y", "z", "a"], {"a"}) == 0.25
    assert metrics.average_precision(["x", "y"], {"a"}) == 0.0  # not returned: AP 0


def test_average_precision_several_relevant() -> None:
    # relevant at positions 2 and 4: (1/2 + 2/4) / 2
    assert metrics.average_precision(["a", "b", "c", "d"], {"b", "d"}) == pytest.approx(0.5)
    # relevant at 1 and 3: (1/1 + 2/3) / 2
    assert metrics.average_precision(["b", "a", "d"], {"b", "d"}) == pytest.approx(5 / 6)
    # one of two relevant missing: (1/1 + 0) / 2
    assert metrics.average_precision(["a", "x"], {"a", "z"}) == pytest.approx(0.5)
    # a repeated id counts once
    assert metrics.average_precision(["a", "a", "b"], {"a", "b"}) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        metrics.average_precision(["a"], set())


def test_recall_at_k() -> None:
    ranks = [1, 2, None, 7, 1]
    assert metrics.recall_at(ranks, 1) == pytest.approx(2 / 5)
    assert metrics.recall_at(ranks, 5) == pytest.approx(3 / 5)
    assert metrics.recall_at(ranks, 10) == pytest.approx(4 / 5)
    assert math.isnan(metrics.recall_at([], 1))


def test_percentile_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    values = list(rng.exponential(100, size=37))
    for p in (0, 5, 50, 90, 95, 99, 100):
        assert metrics.percentile(values, p) == pytest.approx(float(np.percentile(values, p)))
    assert metrics.percentile([3.0], 95) == 3.0
    assert math.isnan(metrics.percentile([], 50))
    with pytest.raises(ValueError):
        metrics.percentile([1.0], 101)


def test_summarise() -> None:
    ranks: list[int | None] = [1, 3, None, 12]
    aps = [1.0, 1 / 3, 0.0, 1 / 12]
    s = metrics.summarise(ranks, aps)
    assert s["recall@1"] == 0.25
    assert s["recall@5"] == 0.5
    assert s["recall@10"] == 0.5
    assert s["mAP"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 4)
    assert s["queries"] == 4


# --- transforms ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = cv2.imread(str(DATA / "astronaut.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_families_and_parameters_are_the_issues() -> None:
    assert transforms.FAMILIES == (
        "crop",
        "rotation",
        "flip",
        "downscale",
        "jpeg",
        "brightness-contrast",
        "grayscale",
        "blur",
        "overlay",
        "aspect",
        "border",
        "combined",
        "perspective",
        "screenshot",
        "colour",
        "small crop",
        "inset",
        "collage",
        "meme",
        "social post",
    )
    params = {f: [v.param for v in transforms.VARIANTS if v.family == f] for f in transforms.FAMILIES}
    assert params["crop"] == ["10%", "30%", "50%", "75% (25% kept)"]
    assert params["rotation"] == ["5deg", "15deg", "30deg", "45deg", "90deg"]
    assert params["downscale"] == ["1/2", "1/4"]
    assert [v.quality for v in transforms.VARIANTS if v.family == "jpeg"] == [50, 20, 10]
    assert len(params["combined"]) == 2
    assert len({v.name for v in transforms.VARIANTS}) == len(transforms.VARIANTS)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_crop_removes_that_share_of_the_area(photo: np.ndarray, fraction: float) -> None:
    out = transforms.crop(photo, rng(), fraction)
    h, w = photo.shape[:2]
    assert out.shape[0] * out.shape[1] / (h * w) == pytest.approx(1 - fraction, abs=0.01)
    assert out.shape[0] / out.shape[1] == pytest.approx(h / w, abs=0.01)
    r = rng()  # the window is where the same generator puts it
    y = int(r.integers(0, h - out.shape[0] + 1))
    x = int(r.integers(0, w - out.shape[1] + 1))
    assert np.array_equal(out, photo[y : y + out.shape[0], x : x + out.shape[1]])


def test_rotation_90_is_exact_and_small_angles_keep_the_canvas(photo: np.ndarray) -> None:
    out = transforms.rotate(photo, rng(), 90)
    assert out.shape == (photo.shape[1], photo.shape[0], 3)
    assert np.array_equal(out, np.rot90(photo))  # counter-clockwise
    small = transforms.rotate(photo, rng(), 15)
    assert small.shape == photo.shape
    assert small[0, 0].tolist() == [0, 0, 0]  # a corner left black


def test_flip_downscale_grayscale_aspect_border(photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    flipped = transforms.hflip(photo, rng())
    assert np.array_equal(flipped[:, ::-1], photo)
    assert transforms.downscale(photo, rng(), 0.25).shape[:2] == (round(h / 4), round(w / 4))
    assert transforms.grayscale(photo, rng()).shape == (h, w)
    assert transforms.aspect(photo, rng(), 1.5).shape[:2] == (h, round(w * 1.5))
    bordered = transforms.border(photo, rng(), 0.12)
    py, px = round(h * 0.12), round(w * 0.12)
    assert bordered.shape[:2] == (h + 2 * py, w + 2 * px)
    assert (bordered[:py] == 255).all() and np.array_equal(bordered[py : py + h, px : px + w], photo)


def test_brightness_contrast_and_overlay_change_pixels(photo: np.ndarray) -> None:
    brighter = transforms.brightness_contrast(photo, rng(), 1.3, 30)
    assert brighter.mean() > photo.mean()
    darker = transforms.brightness_contrast(photo, rng(), 0.6, -20)
    assert darker.mean() < photo.mean()
    over = transforms.overlay(photo, rng())
    changed = np.any(over != photo, axis=-1).mean()
    assert 0.05 < changed < 0.5


def test_queries_are_deterministic_decodable_jpegs(photo: np.ndarray) -> None:
    others = [photo[::-1], photo[:, ::-1], photo[::2]]
    for variant in transforms.VARIANTS:
        a = transforms.make_query(photo, "astronaut.jpg", variant, others)
        b = transforms.make_query(photo, "astronaut.jpg", variant, others)
        assert a == b, variant.name
        assert a[:3] == b"\xff\xd8\xff"
        assert cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    jpeg = [v for v in transforms.VARIANTS if v.family == "jpeg"]
    sizes = [len(transforms.make_query(photo, "astronaut.jpg", v)) for v in jpeg]
    assert sizes == sorted(sizes, reverse=True)  # q50 > q20 > q10


def test_random_choices_depend_on_the_original() -> None:
    a = transforms.rng_for("a.jpg", "crop/30%").integers(0, 1 << 30)
    b = transforms.rng_for("b.jpg", "crop/30%").integers(0, 1 << 30)
    assert a == transforms.rng_for("a.jpg", "crop/30%").integers(0, 1 << 30)
    assert a != b


# --- goal verdicts ----------------------------------------------------------------------------------------------------


def _family(r1: float, short50: float) -> dict[str, float]:
    figures = {"recall@1": r1, "recall@5": r1, "recall@10": r1, "mAP": r1, "queries": 10, "shortlist@50": short50}
    return {**figures, "shortlisted": short50, "shortlist@1": short50, "shortlist@10": short50}


def _quality(families: dict[str, dict[str, float]]) -> Quality:
    overall, queries = _family(1.0, 1.0), {"positive": 10 * len(families), "negative": 0}
    return Quality(families, {}, overall, queries, 1.0, 1.0, None, {}, 0.2, 0.9)


def _default_model(**figures: Any) -> dict[str, ModelResult]:
    """The default model's results, with figures (quality, ingest_large, ...)."""
    return {"sscd": ModelResult(ModelConfig("sscd", "sscd", None, default=True), "built", **figures)}


def test_harder_queries(photo: np.ndarray) -> None:
    shot = transforms.screenshot(photo, rng())
    assert shot.shape == (transforms.SCREEN[1], transforms.SCREEN[0], 3)
    warped = transforms.perspective(photo, rng(), 0.16)
    assert warped.shape == photo.shape and (warped[0, 0] == 0).all()  # a corner of the canvas is left black
    shifted = transforms.colour_shift(photo, rng(), 90, 1.5)
    assert shifted.shape == photo.shape and np.abs(shifted.astype(int) - photo.astype(int)).mean() > 10


def test_micro_ap_pools_every_query_negatives_included() -> None:
    # three positive queries; the negative query's wrong prediction scores between two right ones
    predictions = [(0.9, True), (0.8, False), (0.7, True), (0.2, False)]
    assert metrics.micro_ap(predictions, positives=3) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert metrics.micro_ap([(0.9, True), (0.5, True)], positives=2) == 1.0
    assert metrics.precision_at_recall(predictions, 2, 0.9) == pytest.approx(2 / 3)
    assert metrics.precision_at_recall(predictions, 3, 0.9) == 0.0


def test_threshold_for_precision_keeps_the_most_recall() -> None:
    predictions = [(0.95, True), (0.9, True), (0.8, False), (0.7, True), (0.6, True), (0.5, False)]
    assert metrics.threshold_for_precision(predictions, 0.99) == pytest.approx(0.85)
    assert metrics.threshold_for_precision(predictions, 0.75) == pytest.approx(0.55)
    assert metrics.threshold_for_precision([(0.5, False)], 0.99) == math.inf
    called = [(s >= 0.85, c) for s, c in predictions]
    assert metrics.verdict_quality(called, positives=5) == {"precision": 1.0, "recall": 0.4, "called": 2, "true": 2}


def test_shortlist_rule_and_replay() -> None:
    record = {"cos_rank": 30, "gist_rank": 4}
    assert metrics.in_shortlist(record, 10) and not metrics.in_shortlist(record, 10, gist_half=False)
    assert metrics.in_shortlist(record, 50, gist_half=False) and not metrics.in_shortlist(record, 5)
    # two candidates: the original wins on ssim and geometry, the other on cosine
    hits = np.array([[0, 0.9, 0.1, 0.1, 0, 0, -1], [1, 0.6, 0.5, 0.9, 40, 0, -1]], dtype=float)
    by_cosine = metrics.replay(hits, fit_fusion.Weights(cosine=1, gist=0, ssim=0, geometry=0), verify=16)
    assert by_cosine[0] > by_cosine[1]
    fused = metrics.replay(hits, fit_fusion.Weights(cosine=1, gist=0, ssim=1, geometry=1), verify=16)
    assert fused[1] > fused[0] and fused[1] == pytest.approx((0.6 + 0.9 + 1.0) / 3)
    records = [{"positive": True, "family": "crop", "original": "a", "hits": hits.tolist(), "rank": 2, "ap": 0.5}]
    (again,) = metrics.replayed(records, fit_fusion.Weights(cosine=1, gist=0, ssim=1, geometry=1), 16)
    assert again["rank"] == 1 and again["hits"][0][0] == 1


def test_logistic_fit_orders_scores() -> None:
    x = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=float)
    a, b = fit_fusion.fit_logistic(x, y)
    assert a > 0 and 0.2 < -b / a < 0.7  # P = 0.5 between the classes


def test_split_keeps_each_original_on_one_side() -> None:
    records = [{"original": n, "positive": n != "c"} for n in "abcdab"]
    fit, held = fit_fusion.split(records)
    assert {r["original"] for r in fit} == {"a", "c"} and {r["original"] for r in held} == {"b", "d"}


def test_recall_goal_names_where_each_failing_family_loses() -> None:
    families = {"crop": _family(1.0, 1.0), "grayscale": _family(0.6, 0.7), "flip": _family(0.9, 1.0)}
    r = Results(profile=FULL, models=_default_model(quality=_quality(families)))
    final = "final recall@1 ≥ 0.97 in every family"
    (goal,) = [g for g in goals.goals(r) if g["goal"] == final]
    assert goal["met"] is False
    assert "grayscale 0.60 (30 % never shortlisted, 10 % outranked in the rerank)" in goal["why"]
    assert "flip 0.90 (0 % never shortlisted, 10 % outranked" in goal["why"]
    assert goal["measured"].startswith("lowest: grayscale 0.600; 1 of 3 families met")
    r.models["sscd"].quality = _quality({"crop": _family(0.97, 1.0)})
    (goal,) = [g for g in goals.goals(r) if g["goal"] == final]
    assert goal["met"] is True and goal["why"] == ""


def test_latency_goal_names_the_costliest_stage() -> None:
    stages = {s: {"p50": v, "p95": v} for s, v in {"decode": 5, "embed": 60, "fetch": 150, "rerank": 120}.items()}
    r = Results(
        profile=FULL,
        latency_keys={"large": "N=10000 cold"},
        latency={"N=10000 cold": {**stages, "total": {"p50": 335.0, "p95": 400.0}, "queries": 3}},
    )
    issue12, cold = goals.goals(r)  # issue 12's 300 ms and issue 14's 250 ms, both cold (no warm pass here)
    assert issue12["met"] is False and cold["met"] is False
    assert issue12["why"].startswith("costliest stage: fetch (150 ms")
    assert "fetch 150 ms (45 %)" in cold["measured"]
    warm = {s: {"p50": v, "p95": v} for s, v in {"decode": 5, "embed": 60, "fetch": 0, "rerank": 50}.items()}
    r.latency_keys["large_warm"] = "N=10000 warm"
    r.latency["N=10000 warm"] = {**warm, "total": {"p50": 120.0, "p95": 140.0}, "queries": 3}
    *_, warm_goal = goals.goals(r)
    assert warm_goal["goal"].startswith("search p50 ≤ 150 ms, warm") and warm_goal["met"] is True


def test_table_is_aligned_markdown() -> None:
    text = tables.table(["a", "bb"], [["x", 1.23456], ["longer", 12345.6]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("|:--") and lines[1].endswith("-:|")  # the first column left-aligned, numbers right
    assert "1.235" in text and "12345.6" in text


# --- the bench's index helpers (public seams only) --------------------------------------------------------------------


class _NoRows:
    """A RowSource with nothing in it."""

    def refresh(self) -> tuple[dict[str, str], Callable[[list[str]], Loaded]]:
        return {}, lambda ids: Loaded({})


def test_padded_index_holds_synthetic_rows_and_counts_them_in_shortlists(photo: np.ndarray) -> None:
    features = compute_features(photo)
    embedding = np.ones(8, np.float32) / np.sqrt(8)
    template = Entry("0" * 64, ("images/a.jpg",), embedding, features)
    padding = stack.PaddedRows(_NoRows(), 6, template, seed=1)
    index = EmbeddingIndex(padding, refresh_seconds=0)
    assert index.refresh(force=True) == 6
    assert index.refresh(force=True) == 0  # the synthetic rows' versions never change
    assert set(index.ids) == set(padding.rows)
    assert {name: m.shape for name, m in index.matrices.items()} == {"embedding": (6, 8), "gist": (6, 256)}
    np.testing.assert_allclose(np.linalg.norm(index.matrix, axis=1), 1.0, rtol=1e-5)
    assert sorted(index.keys[i] for i in index.ids) == sorted((f"images/synthetic/{n}.jpg",) for n in range(6))
    again = EmbeddingIndex(stack.PaddedRows(_NoRows(), 6, template, seed=1), refresh_seconds=0)
    again.refresh(force=True)  # the same rows, the same vectors, whatever order they load in
    for row, i in enumerate(index.ids):
        np.testing.assert_array_equal(index.matrix[row], again.matrix[list(again.ids).index(i)])


def test_rank_probe_ranks_the_target_over_every_row(photo: np.ndarray) -> None:
    from bench.searching import RankProbe

    template = Entry("0" * 64, ("images/a.jpg",), np.ones(8, np.float32) / np.sqrt(8), compute_features(photo))
    index = EmbeddingIndex(stack.PaddedRows(_NoRows(), 40, template, seed=2), refresh_seconds=0)
    probe = RankProbe(MemoryBackend(index))
    probe.refresh(force=True)
    target = index.ids[7]
    query, gists = index.matrix[7], np.repeat(index.matrices["gist"][7][None], 8, axis=0)
    probe.target = target
    found = probe.candidates(query, gists, 4, None)
    assert probe.ranks == (1, 1)  # its own vectors: first by cosine and by gist
    assert target in [c.id for c in found]
    assert len(found) <= 4
    assert probe.count() == 40
    probe.candidates(index.matrix[3], gists, 4, None)  # a later call for the same query (a region of it)
    assert probe.ranks == (1, 1)  # still the query's own: the region search does not overwrite them


def _run_with_sections() -> Results:
    """A quick run's results with a quality pass, a latency pass, a large ingest and a capacity row."""
    from bench.phases.queries import QueriesSummary

    stages = {s: {"p50": 10.0, "p95": 20.0} for s in tables.STAGES}
    run = {"n": 20_000, "dim": 512, "dtype": "float16", "segments": 1, "segment_bytes": 8e6, "gets": 3, "load_s": 0.2}
    run |= {"scan_p50_ms": 4.0, "masked_scan_ms": 6.0, "matrices_bytes": 6e7, "rss_growth": 7e7, "peak_rss": 3e8}
    capacity = {"commit": "abc1234", "pictrace_uncommitted": [], "segment_rows": 20_000, "k": 50, "query_noise": 0.05}
    capacity |= {"mask_prefix": "images/7/", "machine_memory_bytes": 2**34, "agreement": [], "failures": []}
    return Results(
        profile=QUICK,
        models=_default_model(quality=_quality({"crop": _family(1.0, 1.0)}), ingest_large=_large_ingest()),
        queries=QueriesSummary(10, 1, 10, 0, ["crop/10%"], 1000.0),
        latency={"N=200 cold": {**stages, "total": {"p50": 60.0, "p95": 80.0}, "queries": 3}},
        latency_keys={"cold": "N=200 cold"},
        capacity={**capacity, "runs": [{**run, "scan_ms": [4.0] * 15, "pictrace_digest": "abc"}]},  # type: ignore[typeddict-item]
    )


def test_the_templates_render_each_section_the_run_has_with_its_notes() -> None:
    """tables.md.j2 renders a section, with its notes, for each result the run has (and none for what it lacks);
    benchmarks.md.j2 holds the tables and the model choice."""
    text = page.render_tables(_run_with_sections())
    for note in (
        "µAP (DISC2021): every query's top 10",  # the models side by side
        "product: the top size/2 by centred embedding cosine",  # shortlist recall
        "Positive queries only. R@k, mAP: the final ranking",  # quality per variant
        "Beyond the real entries, synthetic rows stand in, for the scan.",  # latency
        "Each row a fresh process loading 20,000-row segments (embedding 512-d",  # capacity
        "| 20,000 | float16 ",
        "### Goals",
    ):
        assert note in text, note
    assert (
        "### Cold starts" not in text and "### Scan, memory, backends" not in text and "## PicTrace bench" not in text
    )
    templates = Path(page.__file__).parent / "templates"
    assert "{{ tables }}" in (templates / "benchmarks.md.j2").read_text()
    assert '{% include "choice.md.j2" %}' in (templates / "benchmarks.md.j2").read_text()


def test_results_json_is_read_back_typed_and_another_version_is_refused() -> None:
    """results.json round-trips into the same typed Results; a file of another version (1 had no "schema") is
    refused with what to do."""
    import dataclasses
    import json

    r = _run_with_sections()
    again = results.from_json(json.loads(json.dumps(dataclasses.asdict(r))))
    assert again == r and again.schema == results.SCHEMA and isinstance(again.ingest_large, LargeIngest)
    assert again.quality is not None and again.quality.lowest_family[0] == "crop"
    v1 = json.loads(json.dumps(dataclasses.asdict(r)))
    del v1["schema"]
    with pytest.raises(ValueError, match="schema 1: this bench reads 2"):
        results.from_json(v1)


def _large_ingest(**changed: Any) -> LargeIngest:
    stages = {"s3_get": 20.0, "sha256": 1.0, "decode": 90.0, "embed": 200.0, "features": 40.0, "write": 16.0}
    batch = {"read": 30.0, "sha256": 1.0, "decode": 30.0, "features": 12.0, "embed": 230.0, "index": 90.0}
    figures: dict[str, Any] = {
        "images": [{"file": "a.jpg", "mp": 16.8, "bytes": 3_000_000}],
        "ingest_ms": [1428.5],
        "ingest_per_s": 3.5,
        "model_per_s": 5.0,
        "ratio": 0.7,
        "stages_mean_ms": stages,
        "ingest_mean_ms": 285.7,
        "batch_size": 5,
        "batch_stages_mean_ms": batch,
        "model_ms": [200.0],
        "cpu_ms": {"ingest": 480.0, "model": 200.0},  # stages one after another: 367 ms
    }
    return LargeIngest(**{**figures, **changed})


def test_the_ingest_goal_compares_its_cpu_with_its_stages_one_after_another() -> None:
    """Issue 29: ingest CPU per image ≤ 1.2× the sum of its stages run one after another (read, hash, decode,
    features, model, write); the bare model's throughput is reported beside it, no longer a goal."""
    r = Results(profile=FULL, models=_default_model(ingest_large=_large_ingest()))
    goal = goals.ingest_goal(r, {})
    assert goal is not None and goal["met"] is False
    assert goal["measured"].startswith("1.31× (CPU 480 ms per image vs its stages one after another 367 ms")
    assert "throughput 0.70× the bare model's" in goal["measured"]
    assert "costliest decode (90.0 ms, 54 %)" in goal["why"]  # of the stages besides the model, timed apart
    assert "in the batches, overlapping: read 30.0, sha256 1.0, decode 30.0" in goal["why"]
    r.models["sscd"].ingest_large = _large_ingest(cpu_ms={"ingest": 400.0, "model": 200.0})
    met = goals.ingest_goal(r, {})
    assert met is not None and met["met"] is True and met["why"] == ""
    r.models["sscd"].ingest_large = NoLargeImages("no large JPEGs")  # not measured: no goal
    assert goals.ingest_goal(r, {}) is None
    r.models["sscd"].ingest_large = _large_ingest()
    section = page.render_tables(r)
    assert "in batches of 5, overlapping" in section and "CPU time (this process)" in section


def test_other_processes_cpu_is_counted_phase_by_phase() -> None:
    """A phase where the moto server is reaped counts its CPU twice (live by pid, then as a finished child): that
    must not hide what other processes took in another phase."""
    from bench.run import Clock, load_summary

    clock = Clock()
    clock.phases = {"ingest": 200.0, "large ingest": 100.0}
    clock.cpu = {
        "ingest": {"bench": 5.0, "children": 190.0, "s3 (moto)": 110.0, "machine": 390.0, "steal": 12.0},  # 85 s
        "large ingest": {"bench": 150.0, "children": 600.0, "s3 (moto)": 40.0, "machine": 190.0, "steal": 3.0},
    }
    load = load_summary(clock, (0.0, 0.0, 0.0))
    assert load["others_core_s"] == 85.0 and load["ours_core_s"] == 1095.0
    assert load["steal_core_s"] == 15.0  # the hypervisor's, neither ours nor other processes'
    assert "gave 15 core-seconds of this virtual machine's cores to other guests" in page.steal_sentence(load)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu avx2 avx512f avx512_vnni", "AMD EPYC (AVX-512 VNNI)"),
        ("fpu avx2 avx_vnni", "AMD EPYC (AVX-VNNI)"),
        ("fpu avx2 fma", "AMD EPYC (AVX2, no VNNI)"),
        ("fpu sse4_2", "AMD EPYC (no VNNI)"),
    ],
)
def test_the_machine_line_names_the_cpus_int8_instructions(tmp_path: Path, flags: str, expected: str) -> None:
    """The bench's machine line says whether the CPU has VNNI, which the int8 model's speed depends on."""
    from bench.phases.machine import cpu_model

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_model(cpuinfo) == expected
    assert cpu_model(tmp_path / "missing") == "unknown"


def _duplicates() -> dict[str, Any]:
    pair = {"truth": 180, "found": 170, "recorded": 720, "recall": 0.944, "precision": 0.236}
    build = {"images": 75, "total_s": 30.0, "images_per_s": 2.5, "workers": 2}
    rebuild = {"images": 75, "handler_ms_per_image": 122.0, "memory_mb": 2048, "concurrency": 5}
    return {
        "sources": 13,
        "negatives": 3,
        "groups": pair,
        "links": {**pair, "found": 161, "recorded": 178, "precision": 0.904},
        "recall_by_variant": {"crop/30%": {"groups": 0.97, "links": 0.94}, "original": {"groups": 0.96, "links": 0.9}},
        "wrong_links": [["images/edits/a-screenshot.jpg", "images/edits/b-screenshot.jpg"]],
        "missed_pairs": [],
        "without_check": build,
        "with_check": {**build, "images_per_s": 1.75},
        "throughput_ratio": 0.75,
        "throughput_rounds": [0.7, 0.8],
        "checked_ratio": 0.5,
        "latency": {"events": 170, "pairs": 161, "p50_s": 10.2, "p95_s": 13.2},
        "checks_dead_lettered": 0,
        "rebuild": {**rebuild, "hours_per_100k": 0.68, "usd_per_100k": 0.42},
    }


def test_the_copies_phase_renders_with_its_goals_and_as_not_measured_when_it_failed() -> None:
    """Issue 28: the duplicates phase's table and goals; a run whose phase failed says "not measured"."""
    import dataclasses

    r = dataclasses.replace(_run_with_sections(), duplicates=_duplicates())
    text = page.render_tables(r)
    assert "### Copies within the collection" in text and "| crop/30%" in text and "| **all pairs: precision**" in text
    assert "0.944 (170 of 180 pairs); direct links 0.944" in text and "17 links between different sources" in text
    assert "0.75× over 2 rounds ABBA (0.70×, 0.80×; the scored one 1.8 vs 2.5 images/s)" in text
    assert "p50 10.2 s, p95 13.2 s" in text and "$0.42 per 100k" in text
    assert "### Copies" not in page.render_tables(_run_with_sections())
    failed = dataclasses.replace(_run_with_sections(), errors={"duplicates": "RuntimeError: boom"})
    assert text.count("copies in the collection") == 2
    assert page.render_tables(failed).count("not measured (RuntimeError: boom)") == 5
    assert "**Copies within the collection**" in (Path(page.__file__).parent / "templates/benchmarks.md.j2").read_text()


def test_issue_27_goals_judge_the_partial_families_apart_and_their_verdict_recall() -> None:
    """Issue 27: recall@1 ≥ 0.99 in the existing families, ≥ 0.97 and verdict recall ≥ 0.90 in the partial ones."""
    assert goals.PARTIAL == ("small crop", "inset", "collage", "meme", "social post")
    families = {"crop": _family(0.99, 1.0), "flip": _family(0.98, 1.0)}
    families |= {
        "inset": {**_family(0.97, 1.0), "verdict_recall": 0.95},
        "meme": {**_family(0.9, 0.9), "verdict_recall": 0.8},
    }
    r = Results(profile=FULL, models=_default_model(quality=_quality(families)))
    judged = {g["goal"].split(" in ")[0]: g for g in goals.goals(r)}
    existing, partial, verdict = (
        judged[f"sscd: {k}"] for k in ("recall@1 ≥ 0.99", "recall@1 ≥ 0.97", "verdict recall ≥ 0.90")
    )
    assert existing["met"] is False and existing["measured"] == "lowest: flip 0.980; 1 of 2 met"
    assert "but the partial-copy families (small crop, inset" in existing["goal"] and existing["why"].startswith(
        "flip 0.98"
    )
    assert partial["met"] is False and partial["measured"] == "lowest: meme 0.900; 1 of 2 met"
    assert verdict["met"] is False and verdict["why"] == "meme 0.80"
    assert judged["sscd: µAP ≥ 0.98 (negatives included)"]["met"] is True


def test_fit_fusion_keeps_each_models_region_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def record(original: str, positive: bool) -> dict[str, Any]:
        cos = 0.9 if positive else 0.2
        hits = [[float(positive), cos, 0.5, 0.5, 20.0, cos, float(positive)], [0.0, 0.1, 0.2, 0.1, 0.0, 0.1, 0.0]]
        return {"original": original, "variant": "crop/10%", "family": "crop", "positive": positive, "hits": hits}

    records = [record(f"o{i}.jpg", positive) for i in range(6) for positive in (True, False)]
    scoring = {"model": "m/p", "centre": [0.0, 0.0]}
    signals = {"profile": "quick", "verify": 16, "models": {"m": records}, "scorings": {"m": scoring}}
    (tmp_path / "signals.json").write_text(json.dumps(signals))
    rule = {"match_cosine": 0.6, "verified": [[0.3, 35], [0.38, 15]], "fitted": "apart"}
    out = tmp_path / "calibration.json"
    out.write_text(json.dumps({"m/p": {"region": rule}, "gone/p": {"region": rule}}))
    monkeypatch.setattr(fit_fusion, "ROOT", tmp_path)
    monkeypatch.setattr(fit_fusion, "REPORT", tmp_path / "fusion.json")
    assert fit_fusion.main(["--signals", str(tmp_path / "signals.json"), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert set(written) == {"m/p"} and written["m/p"]["region"] == rule and "threshold" in written["m/p"]
