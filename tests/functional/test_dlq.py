"""Retries and the dead-letter queue on the local stack, as Lambda's SQS event source mapping would drive them.

The queue has a RedrivePolicy (maxReceiveCount = stack.max_receive_count) like the template's. moto moves a message
to the DLQ on the receive after the one that brought its receive count to maxReceiveCount, as SQS does
(moto/sqs/models.py, receive_message), so SqsWorker needs no emulation of it: these tests observe moto doing it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pictrace.index.store import IndexStore
from pictrace.storage import Store

from infra.local import SqsWorker, load_handler
from tests.conftest import ROOT, read


def dead_letters(stack: Any) -> list[str]:
    """Keys named by the messages in the DLQ."""
    sqs = stack.client("sqs")
    messages = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"].replace("%2F", "/") for m in messages)


def queue_depth(stack: Any) -> int:
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def count_reads(monkeypatch: pytest.MonkeyPatch, fail: Callable[[str], Exception | None]) -> Counter[str]:
    """Count Store.get per key; raise fail(key) instead of reading when it returns an exception."""
    reads: Counter[str] = Counter()
    original = Store.get

    def get(self: Store, key: str, max_bytes: int | None = None) -> Any:
        reads[key] += 1
        error = fail(key)
        if error is not None:
            raise error
        return original(self, key, max_bytes)

    monkeypatch.setattr(Store, "get", get)
    return reads


def drain(stack: Any) -> SqsWorker:
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    worker.drain(timeout=60)
    return worker


def test_a_crashing_message_is_received_max_receive_count_times_then_dead_lettered(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that keeps raising something other than an invalid image is retried, then lands in the DLQ."""
    reads = count_reads(monkeypatch, lambda key: RuntimeError("socket closed") if key.endswith("crash.jpg") else None)
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/crash.jpg", Body=read("astronaut.jpg"))
    s3.put_object(Bucket=stack.bucket, Key="images/fine.png", Body=read("coffee.png"))
    worker = drain(stack)
    assert reads["images/crash.jpg"] == stack.max_receive_count  # N receives, no more
    assert reads["images/fine.png"] == 1  # the rest of the batch went in once
    assert dead_letters(stack) == ["images/crash.jpg"]
    assert queue_depth(stack) == 0
    assert worker.failed == stack.max_receive_count  # (processed also counts S3's s3:TestEvent message)
    store = IndexStore(Store(stack.bucket, stack.client("s3")), "index/")
    assert store.pointer("images/fine.png") is not None
    assert store.pointer("images/crash.jpg") is None and store.failure("images/crash.jpg") is None


def test_a_missing_model_dead_letters_every_message_and_records_nothing(
    stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not the image's fault: no failure record (that would stop retries after a fix), DLQ after N receives."""
    from pictrace.settings import get_settings

    monkeypatch.setenv("PICTRACE_MODEL_DIR", str(tmp_path / "no-model"))
    get_settings.cache_clear()
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=read("astronaut.jpg"))
    drain(stack)
    assert dead_letters(stack) == ["images/a.jpg"]
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="index/").get("Contents", [])
    assert listed == []


def test_an_invalid_image_is_recorded_once_and_never_retried(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = count_reads(monkeypatch, lambda key: None)
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/broken.jpg", Body=read("truncated.jpg"))
    s3.put_object(Bucket=stack.bucket, Key="images/fine.png", Body=read("coffee.png"))
    worker = drain(stack)
    assert reads["images/broken.jpg"] == 1
    assert worker.failed == 0
    assert dead_letters(stack) == [] and queue_depth(stack) == 0
    failure = IndexStore(Store(stack.bucket, stack.client("s3")), "index/").failure("images/broken.jpg")
    assert failure is not None and "truncated" in failure["reason"]


def test_ingest_emits_one_metric_per_outcome(stack: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Powertools Metrics (EMF on stdout): IngestCreated, IngestFailed, ... in the PicTrace namespace from Globals."""
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/ok.png", Body=read("coffee.png"))
    s3.put_object(Bucket=stack.bucket, Key="images/bad.jpg", Body=read("truncated.jpg"))
    capsys.readouterr()
    drain(stack)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counts: Counter[str] = Counter()
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                counts[metric["Name"]] += sum(value) if isinstance(value, list) else value
    assert counts == {"IngestCreated": 1, "IngestFailed": 1}
    assert {d["Namespace"] for b in blobs for d in b["_aws"]["CloudWatchMetrics"]} == {"PicTraceTest"}
