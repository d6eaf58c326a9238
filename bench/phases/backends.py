"""Phase "backends": Keras (TensorFlow) against ONNX Runtime on the same decoded images, one at a time, in a fresh
process (`python -m bench.phases.backends MODEL_DIR IMAGE...`), for a Keras-exported artifact only: median ms per
image after a warm-up, and the cosine between the two backends' embeddings."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, TypedDict, cast

from bench.common import child_json
from bench.phases.embed_speed import ms_each


class BackendParity(TypedDict):  # the child's output: results.json's "backends"
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
    return child_json(["bench.phases.backends", str(model_dir), *[str(p) for p in images]])


def measure(model_dir: str, paths: list[str]) -> BackendParity:
    """The child's measurement."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    from pictrace.embedding import KerasEmbedder, OnnxEmbedder
    from pictrace.images import decode_image

    files = [Path(p) for p in paths if Path(p).is_file()]
    images = [decode_image(f.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).bgr for f in files]
    onnx = OnnxEmbedder(model_dir)
    started = time.perf_counter()
    keras = KerasEmbedder(onnx.weights)
    keras_build_s = time.perf_counter() - started

    def timed(embedder: Any) -> tuple[list[float], np.ndarray]:
        embedder.embed(images[:1])  # warm-up (graph tracing, session set-up)
        rows: list[np.ndarray] = []
        return ms_each(lambda image: rows.append(embedder.embed([image])[0]), images), np.stack(rows)

    onnx_ms, by_onnx = timed(onnx)
    tf_ms, by_tf = timed(keras)
    cosines, diff = (by_onnx * by_tf).sum(axis=1), float(np.abs(by_onnx - by_tf).max())
    out: dict[str, Any] = dict(images=len(images), weights=onnx.weights, onnx_ms=statistics.median(onnx_ms))
    out |= dict(tensorflow_ms=statistics.median(tf_ms), keras_build_s=keras_build_s, cosine_min=float(cosines.min()))
    return cast(BackendParity, out | dict(cosine_mean=float(cosines.mean()), max_abs_diff=diff))


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2:])))
