"""The embedding: weights chosen by name, one runtime (ONNX Runtime) that agrees with its reference, never swapped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pictrace.embedding import (
    KERAS_DIM,
    KERAS_PREPROCESS,
    SSCD_DIM,
    SSCD_PREPROCESS,
    OnnxEmbedder,
    build_model,
    default_preprocess,
    get_embedder,
    parse_weights,
    preprocess_keras,
    preprocess_sscd_short256,
    preprocess_sscd_short288,
    preprocess_sscd_square320,
)
from pictrace.errors import ConfigError, ModelMismatch, WeightsUnavailable
from pictrace.images import decode_image

from tests.conftest import PHOTOS, read


def photos() -> list[np.ndarray]:
    return [decode_image(read(n), max_bytes=10**8, max_pixels=10**8).bgr for n in PHOTOS]


def test_weights_are_named_explicitly() -> None:
    assert parse_weights("sscd").sscd and parse_weights("sscd-mobile").sscd
    assert parse_weights("random:7").name == "random:7" and not parse_weights("random:7").sscd
    assert parse_weights("imagenet").name == "imagenet"
    assert parse_weights("/w/resnet50_notop.h5").kind == "file"
    with pytest.raises(ConfigError, match="random:<seed>"):
        parse_weights("random")
    with pytest.raises(ConfigError, match="sscd"):
        parse_weights("sscd-large")


def test_sscd_preprocessing_keeps_the_aspect_or_squares_it() -> None:
    wide = np.zeros((300, 900, 3), np.uint8)
    wide[..., 0] = 255  # blue in BGR
    short = preprocess_sscd_short288(wide)
    assert short.shape == (288, 864, 3) and short.dtype == np.uint8
    assert short[0, 0].tolist() == [0, 0, 255]  # RGB order
    assert preprocess_sscd_short288(np.zeros((100, 2000, 3), np.uint8)).shape == (58, 1152, 3)  # long edge capped
    assert preprocess_sscd_square320(wide).shape == (320, 320, 3)
    assert preprocess_sscd_short256(np.zeros((900, 1600, 3), np.uint8)).shape == (256, 455, 3)  # 16:9 kept
    assert preprocess_sscd_short256(np.zeros((160, 90, 3), np.uint8)).shape == (455, 256, 3)  # enlarged, portrait
    short = preprocess_sscd_short256(wide)
    assert short.shape == (256, 512, 3) and short[0, 0].tolist() == [0, 0, 255]  # 3:1 squeezed to 2:1


def test_each_kind_of_weights_has_a_default_preprocessing() -> None:
    assert default_preprocess("sscd") == default_preprocess("sscd-mobile") == SSCD_PREPROCESS
    assert default_preprocess("random:3") == KERAS_PREPROCESS


def test_the_model_embeds_unit_rows_of_its_width_deterministically(model_dir: str) -> None:
    embedder = OnnxEmbedder(model_dir)
    first = embedder.embed(photos())
    again = embedder.embed(photos())
    assert first.shape == (len(PHOTOS), embedder.dim) and first.dtype == np.float32
    assert embedder.dim == json.loads((Path(model_dir) / "model.json").read_text())["dim"]
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, again)


def test_sscd_finds_edited_copies_and_keeps_other_photos_apart(model_dir: str) -> None:
    """What a copy-detection model is for: edits of a photo stay near it, different photos stay far apart."""
    embedder = OnnxEmbedder(model_dir)
    if not parse_weights(embedder.weights).sscd:
        pytest.skip(f"the model artifact holds {embedder.weights}, not SSCD")
    originals = photos()
    edits = []
    for bgr in originals:
        h, w = bgr.shape[:2]
        gray = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        edits.append(
            [
                bgr[h // 8 : h - h // 8, w // 6 : w - w // 8],  # crop
                cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE),
                gray,
                cv2.resize(bgr, (w // 3, h // 3), interpolation=cv2.INTER_AREA),
            ]
        )
    base = embedder.embed(originals)
    for i, variants in enumerate(edits):
        sims = embedder.embed(variants) @ base.T
        assert np.all(np.argmax(sims, axis=1) == i), sims
        assert sims[:, i].min() > 0.5, sims
    unrelated = base @ base.T
    assert unrelated[~np.eye(len(PHOTOS), dtype=bool)].max() < 0.3, unrelated


def test_preprocessing_matches_keras_resnet50() -> None:
    from keras.applications.resnet50 import preprocess_input

    bgr = photos()[0]
    rgb = cv2.cvtColor(cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(preprocess_keras(bgr), preprocess_input(rgb.astype(np.float32)), atol=1e-4)


@pytest.fixture(scope="module")
def keras_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keras' ResNet50 with random:0 weights, exported to ONNX as `make model WEIGHTS=random:0` does."""
    out = tmp_path_factory.mktemp("random0")
    info = build_model("random:0", out)
    assert info["file"] == "model.onnx" and info["dim"] == KERAS_DIM
    yield out


@pytest.mark.slow
def test_tensorflow_and_onnx_runtime_agree_on_real_photos(keras_model_dir: Path) -> None:
    """Parity measured where it is strict: cosine after removing what every photo shares (random weights make
    all embeddings nearly parallel, so plain cosine would pass for different photos too)."""
    from pictrace.embedding import KerasEmbedder

    reference = KerasEmbedder("random:0").embed(photos())
    runtime = OnnxEmbedder(keras_model_dir).embed(photos())
    mean = reference.mean(axis=0)
    a, b = reference - mean, runtime - mean
    centred = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert centred.min() >= 0.9999, centred
    between = (a @ a.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(a, axis=1))
    assert between[~np.eye(len(PHOTOS), dtype=bool)].max() < 0.9999  # the bound tells photos apart


def test_model_artifact_records_its_weights_and_mismatch_fails(model_dir: str) -> None:
    info = json.loads((Path(model_dir) / "model.json").read_text())
    assert get_embedder(model_dir, info["weights"]).weights == info["weights"]
    assert info["dim"] in (SSCD_DIM, KERAS_DIM) and info["sha256"]
    with pytest.raises(ModelMismatch, match="make model"):
        get_embedder(model_dir, "random:999999")


def test_missing_or_incomplete_artifact_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make model"):
        OnnxEmbedder(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"weights": "sscd", "file": "site/x.onnx", "dim": 512}))
    with pytest.raises(ConfigError, match="the ONNX file it names"):
        OnnxEmbedder(tmp_path)


def test_imagenet_unreachable_fails_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras.src.applications.resnet as resnet
    from pictrace.embedding import build_keras_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(resnet, "BASE_WEIGHTS_PATH", "http://127.0.0.1:9/")  # nothing listens on port 9
    with pytest.raises(WeightsUnavailable, match=r"WEIGHTS=/path/to/resnet50_weights.*WEIGHTS=sscd"):
        build_keras_model("imagenet")


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    from pictrace.embedding import build_keras_model

    with pytest.raises(WeightsUnavailable, match="does not exist"):
        build_keras_model(str(tmp_path / "nope.h5"))
