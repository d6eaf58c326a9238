"""ResNet50 embeddings (2048-d, L2-normalised) behind one interface, with two backends.

- ``LiteRTEmbedder`` runs the exported ``model.tflite`` with ai-edge-litert: what the Lambda functions run.
- ``KerasEmbedder`` runs the Keras/TensorFlow network: the reference, and what ``export_tflite`` converts.

Weights are named explicitly: ``imagenet`` (Keras' file, downloaded when reachable or already cached),
a path to a ``.h5``/``.keras`` weights file, or ``random:<seed>`` (deterministic seeded initialisation,
for tests and offline demos — its embeddings are not semantically meaningful).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pictrace.errors import ConfigError, ModelMismatch, WeightsUnavailable

logger = logging.getLogger(__name__)

INPUT_SIZE = 224
DIM = 2048
#: keras.applications.resnet50.preprocess_input ("caffe" mode): BGR order, ImageNet channel means subtracted
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
MODEL_FILE = "model.tflite"
INFO_FILE = "model.json"
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
_RANDOM = re.compile(r"^random:(\d+)$")


@dataclass(frozen=True)
class WeightsSpec:
    """Which weights a network holds: kind is 'imagenet', 'random' or 'file'."""

    kind: str
    seed: int | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        """The canonical name, as recorded in model.json and reported by the API."""
        if self.kind == "random":
            return f"random:{self.seed}"
        if self.kind == "file":
            return f"file:{self.path}"
        return "imagenet"


def parse_weights(spec: str) -> WeightsSpec:
    """Parse a weights name: 'imagenet', 'random:<seed>', or a path (optionally 'file:<path>') to a weights file."""
    spec = spec.strip()
    if spec == "imagenet":
        return WeightsSpec("imagenet")
    match = _RANDOM.match(spec)
    if match:
        return WeightsSpec("random", seed=int(match.group(1)))
    path = spec.removeprefix("file:")
    if path.endswith((".h5", ".keras")):
        return WeightsSpec("file", path=path)
    raise ConfigError(
        f"unknown weights {spec!r}: use 'imagenet', 'random:<seed>' or the path of a ResNet50 .h5 weights file"
    )


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """Resize a BGR uint8 image to 224x224 and apply ResNet50's preprocessing; float32 (224, 224, 3)."""
    resized = cv2.resize(bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32) - IMAGENET_MEAN_BGR


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Embedder(Protocol):
    """Anything that turns BGR images into L2-normalised 2048-d float32 rows."""

    weights: str
    backend: str

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


class LiteRTEmbedder:
    """ResNet50 exported to TFLite, run by ai-edge-litert."""

    backend = "litert"

    def __init__(self, model_dir: str | os.PathLike[str], num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.info = load_model_info(model_dir)
        self.weights: str = self.info["weights"]
        self._interpreter = Interpreter(
            model_path=str(Path(model_dir) / MODEL_FILE), num_threads=num_threads or os.cpu_count() or 1
        )
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._interpreter.resize_tensor_input(self._input, [1, INPUT_SIZE, INPUT_SIZE, 3])
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of BGR uint8 images, shape (n, 2048)."""
        out = np.empty((len(images), DIM), dtype=np.float32)
        with self._lock:  # one interpreter, one invocation at a time
            for i, image in enumerate(images):
                self._interpreter.set_tensor(self._input, preprocess(image)[None])
                self._interpreter.invoke()
                out[i] = self._interpreter.get_tensor(self._output)[0]
        return l2_normalise(out)


class KerasEmbedder:
    """The reference: Keras' ResNet50 on TensorFlow (not installed in Lambda)."""

    backend = "tensorflow"

    def __init__(self, weights: str) -> None:
        self.model = build_keras_model(weights)
        self.weights = parse_weights(weights).name

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of BGR uint8 images, shape (n, 2048)."""
        batch = np.stack([preprocess(image) for image in images])
        return l2_normalise(self.model(batch, training=False).numpy())


def build_keras_model(weights: str) -> Any:
    """Keras ResNet50 (no top, average pooling, 224x224x3) holding the named weights."""
    import keras

    spec = parse_weights(weights)
    kwargs: dict[str, Any] = dict(include_top=False, pooling="avg", input_shape=(INPUT_SIZE, INPUT_SIZE, 3))
    if spec.kind == "random":
        keras.utils.set_random_seed(spec.seed)
        return keras.applications.ResNet50(weights=None, **kwargs)
    if spec.kind == "imagenet":
        try:
            return keras.applications.ResNet50(weights="imagenet", **kwargs)
        except Exception as exc:  # keras raises a bare Exception when the download fails
            cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
            raise WeightsUnavailable(
                f"ImageNet weights for ResNet50 could not be had here ({type(exc).__name__}: {exc}). "
                f"Download {IMAGENET_NOTOP_FILE} where the internet is reachable and put it in {cache}/, "
                f"or build with WEIGHTS=/path/to/{IMAGENET_NOTOP_FILE}; "
                "or choose WEIGHTS=random:<seed> for an offline model whose embeddings carry no ImageNet semantics."
            ) from exc
    assert spec.path is not None
    if not Path(spec.path).is_file():
        raise WeightsUnavailable(
            f"weights file {spec.path} does not exist: give the path of a ResNet50 no-top .h5 weights file"
        )
    return keras.applications.ResNet50(weights=spec.path, **kwargs)


def export_tflite(weights: str, out_dir: str | os.PathLike[str], *, float16: bool = True) -> dict[str, Any]:
    """Build the Keras model with the named weights, convert it to out_dir/model.tflite, write model.json."""
    import tempfile

    import keras
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_keras_model(weights)
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if float16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        flat = converter.convert()
    (out / MODEL_FILE).write_bytes(flat)
    info = {
        "weights": parse_weights(weights).name,
        "architecture": "ResNet50 include_top=False pooling=avg",
        "input": [INPUT_SIZE, INPUT_SIZE, 3],
        "dim": DIM,
        "preprocess": "resize 224x224 INTER_AREA, BGR minus ImageNet means (keras resnet50 caffe mode)",
        "precision": "float16 weights, float32 compute" if float16 else "float32",
        "exported_with": f"tensorflow {tf.__version__}, keras {keras.__version__}",
        "sha256": hashlib.sha256(flat).hexdigest(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    logger.info("exported %s (%d bytes) with weights %s", out / MODEL_FILE, len(flat), info["weights"])
    return info


def load_model_info(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The model artifact's record (model.json); ConfigError saying how to build it if absent."""
    directory = Path(model_dir)
    if not (directory / MODEL_FILE).is_file() or not (directory / INFO_FILE).is_file():
        raise ConfigError(
            f"no model artifact in {directory} ({MODEL_FILE} + {INFO_FILE}): run `make model` "
            "or set PICTRACE_MODEL_DIR to the directory that holds them"
        )
    info: dict[str, Any] = json.loads((directory / INFO_FILE).read_text())
    return info


_embedder: LiteRTEmbedder | None = None
_embedder_lock = threading.Lock()


def get_embedder(model_dir: str, expected_weights: str = "") -> LiteRTEmbedder:
    """The container's LiteRT embedder, created on first use; ModelMismatch if it holds other weights."""
    global _embedder
    with _embedder_lock:
        if _embedder is None or _embedder.info.get("_dir") != model_dir:
            embedder = LiteRTEmbedder(model_dir)
            embedder.info["_dir"] = model_dir
            _embedder = embedder
        if expected_weights and parse_weights(expected_weights).name != _embedder.weights:
            raise ModelMismatch(
                f"the model in {model_dir} holds weights {_embedder.weights!r} but PICTRACE_WEIGHTS is "
                f"{expected_weights!r}: rebuild it with `make model WEIGHTS={expected_weights}` or change the setting"
            )
        return _embedder
