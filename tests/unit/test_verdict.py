"""The copy verdict: per-model calibrations fitted by the benchmark, read as verdict.py documents them."""

from __future__ import annotations

import json

import pytest
from pictrace.settings import Settings
from pictrace.verdict import CALIBRATION_FILE, Calibration, Weights, calibration_for, fusion_for, verdict


def test_every_calibration_in_the_file_is_complete_and_meets_the_precision_it_was_fitted_for() -> None:
    table = json.loads(CALIBRATION_FILE.read_text())
    assert "sscd" in table  # the default model is calibrated
    for weights in table:
        c = calibration_for(weights)
        assert c is not None and c.a > 0 and 0 < c.threshold < 1, weights
        assert c.precision >= 0.99 and 0 < c.recall <= 1 and c.fitted, weights
        assert sum(vars(c.fusion).values()) > 0


def test_similarity_rises_with_the_final_score_and_the_threshold_decides_the_match() -> None:
    c = Calibration("m", Weights(), a=20.0, b=-10.0, threshold=0.6, precision=0.99, recall=0.9)
    scores = [0.0, 0.3, 0.5, 0.6, 0.9, 1.0]
    judged = [verdict(s, c) for s in scores]
    assert [v.similarity for v in judged] == sorted(v.similarity for v in judged)
    assert judged[2].similarity == 50.0  # a * final + b = 0
    assert [v.match for v in judged] == [False, False, False, True, True, True]
    assert c.probability(-1e6) == 0.0  # no overflow far below


def test_a_model_without_calibration_has_no_verdict_and_default_weights() -> None:
    assert calibration_for("imagenet") is None
    assert verdict(0.734, None).similarity == 73.4 and verdict(0.734, None).match is None
    assert fusion_for("imagenet") == Weights()


@pytest.mark.parametrize("name", ["cosine", "gist", "ssim", "geometry"])
def test_settings_override_the_fitted_fusion_one_weight_at_a_time(name: str) -> None:
    fitted = fusion_for("sscd")
    fusion = Settings(bucket="b", **{f"weight_{name}": 0.123}).fusion("sscd")
    assert getattr(fusion, name) == 0.123
    assert all(getattr(fusion, n) == getattr(fitted, n) for n in ("cosine", "gist", "ssim", "geometry") if n != name)
    env = Settings.from_env({"PICTRACE_BUCKET": "b", f"PICTRACE_WEIGHT_{name.upper()}": "0.5"})
    assert getattr(env, f"weight_{name}") == 0.5
