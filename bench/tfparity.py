"""`python -m bench.tfparity MODEL_DIR IMAGE...`: Keras (TensorFlow) against ONNX Runtime, in a fresh process.

For a Keras-exported artifact only (random:<seed>, imagenet, a weights file: SSCD has no Keras reference). Both
embed the same decoded images one at a time (what ingest and search do); the Keras model is built with the
weights the ONNX artifact records. Prints one JSON object: ms per image (median over the images, after one
warm-up each), and the cosine between the two backends' embeddings of each image.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    model_dir, paths = argv[0], argv[1:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    from pictrace.embedding import KerasEmbedder, OnnxEmbedder
    from pictrace.images import decode_image

    images = [
        decode_image(Path(p).read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).bgr
        for p in paths
        if Path(p).is_file()
    ]
    onnx = OnnxEmbedder(model_dir)
    started = time.perf_counter()
    keras = KerasEmbedder(onnx.weights)
    keras_build_s = time.perf_counter() - started

    def timed(embedder: OnnxEmbedder | KerasEmbedder) -> tuple[list[float], np.ndarray]:
        embedder.embed(images[:1])  # warm-up (graph tracing, session set-up)
        times, rows = [], []
        for image in images:
            t = time.perf_counter()
            rows.append(embedder.embed([image])[0])
            times.append((time.perf_counter() - t) * 1000)
        return times, np.stack(rows)

    lt_ms, lt = timed(onnx)
    tf_ms, tf = timed(keras)
    cosines = (lt * tf).sum(axis=1)
    print(
        json.dumps(
            {
                "images": len(images),
                "weights": onnx.weights,
                "onnx_ms": statistics.median(lt_ms),
                "tensorflow_ms": statistics.median(tf_ms),
                "keras_build_s": keras_build_s,
                "cosine_min": float(cosines.min()),
                "cosine_mean": float(cosines.mean()),
                "max_abs_diff": float(np.abs(lt - tf).max()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
