"""S3 throttling and server errors, injected by a proxy in front of the local endpoint."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pictrace.storage import s3_client

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, forget_container, read
from tests.functional.faults import FaultProxy
from tests.functional.helpers import consistent


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    from pictrace.settings import get_settings

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    s3_client.cache_clear()
    get_settings.cache_clear()
    forget_container()


def test_throttling_and_5xx_are_retried_and_leave_no_partial_entries(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every third S3 request fails with 503 SlowDown or 500 InternalError
    with FaultProxy(stack.endpoint, lambda m, p, n: (503 if n % 2 else 500) if n % 3 == 0 else None) as proxy:
        use_endpoint(monkeypatch, proxy.endpoint)
        s3 = stack.client("s3")
        for name in PHOTOS:
            s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
        worker.drain()
        assert proxy.injected > 5
        assert worker.failed == 0  # botocore's retries absorbed every fault
        entries = consistent(stack)
        assert sorted(entries) == sorted(hashlib.sha256(read(n)).hexdigest() for n in PHOTOS)

        from pictrace.api import create_app

        client = TestClient(create_app())
        for name in PHOTOS[:3]:
            response = client.post("/search", files={"file": (name, read(name), "application/octet-stream")})
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["id"] == hashlib.sha256(read(name)).hexdigest()


def test_a_message_that_keeps_failing_lands_in_the_dlq_with_its_reason_logged(
    stack: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/ok.jpg", Body=read("astronaut.jpg"))
    s3.put_object(Bucket=stack.bucket, Key="images/down.png", Body=read("coffee.png"))
    # reads of one image always fail: S3 keeps answering 500 for it, past botocore's (here: 2) attempts
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    with FaultProxy(stack.endpoint, lambda m, p, n: 500 if "/images/down.png" in p else None) as proxy:
        use_endpoint(monkeypatch, proxy.endpoint)
        worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
        with caplog.at_level(logging.ERROR, logger="pictrace.ingest"):
            for _ in range(stack.max_receive_count + 2):
                worker.drain(timeout=30)
    sqs = stack.client("sqs")
    dead = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    keys = [json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in dead]
    assert [k.replace("%2F", "/") for k in keys] == ["images/down.png"]
    # the reason: S3's 500, by its code (a GET's error body) or its status (a HEAD has no body)
    reasons = [r.getMessage() for r in caplog.records if "images/down.png" in r.getMessage()]
    assert any("(InternalError)" in m or "(500)" in m for m in reasons)
    assert list(consistent(stack).values()) == [("images/ok.jpg",)]  # the rest of the batch went in
