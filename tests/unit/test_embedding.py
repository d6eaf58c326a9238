"""The embedding: one interface, two backends that agree, weights chosen by name and never swapped silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pictrace.embedding import DIM, LiteRTEmbedder, get_embedder, parse_weights, preprocess
from pictrace.errors import ConfigError, ModelMismatch, WeightsUnavailable
from pictrace.images import decode_image

from tests.conftest import PHOTOS, read


def photos() -> list[np.ndarray]:
    return [decode_image(read(n), max_bytes=10**8, max_pixels=10**8).bgr for n in PHOTOS]


def test_weights_are_named_explicitly() -> None:
    assert parse_weights("random:7").name == "random:7"
    assert parse_weights("imagenet").name == "imagenet"
    assert parse_weights("/w/resnet50_notop.h5").kind == "file"
    with pytest.raises(ConfigError, match="random:<seed>"):
        parse_weights("random")


def test_litert_embeddings_are_unit_2048_and_deterministic(model_dir: str) -> None:
    embedder = LiteRTEmbedder(model_dir)
    first = embedder.embed(photos())
    again = embedder.embed(photos())
    assert first.shape == (len(PHOTOS), DIM) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, again)
    sims = first @ first.T
    assert np.all(sims[~np.eye(len(PHOTOS), dtype=bool)] < 0.9999)  # different photos, different vectors


def test_preprocessing_matches_keras_resnet50() -> None:
    from keras.applications.resnet50 import preprocess_input

    bgr = photos()[0]
    rgb = cv2.cvtColor(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(preprocess(bgr), preprocess_input(rgb.astype(np.float32)), atol=1e-4)


def test_tensorflow_and_litert_backends_agree_on_real_photos(model_dir: str) -> None:
    from pictrace.embedding import KerasEmbedder

    info = json.loads((Path(model_dir) / "model.json").read_text())
    reference = KerasEmbedder(info["weights"]).embed(photos())
    runtime = LiteRTEmbedder(model_dir).embed(photos())
    cosines = np.sum(reference * runtime, axis=1)
    assert cosines.min() >= 0.999, cosines


def test_model_artifact_records_its_weights_and_mismatch_fails(model_dir: str) -> None:
    info = json.loads((Path(model_dir) / "model.json").read_text())
    assert get_embedder(model_dir, info["weights"]).weights == info["weights"]
    with pytest.raises(ModelMismatch, match="make model"):
        get_embedder(model_dir, "random:999999")


def test_missing_artifact_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make model"):
        LiteRTEmbedder(tmp_path)
    shutil.copy(Path(__file__), tmp_path / "model.tflite")
    with pytest.raises(ConfigError, match=r"model\.json"):
        LiteRTEmbedder(tmp_path)


def test_imagenet_unreachable_fails_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras.src.applications.resnet as resnet
    from pictrace.embedding import build_keras_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(resnet, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")  # nothing listens on port 9
    with pytest.raises(WeightsUnavailable, match=r"WEIGHTS=/path/to/resnet50_weights"):
        build_keras_model("imagenet")


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    from pictrace.embedding import build_keras_model

    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_keras_model(str(tmp_path / "nope.h5"))
