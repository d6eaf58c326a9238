"""The verdict rests on the model's calibration, never on the index (issue 26): a one-image index finds its own
photo as a copy at 100 %, a 30 % crop scores the same whatever else is indexed, and a configuration without a
fitted calibration answers match null with /health saying why."""

from __future__ import annotations

import hashlib
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, read


def _index(stack: Any, names: list[str]) -> None:
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    s3 = stack.client("s3")
    for name in names:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    worker.drain()
    assert worker.failed == 0


def _client() -> TestClient:
    """The API with the settings as the environment has them now."""
    from pictrace.api import create_app
    from pictrace.settings import Settings

    return TestClient(create_app(Settings.from_env()))


def _crop_30(name: str) -> bytes:
    """A centred crop keeping 30 % of the photo's area, re-encoded."""
    photo = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    side = 0.30**0.5
    ch, cw = int(h * side), int(w * side)
    top, left = (h - ch) // 2, (w - cw) // 2
    return cv2.imencode(".jpg", photo[top : top + ch, left : left + cw], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _best(client: TestClient, data: bytes) -> dict[str, Any]:
    response = client.post("/search?top_k=1", files={"file": ("q.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def test_a_one_image_index_finds_its_own_photo_as_a_copy_at_100_percent(stack: Any) -> None:
    _index(stack, ["astronaut.jpg"])
    best = _best(_client(), read("astronaut.jpg"))
    assert best["id"] == hashlib.sha256(read("astronaut.jpg")).hexdigest()
    assert best["scores"]["cosine"] > 0.999
    assert best["match"] is True and best["similarity"] >= 99.9, best


def test_a_30_percent_crop_is_a_copy_and_scores_the_same_whatever_else_is_indexed(stack: Any) -> None:
    query = _crop_30("astronaut.jpg")
    _index(stack, ["astronaut.jpg"])
    alone = _best(_client(), query)
    _index(stack, [n for n in PHOTOS if n != "astronaut.jpg"])
    among = _best(_client(), query)
    assert alone["id"] == among["id"] == hashlib.sha256(read("astronaut.jpg")).hexdigest()
    assert alone["scores"]["cosine"] == pytest.approx(among["scores"]["cosine"], abs=1e-5)
    assert alone["scores"]["final"] == pytest.approx(among["scores"]["final"], abs=1e-5)
    assert alone["match"] is True and among["match"] is True, (alone, among)


def test_a_fusion_weight_set_by_hand_answers_no_verdict_and_health_says_why(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _index(stack, ["astronaut.jpg"])
    monkeypatch.setenv("PICTRACE_WEIGHT_SSIM", "0.77")
    client = _client()
    health = client.get("/health").json()
    assert health["scoring"]["ssim"] == 0.77
    assert health["scoring"]["verdict"] is None and "ssim 0.77" in health["scoring"]["uncalibrated"]
    best = _best(client, read("astronaut.jpg"))
    assert best["match"] is None
    monkeypatch.delenv("PICTRACE_WEIGHT_SSIM")
    calibrated = _client().get("/health").json()["scoring"]
    assert calibrated["verdict"] is not None and calibrated["uncalibrated"] is None
    assert all(n > 0 for _, n in calibrated["verdict"]["region"]["verified"])  # the default model's rule is shown


def test_another_preprocessing_than_the_calibrated_one_answers_no_verdict(
    stack: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pictrace.embedding import build_model

    from tests.unit.test_verdict import uncalibrated

    weights, preprocess = uncalibrated()
    build_model(weights, tmp_path / "model", preprocess)
    monkeypatch.setenv("PICTRACE_MODEL_DIR", str(tmp_path / "model"))
    _index(stack, ["astronaut.jpg"])
    client = _client()
    health = client.get("/health").json()["scoring"]
    assert health["verdict"] is None and preprocess in health["uncalibrated"]
    assert _best(client, read("astronaut.jpg"))["match"] is None
