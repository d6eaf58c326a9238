"""Phase "large ingest": >= 12 MP JPEGs through the real Ingestor in SQS batches as the ingest handler runs them,
against the model alone on the same images; then each stage apart on the same bytes (issue 29's goal: ingest's CPU
time per image in the batches over the stages' sum)."""

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
from bench.phases.embed_speed import ms_each
from bench.profile import Profile
from infra.invoke import load_template


class LargeImage(TypedDict):  # one large JPEG
    file: str
    mp: float
    bytes: int


@dataclass(frozen=True)
class LargeIngest:  # results.json's "ingest_large" (and models[label]["ingest_large"])
    images: list[LargeImage]
    ingest_ms: list[float]  # wall time of each batch
    ingest_per_s: float
    model_per_s: float
    ratio: float  # ingest throughput over the model's alone
    stages_mean_ms: dict[str, float]  # one after another: s3_get, sha256, decode, embed (the model), features, write
    ingest_mean_ms: float  # batch wall time per image
    batch_size: int  # SQS messages (images) per handler batch
    batch_stages_mean_ms: dict[str, float]  # in the batches: read, sha256, decode, features, embed, index
    model_ms: list[float]  # the model alone on each image, right before the batches, then in the stage pass after
    cpu_ms: dict[str, float]  # this process's CPU time per image: ingest (the batches), model (alone, the pass before)
    details_mean_ms: float = 0.0  # the details stage's own work per image (pictrace.detailstage: decode, model), apart

    @property
    def cpu_over_stages(self) -> float:
        """Ingest's CPU time per image over the sum of its stages run one after another (issue 29's goal)."""
        apart = sum(self.stages_mean_ms.values())
        return self.cpu_ms["ingest"] / apart if apart else float("inf")


@dataclass(frozen=True)
class NoLargeImages:  # the result when there are no large JPEGs (make samples): recorded, not a failure
    error: str


class TimedEmbedder:  # an embedder that adds the milliseconds of its inner embedder's calls to ms
    def __init__(self, inner: Any) -> None:
        self.inner, self.ms, self.weights = inner, 0.0, inner.weights
        self.backend, self.dim, self.preprocess = inner.backend, inner.dim, inner.preprocess

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t = time.perf_counter()
        out: np.ndarray = self.inner.embed(images)
        self.ms += (time.perf_counter() - t) * 1000
        return out


def large_ingest(profile: Profile, stack: Any, config: models.ModelConfig) -> LargeIngest | NoLargeImages:
    """The model's ingest of profile.large_images large JPEGs (own bucket); RuntimeError when one is not indexed."""
    from pictrace.details import embed_details
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.layout import Entry
    from pictrace.ingest import Ingestor, ingest_batch
    from pictrace.pipeline import Timer, decode_content, prepare
    from pictrace.settings import Settings
    from pictrace.storage import Store

    files = images_in(SAMPLES / "large")[: profile.large_images]
    if not files:
        return NoLargeImages(f"no large JPEGs in {SAMPLES / 'large'} (make samples)")
    bucket = f"pictrace-bench-large-{config.slug}"
    s3 = stack.client("s3")
    s3.create_bucket(Bucket=bucket)
    settings = Settings.from_env(bucket=bucket, model_dir=str(config.model_dir), index_prefix="index/")
    max_bytes, max_pixels = settings.max_bytes, settings.max_pixels
    embedder = OnnxEmbedder(config.model_dir)  # the model alone
    ingestor = Ingestor(settings, store=(store := Store(bucket)))  # its own embedder, as the handler's
    ingestor.warm()
    batch_size = int(load_template()["Parameters"]["IngestBatchSize"]["Default"])
    template = json.loads((ROOT / "events/sqs_s3_put.json").read_text())["Records"][0]
    sizes: list[LargeImage] = []
    ingest_ms, outcomes, contents = [], [], []
    for path in files:
        body = path.read_bytes()
        s3.put_object(Bucket=bucket, Key=f"images/{path.name}", Body=body)
        contents.append(decode_content(body, max_bytes=max_bytes, max_pixels=max_pixels).content)
    cpu = time.process_time()
    model_ms = ms_each(embedder.embed, [[c] for c in contents])  # before the batches (and after: drift evens out)
    model_cpu_ms = (time.process_time() - cpu) * 1000 / len(files)
    cpu = time.process_time()
    for first in range(0, len(files), batch_size):
        keys = [f"images/{path.name}" for path in files[first : first + batch_size]]
        event = {"Records": [sqs_record(template, bucket, key) for key in keys]}
        t = time.perf_counter()
        with ingest_batch(event, ingestor) as batch:
            for record in event["Records"]:  # what the handler's record_handler does, in the batch's order
                outcomes += batch.sync(record["messageId"])
        ingest_ms.append((time.perf_counter() - t) * 1000)
    ingest_cpu_ms = (time.process_time() - cpu) * 1000 / len(files)
    if [o.action for o in outcomes] != ["created"] * len(files):
        raise RuntimeError(f"ingest did not index every image: {outcomes}")
    batch_stages = ("read", "sha256", "decode", "features", "embed", "index")
    stages: dict[str, list[float]] = {k: [] for k in "s3_get sha256 decode embed features write".split()}
    timed = TimedEmbedder(embedder)
    for path in files:
        key = f"images/{path.name}"
        t = time.perf_counter()
        body = store.get(key).body
        stages["s3_get"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        digest = hashlib.sha256(body).hexdigest()
        stages["sha256"].append((time.perf_counter() - t) * 1000)
        timer, timed.ms = Timer(), 0.0
        prepared = prepare(body, lambda: timed, max_bytes=max_bytes, max_pixels=max_pixels, timer=timer)
        stages["decode"].append(timer.timings["decode"])  # decoding and the border trim
        stages["embed"].append(timed.ms)  # the model alone
        stages["features"].append(max(0.0, timer.timings["embed"] - timed.ms))  # the rest of the pipeline's "embed"
        sizes.append({"file": path.name, "mp": prepared.image.width * prepared.image.height / 1e6, "bytes": len(body)})
        t = time.perf_counter()
        entry = Entry(digest, (key,), prepared.embedding, prepared.features, {"bench": True})
        store.put(f"bench-probe/{digest}.npz", entry.to_bytes())  # outside the index prefix: not an entry
        stages["write"].append((time.perf_counter() - t) * 1000)
    model_ms += stages["embed"]
    details_of = lambda b: embed_details(embedder, b, max_bytes=max_bytes, max_pixels=max_pixels)  # noqa: E731
    details_ms = ms_each(details_of, [path.read_bytes() for path in files])  # as the details stage makes them
    ingest_s = sum(ingest_ms) / 1000
    model_s = sum(model_ms) / 2 / 1000  # the mean of the passes before and after the batches
    out: dict[str, Any] = dict(images=sizes, ingest_ms=ingest_ms, ingest_per_s=len(files) / ingest_s)
    out |= dict(model_per_s=len(files) / model_s, ratio=(len(files) / ingest_s) / (len(files) / model_s))
    in_batches = {k: statistics.mean(o.ms.get(k, 0.0) for o in outcomes) for k in batch_stages}
    out |= dict(stages_mean_ms={k: statistics.mean(v) for k, v in stages.items()}, batch_size=batch_size)
    cpu_ms, out["ingest_mean_ms"] = {"ingest": ingest_cpu_ms, "model": model_cpu_ms}, sum(ingest_ms) / len(files)
    out |= dict(batch_stages_mean_ms=in_batches, model_ms=model_ms, details_mean_ms=statistics.mean(details_ms))
    return LargeIngest(**out, cpu_ms=cpu_ms)


def sqs_record(template: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """An SQS message of the ingest queue carrying the S3 notification of a put of key."""
    body = json.loads(template["body"])
    (s3_record := body["Records"][0]["s3"])["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    s3_record["object"]["key"] = quote_plus(key, safe="/")  # as S3 encodes keys
    return {**template, "body": json.dumps(body), "messageId": hashlib.sha256(key.encode()).hexdigest()[:32]}
