"""The duplicates phase's pure parts (bench.phases.duplicates): the truth, the pairs of groups, recall and precision,
per variant, the events' latency, the rebuild's price, and the files it uploads. (The phase itself runs in
`make bench`.)"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.phases import duplicates as d


def test_the_truth_is_every_pair_of_one_sources_images() -> None:
    source_of = {"a": "s1", "b": "s1", "c": "s1", "d": "s2", "e": "s2", "f": "s3"}
    assert d.truth_pairs(source_of) == {("a", "b"), ("a", "c"), ("b", "c"), ("d", "e")}
    assert d.truth_pairs({"z": "s1", "y": "s1"}) == {("y", "z")}  # the lower id first, as pictrace.copies pairs them


def test_a_group_holds_every_pair_of_its_members_so_one_wrong_link_costs_every_pair_it_joins() -> None:
    truth = d.truth_pairs({"a": "s1", "b": "s1", "c": "s2", "d": "s2"})
    links = {("a", "b"), ("b", "c"), ("c", "d")}  # b-c is wrong: the group joins both sources
    grouped = d.group_pairs([["a", "b", "c", "d"]])
    assert len(grouped) == 6
    assert d.score(links, truth) == {"truth": 2, "found": 2, "recorded": 3, "recall": 1.0, "precision": 2 / 3}
    assert d.score(grouped, truth)["precision"] == pytest.approx(2 / 6)


def test_recall_counts_what_the_groups_find_beyond_the_direct_links() -> None:
    source_of = {"o": "s1", "e1": "s1", "e2": "s1"}
    truth = d.truth_pairs(source_of)
    links = {("e1", "o"), ("e2", "o")}  # the two edits never linked to each other
    assert d.score(links, truth)["recall"] == pytest.approx(2 / 3)
    assert d.score(d.group_pairs([["o", "e1", "e2"]]), truth)["recall"] == 1.0


def test_nothing_recorded_has_precision_one_and_recall_zero() -> None:
    assert d.score(set(), {("a", "b")}) == {"truth": 1, "found": 0, "recorded": 0, "recall": 0.0, "precision": 1.0}


def test_recall_per_variant_is_over_the_truth_pairs_with_an_image_of_that_variant() -> None:
    variant_of = {"o": "original", "c": "crop", "s": "screenshot", "n1": "crop", "n2": "screenshot"}
    truth = d.truth_pairs({"o": "s1", "c": "s1", "s": "s1", "n1": "neg", "n2": "neg"})
    found = {("c", "o"), ("c", "s")}  # the screenshot missed the original; the negative's two edits missed each other
    by = d.recall_by_variant(found, truth, variant_of)
    assert by == {"crop": pytest.approx(2 / 3), "original": 0.5, "screenshot": pytest.approx(1 / 3)}


def test_an_events_latency_runs_from_the_later_upload_of_its_pair_and_counts_the_first_event_only() -> None:
    put_at = {"a": 100.0, "b": 101.0, "c": 102.0}
    events = [
        (103.5, {"id": "b", "copy_of": "a", "pair": "a-b"}),  # 2.5 s after b
        (104.0, {"id": "a", "copy_of": "b", "pair": "a-b"}),  # the same pair again: not counted
        (102.5, {"id": "c", "copy_of": "a", "pair": "a-c"}),  # 0.5 s after c
    ]
    got = d.event_latency(events, put_at)
    assert got["events"] == 3 and got["pairs"] == 2
    assert got["p50_s"] == pytest.approx(1.5) and got["p95_s"] == pytest.approx(0.5 + 0.95 * 2.0)
    assert math.isnan(d.event_latency([], put_at)["p50_s"])


def test_the_rebuild_is_priced_from_the_handlers_time_per_image() -> None:
    cost = d.rebuild_cost(images=100, handler_s=10.0, memory_mb=2048, concurrency=5)  # 100 ms an image
    lambda_usd = 100_000 * 0.1 * 2 * 0.0000166667 + 10_000 * 0.20 / 1e6
    sqs_usd = 100_000 * 0.3 * 0.40 / 1e6
    assert cost["handler_ms_per_image"] == 100.0
    assert cost["usd_per_100k"] == pytest.approx(lambda_usd + sqs_usd, abs=1e-4)
    assert cost["hours_per_100k"] == pytest.approx(100_000 * 0.1 / 5 / 3600, abs=1e-3)


def test_the_copies_functions_sizing_comes_from_the_template() -> None:
    from infra.invoke import load_template

    memory_mb, concurrency = d.copies_function_sizing()
    params = load_template()["Parameters"]
    assert memory_mb == int(params["SearchMemorySize"]["Default"])
    assert concurrency == int(params["CopiesMaxConcurrency"]["Default"])


def test_the_upload_holds_the_indexed_originals_and_the_edits_of_every_source_but_no_held_out_original(
    tmp_path: Path,
) -> None:
    originals = []
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        path = tmp_path / name
        cv2.imwrite(str(path), np.full((40, 60, 3), 60 * i, np.uint8))
        originals.append(path)
    size = (2, 1, ("flip/horizontal", "grayscale/luma"))
    paths, source, variant = d.make_upload(originals, {"c.jpg"}, size, tmp_path / "edits")
    assert sorted(k for k, v in variant.items() if v == "original") == [
        "images/originals/a.jpg",
        "images/originals/b.jpg",
    ]
    assert len(paths) == 2 + 3 * 2 and all(p.is_file() for p in paths.values())
    assert sorted(v for k, v in variant.items() if source[k] == "c.jpg") == ["flip/horizontal", "grayscale/luma"]
    assert all(d.VARIANT_NAMES) and {n for s in d.SIZES.values() for n in s[2]} <= {v.name for v in d.VARIANTS}
