"""Phase "backends": Keras (TensorFlow) against ONNX Runtime for a model with a Keras reference, in a fresh
process (bench.tfparity)."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from bench.common import child_json


class BackendParity(TypedDict):
    """bench.tfparity's output: results.json's "backends"."""

    images: int
    weights: str
    onnx_ms: float
    tensorflow_ms: float
    keras_build_s: float
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float


def backend_parity(model_dir: Path, images: list[Path]) -> BackendParity:
    """ms per image of both and the cosine between their embeddings, on the images."""
    result: BackendParity = child_json(["bench.tfparity", str(model_dir), *[str(p) for p in images]])
    return result
