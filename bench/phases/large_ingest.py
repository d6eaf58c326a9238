"""Phase "large ingest": ingest of >= 12 MP JPEGs through the real Ingestor (what the ingest handler calls per S3
record), next to the model alone on the same images; then each ingest stage timed apart on the same bytes: the
image pipeline (pictrace.pipeline.prepare) with its stage timer, the model's share of its "embed" stage timed by
TimedEmbedder (the rest of that stage is the rerank features)."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import quote_plus

import numpy as np

from bench import models
from bench.common import ROOT, SAMPLES, images_in
from bench.profile import Profile


class LargeImage(TypedDict):
    """One large JPEG: megapixels and bytes."""

    file: str
    mp: float
    bytes: int


@dataclass(frozen=True)
class LargeIngest:
    """results.json's "ingest_large" (and models[label]["ingest_large"])."""

    images: list[LargeImage]
    ingest_ms: list[float]
    ingest_per_s: float
    model_per_s: float
    ratio: float  # ingest throughput over the model's alone
    stages_mean_ms: dict[str, float]  # s3_get, sha256, decode, embed (the model alone), features, write
    ingest_mean_ms: float


@dataclass(frozen=True)
class NoLargeImages:
    """The phase's result when there are no large JPEGs (make samples): recorded, not a failure."""

    error: str


class TimedEmbedder:
    """An embedder (pictrace.embedding.Embedder) that adds the milliseconds of its inner embedder's calls to ms."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.weights: str = inner.weights
        self.backend: str = inner.backend
        self.dim: int = inner.dim
        self.ms = 0.0

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The inner embedder's rows, timed."""
        t = time.perf_counter()
        out: np.ndarray = self.inner.embed(images)
        self.ms += (time.perf_counter() - t) * 1000
        return out


def large_ingest(profile: Profile, stack: Any, config: models.ModelConfig) -> LargeIngest | NoLargeImages:
    """The model's ingest of profile.large_images large JPEGs (its own bucket on the stack); RuntimeError when one
    was not indexed."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.layout import Entry
    from pictrace.ingest import Ingestor, handle_s3_notification
    from pictrace.pipeline import Timer, prepare
    from pictrace.settings import Settings
    from pictrace.storage import Store

    files = images_in(SAMPLES / "large")[: profile.large_images]
    if not files:
        return NoLargeImages(f"no large JPEGs in {SAMPLES / 'large'} (make samples)")
    bucket = f"pictrace-bench-large-{config.slug}"
    s3 = stack.client("s3")
    s3.create_bucket(Bucket=bucket)
    settings = Settings.from_env(bucket=bucket, model_dir=str(config.model_dir), index_prefix="index/")
    embedder = OnnxEmbedder(config.model_dir)
    store = Store(bucket)
    ingestor = Ingestor(settings, store=store, embedder=embedder)
    template = json.loads((ROOT / "events/s3_put.json").read_text())
    sizes: list[LargeImage] = []
    ingest_ms = []
    for path in files:
        key = f"images/{path.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        record = json.loads(json.dumps(template["Records"][0]))
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        t = time.perf_counter()
        outcomes = handle_s3_notification({"Records": [record]}, ingestor)
        ingest_ms.append((time.perf_counter() - t) * 1000)
        if not outcomes or outcomes[0].action not in ("created", "added", "unchanged"):
            raise RuntimeError(f"ingest of {key} did not index it: {outcomes}")
    names = ("s3_get", "sha256", "decode", "embed", "features", "write")
    stages: dict[str, list[float]] = {k: [] for k in names}
    timed = TimedEmbedder(embedder)
    for path in files:
        key = f"images/{path.name}"
        t = time.perf_counter()
        body = store.get(key).body
        stages["s3_get"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        digest = hashlib.sha256(body).hexdigest()
        stages["sha256"].append((time.perf_counter() - t) * 1000)
        timer = Timer()
        timed.ms = 0.0
        prepared = prepare(
            body, lambda: timed, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels, timer=timer
        )
        stages["decode"].append(timer.timings["decode"])  # decoding and the border trim
        stages["embed"].append(timed.ms)  # the model alone
        stages["features"].append(max(0.0, timer.timings["embed"] - timed.ms))  # the rest of the pipeline's "embed"
        image = prepared.image
        sizes.append({"file": path.name, "mp": image.width * image.height / 1e6, "bytes": len(body)})
        t = time.perf_counter()
        entry = Entry(digest, (key,), prepared.embedding, prepared.features, {"bench": True})
        store.put(f"bench-probe/{digest}.npz", entry.to_bytes())  # outside the index prefix: not an entry
        stages["write"].append((time.perf_counter() - t) * 1000)
    ingest_s = sum(ingest_ms) / 1000
    model_s = sum(stages["embed"]) / 1000
    return LargeIngest(
        images=sizes,
        ingest_ms=ingest_ms,
        ingest_per_s=len(files) / ingest_s,
        model_per_s=len(files) / model_s,
        ratio=(len(files) / ingest_s) / (len(files) / model_s),
        stages_mean_ms={k: statistics.mean(v) for k, v in stages.items()},
        ingest_mean_ms=statistics.mean(ingest_ms),
    )
