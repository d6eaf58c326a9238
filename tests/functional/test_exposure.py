"""What leaves the service: presigned links expire, logs carry no secrets or bytes, errors carry no internals."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
from contextlib import redirect_stdout
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, read

SECRET = "pictrace-secret-" + hashlib.sha256(b"exposure").hexdigest()[:16]


@pytest.fixture
def secret_stack(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from pictrace.storage import s3_client

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("PICTRACE_PRESIGN_SECONDS", "120")
    s3_client.cache_clear()
    from pictrace.settings import get_settings

    get_settings.cache_clear()
    return stack


def test_links_expire_logs_hold_no_secrets_and_no_bytes(secret_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    from pictrace.api import create_app

    stack = secret_stack
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG, logger="pictrace"), redirect_stdout(out):
        s3 = stack.client("s3")
        for name in PHOTOS:
            s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        s3.put_object(Bucket=stack.bucket, Key="images/bad.jpg", Body=read("corrupt.jpg"))
        SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py", fresh=True)).drain()
        client = TestClient(create_app())
        before = time.time()
        body = client.post("/search", files={"file": ("q.jpg", read("astronaut.jpg"), "image/jpeg")}).json()
        b64 = base64.b64encode(read("coffee.png")).decode()
        client.post("/search", json={"image_base64": b64})
        client.post("/search", json={"image_base64": base64.b64encode(read("truncated.jpg")).decode()})
    url = body["results"][0]["url"]
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        assert query["X-Amz-Expires"] == ["120"]
    else:
        assert before + 100 <= int(query["Expires"][0]) <= time.time() + 121
    logs = out.getvalue() + "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot index images/bad.jpg" in logs  # the logs are really captured
    for leak in (SECRET, "Signature=", "X-Amz-Signature", url, b64[:40], "/9j/", "\\xff\\xd8"):
        assert leak not in logs


def test_unexpected_errors_answer_500_without_internals(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pictrace.api import create_app
    from pictrace.search import SearchService

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("/var/task/secret/path.py exploded with key AKIA0000")

    monkeypatch.setattr(SearchService, "search", broken)
    response = TestClient(create_app(), raise_server_exceptions=False).post(
        "/search", files={"file": ("q.jpg", read("astronaut.jpg"), "image/jpeg")}
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "error": "InternalError"}
