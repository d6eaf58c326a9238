"""The bench's partial-copy queries (issue 27): the original really is in the query, at the stated scale, among
other photos that are not it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bench import transforms
from bench.phases import queries
from bench.profile import QUICK
from bench.results import ModelResult, Results


def _pattern(h: int, w: int) -> np.ndarray:
    """A picture no other test image resembles: bright noise, never black (so it shows against black)."""
    return np.random.default_rng(7).integers(60, 256, (h, w, 3), dtype=np.uint8)


def _box(img: np.ndarray) -> tuple[int, int, int, int]:
    """x, y, width, height of the pixels that are not black."""
    ys, xs = np.nonzero(img.max(axis=-1) > 30)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


BLACK = np.zeros((900, 1600, 3), np.uint8)


def _variant(name: str) -> transforms.Variant:
    return next(v for v in transforms.VARIANTS if v.name == name)


@pytest.mark.parametrize(("param", "kept"), [("10% kept", 0.10), ("5% kept", 0.05)])
def test_small_crops_keep_that_share_of_the_original(param: str, kept: float) -> None:
    img = _pattern(600, 800)
    out = transforms.make_query(img, "a.jpg", _variant(f"small crop/{param}"))
    crop = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[0] * crop.shape[1] / (600 * 800) == pytest.approx(kept, abs=0.005)


@pytest.mark.parametrize("width", [0.40, 0.25])
def test_inset_places_the_whole_original_at_that_width(width: float) -> None:
    img = _pattern(300, 400)
    out = transforms.inset(img, np.random.default_rng(1), [BLACK], width)
    assert out.shape == (960, 1280, 3)
    x, y, w, h = _box(out)
    assert w == round(width * 1280) and h == pytest.approx(w * 3 / 4, abs=1)
    placed = cv2.resize(out[y : y + h, x : x + w], (400, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(placed.astype(int) - cv2.GaussianBlur(img, (0, 0), 2).astype(int)).mean() < 40
    assert transforms.inset(_pattern(2000, 300), np.random.default_rng(1), [BLACK], width).shape == (960, 1280, 3)


def test_collage_holds_the_original_in_one_tile_and_the_others_in_three() -> None:
    img, others = _pattern(480, 640), [np.full((500, 500, 3), 10 * (i + 1), np.uint8) for i in range(3)]
    out = transforms.collage(img, np.random.default_rng(3), others)
    assert out.shape == (960, 1280, 3)
    tiles = [out[r * 480 : (r + 1) * 480, c * 640 : (c + 1) * 640] for r in range(2) for c in range(2)]
    flat = sorted(int(t.mean()) for t in tiles if t.std() < 1)
    assert flat == [10, 20, 30]  # each other photo fills a tile
    assert sum(t.std() > 20 for t in tiles) == 1  # the original fills the fourth


def test_meme_adds_caption_bands_and_keeps_the_photo() -> None:
    img = _pattern(600, 800)
    out = transforms.meme(img, np.random.default_rng(0))
    photo_h = round(600 * 1280 / 800)
    band = round(0.2 * photo_h)
    assert out.shape == (photo_h + 2 * band, 1280, 3)
    for strip in (out[:band], out[-band:]):
        assert 0.5 < (strip == 255).all(axis=-1).mean() < 1  # white with text on it


@pytest.mark.parametrize("shape", [(600, 800), (1200, 600), (300, 1200)])
def test_social_post_photo_covers_at_most_thirty_percent(shape: tuple[int, int]) -> None:
    img = np.full((*shape, 3), (0, 255, 0), np.uint8)  # a green no part of the UI uses
    out = transforms.social_post(img, np.random.default_rng(0), 0.30)
    assert out.shape == (1600, 720, 3)
    ys, xs = np.nonzero((out == (0, 255, 0)).all(axis=-1))
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert len(ys) == h * w  # one rectangle
    assert 0.05 < h * w / (1600 * 720) <= 0.30
    assert w / h == pytest.approx(shape[1] / shape[0], rel=0.02)


def test_others_are_seeded_and_never_the_original() -> None:
    pool = [f"p{i}.jpg" for i in range(6)]
    collage = _variant("collage/2x2")
    for name in pool:
        picked = transforms.pick_others(pool, name, collage)
        assert len(set(picked)) == 3 and name not in picked
        assert picked == transforms.pick_others(list(reversed(pool)), name, collage)
    assert transforms.pick_others(pool, "p0.jpg", _variant("meme/caption bands")) == []
    with pytest.raises(ValueError):
        transforms.pick_others(pool[:3], "p0.jpg", collage)


def test_queries_surround_originals_only_with_held_out_photos(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(6):
        cv2.imwrite(str(src / f"p{i}.png"), np.full((60, 80, 3), 40 * i + 20, np.uint8))
    held_out = {"p2.png", "p3.png", "p4.png", "p5.png"}
    originals = [src / "p0.png", src / "p2.png"]
    made = queries.make_queries(originals, {p.name: p.stem for p in originals}, tmp_path / "q", held_out)
    assert len(made.cases) == 2 * len(transforms.VARIANTS)
    assert [c.positive for c in made.cases if c.variant == 0] == [True, False]
    for variant in ("inset/40% width", "collage/2x2"):
        v = next(i for i, x in enumerate(transforms.VARIANTS) if x.name == variant)
        for case in (c for c in made.cases if c.variant == v):
            shades = np.round(cv2.imread(case.path)[::20, ::20, 0] / 40 - 0.5).astype(int)  # p_i is 40 i + 20
            own = int(case.original[1])
            around = set(np.unique(shades)) - {own}
            assert around and around <= {2, 3, 4, 5} - {own}, (variant, case.original, around)


def _record(case: Any, found: bool) -> dict[str, Any]:
    """A search record of one query: its original ranked first and called a copy, or nothing found."""
    hits = [[1, 0.9, 0.9, 0.9, 40, 0.9, 1]] if found and case.positive else [[0, 0.2, 0.2, 0.1, 0, 0.1, 0]]
    rank = 1 if found and case.positive else None
    base = {"family": case.family, "variant": f"{case.family}/x", "positive": case.positive, "rank": rank}
    return base | {"ap": float(rank or 0), "hits": hits, "timings": {"total": 100.0}, "cos_rank": rank}


def test_each_way_of_finding_a_partial_copy_searches_only_the_partial_families_with_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27's side by side: each strategy's settings reach the search processes, only the partial-copy
    families' queries (and their negatives) are searched, and the product's row is its own pass kept to them."""
    from bench.models import ModelConfig
    from bench.phases import quality
    from bench.report import page
    from bench.searching import QueryCase

    variants = {v.family: i for i, v in enumerate(transforms.VARIANTS)}
    cases = [QueryCase("a.jpg", "a" * 64, variants[f], f"/q/{f}", 1, f != "meme") for f in ("crop", "inset", "meme")]
    seen: list[tuple[list[str], dict[str, str]]] = []

    def searches(mine: list[QueryCase], work: Path, env: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
        seen.append(([c.family for c in mine], env))
        return [_record(c, found=env.get("PICTRACE_REGIONS") != "false") for c in mine], {"model": "m", "centre": []}

    monkeypatch.setattr(quality, "parallel_searches", searches)
    config = ModelConfig("sscd", "sscd", None, default=True)
    product = [_record(c, found=True) for c in cases]
    out = quality.strategies(config, cases, product, tmp_path)
    assert list(out) == ["whole image", "+ regions", "+ details shortlist"]
    assert [families for families, _ in seen] == [["inset", "meme"]] * 2
    assert [
        {k: v for k, v in env.items() if k in ("PICTRACE_REGIONS", "PICTRACE_DETAILS_HELD")} for _, env in seen
    ] == [
        {"PICTRACE_REGIONS": "false"},
        {"PICTRACE_DETAILS_HELD": "0"},
    ]
    assert all(env["PICTRACE_INDEX_PREFIX"] == "index/" for _, env in seen)
    assert (
        out["whole image"].families["inset"]["recall@1"] == 0.0 and out["+ regions"].families["inset"]["recall@1"] == 1
    )
    assert set(out["+ details shortlist"].families) == {"inset"} and out["+ details shortlist"].queries["negative"] == 1
    r = Results(profile=QUICK, models={"sscd": ModelResult(config, "built")}, strategies=out)
    r.models["sscd"].quality = out["+ details shortlist"]
    section = page.render_tables(r).split("### Partial copies, per way of finding them (sscd)")[1].split("###")[0]
    assert (
        "| whole image " in section and "| + details shortlist " in section and "`PICTRACE_DETAILS_HELD=0`" in section
    )
    header = next(line for line in section.splitlines() if line.startswith("| way"))
    assert "inset" in header and "meme" not in header  # the families with positive queries
