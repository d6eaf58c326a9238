"""Phase "embedding speed": ms per image of each model (ONNX Runtime, 2 threads, one image at a time, after one
warm-up) on the same decoded, border-trimmed originals; and the preprocessing alone."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import metrics, models


@dataclass(frozen=True)
class ModelSpeed:  # one model's speed
    ms_p50: float
    ms_mean: float
    preprocess_ms_p50: float
    dim: int


@dataclass(frozen=True)
class EmbedSpeed:  # results.json's "embed_speed"
    images: int
    models: dict[str, ModelSpeed]


def ms_each(run: Callable[[Any], object], items: list[Any]) -> list[float]:
    """Milliseconds of run on each item, one call at a time."""
    times = []
    for item in items:
        t = time.perf_counter()
        run(item)
        times.append((time.perf_counter() - t) * 1000)
    return times


def embed_speed(configs: list[models.ModelConfig], paths: list[Path]) -> EmbedSpeed:
    """Each model's ms per image on the same images."""
    from pictrace.embedding import PREPROCESS, OnnxEmbedder, load_model_info
    from pictrace.images import decode_image
    from pictrace.rerank import trim_border

    images = [trim_border(decode_image(p.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).bgr) for p in paths]
    speeds: dict[str, ModelSpeed] = {}
    for config in configs:
        embedder = OnnxEmbedder(config.model_dir)
        embedder.embed(images[:1])
        times = ms_each(embedder.embed, [[image] for image in images])
        pre = ms_each(PREPROCESS[load_model_info(config.model_dir)["preprocess"]], images)
        speeds[config.label] = ModelSpeed(
            metrics.percentile(times, 50), statistics.mean(times), metrics.percentile(pre, 50), embedder.dim
        )
        del embedder
    return EmbedSpeed(len(images), speeds)
