"""The copy verdict: per-model calibrations fitted by the benchmark, read as verdict.py documents them, and held only
for the configuration they were fitted on (issue 26)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pictrace.embedding import SSCD_PREPROCESS
from pictrace.rerank import centred_cosine
from pictrace.settings import Settings
from pictrace.verdict import CALIBRATION_FILE, Calibration, Scoring, Weights, calibration_for, scoring_for

DEFAULT = ("sscd", SSCD_PREPROCESS)


def test_every_calibration_in_the_file_is_complete_and_meets_the_precision_it_was_fitted_for() -> None:
    table = json.loads(CALIBRATION_FILE.read_text())
    assert "/".join(DEFAULT) in table  # the default model, with the default preprocessing, is calibrated
    for name in table:
        weights, _, preprocess = name.partition("/")
        c = calibration_for(weights, preprocess)
        assert c is not None and c.a > 0 and 0 < c.threshold < 1, name
        assert c.precision >= 0.99 and 0 < c.recall <= 1 and c.fitted, name
        assert sum(vars(c.fusion).values()) > 0
        assert preprocess in c.fitted, name  # fitted on the preprocessing it is named for


def test_similarity_rises_with_the_final_score_and_the_threshold_decides_the_match() -> None:
    c = Calibration("m", "p", Weights(), (), a=20.0, b=-10.0, threshold=0.6, precision=0.99, recall=0.9)
    scoring = Scoring(Weights(), (), c)
    scores = [0.0, 0.3, 0.5, 0.6, 0.9, 1.0]
    judged = [scoring.verdict(s) for s in scores]
    assert [v.similarity for v in judged] == sorted(v.similarity for v in judged)
    assert judged[2].similarity == 50.0  # a * final + b = 0
    assert [v.match for v in judged] == [False, False, False, True, True, True]
    assert c.probability(-1e6) == 0.0  # no overflow far below


def test_a_result_could_be_a_copy_when_its_best_possible_score_reaches_the_threshold() -> None:
    """could_be_copy bounds the final score with the signals not yet known at their best (1.0), and the shortlist's
    cosine COSINE_SLACK above what it is."""
    from pictrace.verdict import COSINE_SLACK

    cosine_only = Calibration("m", "p", Weights(1, 0, 0, 0), (), a=20.0, b=-8.0, threshold=0.4, precision=1, recall=1)
    scoring = Scoring(Weights(1, 0, 0, 0), (), cosine_only)
    assert scoring.could_be_copy(0.4, 0.0) and scoring.could_be_copy(0.4 - COSINE_SLACK / 2, 0.0)
    assert not scoring.could_be_copy(0.4 - 2 * COSINE_SLACK, 1.0)  # gist weighs nothing here
    high = Calibration("m", "p", Weights(1, 0, 1, 0), (), a=20.0, b=-12.0, threshold=0.6, precision=1, recall=1)
    fused = Scoring(Weights(1, 0, 1, 0), (), high)  # SSIM, not known yet, could bring up to half the score
    assert fused.could_be_copy(0.1, 0.0) is False and fused.could_be_copy(0.3, 0.0) is True
    assert Scoring(Weights()).could_be_copy(-1.0, -1.0)  # nothing calibrated: nothing ruled out


def test_a_model_without_calibration_has_no_verdict_and_says_why() -> None:
    scoring = scoring_for("imagenet", "resnet50-caffe-224")
    assert scoring.calibration is None and scoring.fusion == Weights() and scoring.centre == ()
    assert "imagenet" in scoring.reason
    assert scoring.verdict(0.734).similarity == 73.4 and scoring.verdict(0.734).match is None


def uncalibrated() -> tuple[str, str]:
    """A model and preprocessing PicTrace builds that calibration.json has no row for."""
    from pictrace.embedding import SSCD_FILES, SSCD_PREPROCESSINGS

    return next((w, p) for w in SSCD_FILES for p in SSCD_PREPROCESSINGS if calibration_for(w, p) is None)


def test_a_calibrated_model_with_an_uncalibrated_preprocessing_has_no_verdict() -> None:
    """The calibration is keyed by what changes the score: weights and preprocessing, not the weights' name alone."""
    weights, preprocess = uncalibrated()
    assert any(name.startswith(weights + "/") for name in json.loads(CALIBRATION_FILE.read_text()))
    scoring = scoring_for(weights, preprocess)
    assert scoring.calibration is None and preprocess in scoring.reason and scoring.centre == ()
    assert scoring.verdict(0.99).match is None


@pytest.mark.parametrize("name", ["cosine", "gist", "ssim", "geometry"])
def test_a_fusion_weight_set_in_the_settings_overrides_the_fitted_one_and_drops_the_verdict(name: str) -> None:
    fitted = scoring_for(*DEFAULT)
    assert fitted.calibration is not None and fitted.reason == ""
    scoring = Settings(bucket="b", **{f"weight_{name}": 0.123}).scoring(*DEFAULT)
    assert getattr(scoring.fusion, name) == 0.123
    assert all(
        getattr(scoring.fusion, n) == getattr(fitted.fusion, n)
        for n in ("cosine", "gist", "ssim", "geometry")
        if n != name
    )
    assert scoring.calibration is None and f"{name} 0.123" in scoring.reason
    assert scoring.centre == fitted.centre  # the model's reference stays
    assert scoring.verdict(0.99).match is None
    env = Settings.from_env({"PICTRACE_BUCKET": "b", f"PICTRACE_WEIGHT_{name.upper()}": "0.5"})
    assert getattr(env, f"weight_{name}") == 0.5


def test_a_fusion_weight_set_to_its_fitted_value_keeps_the_verdict() -> None:
    fitted = scoring_for(*DEFAULT).fusion
    scoring = Settings(bucket="b", weight_cosine=fitted.cosine).scoring(*DEFAULT)
    assert scoring.calibration is not None


def test_the_centred_cosine_depends_on_the_reference_only() -> None:
    rng = np.random.default_rng(0)
    q, e = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 16)).astype(np.float32))
    centre = rng.normal(size=16).astype(np.float32) * 0.1
    assert centred_cosine(q, q, centre) == pytest.approx(1.0)
    assert centred_cosine(q, e, None) == pytest.approx(float(q @ e))
    a, b = q - centre, e - centre
    assert centred_cosine(q, e, centre) == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-6)
