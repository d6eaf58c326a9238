"""Large query images: POST /uploads (a presigned POST into the queries prefix whose policy bounds the size and the
type), the POST to S3, then POST /search {"key": ...}."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pictrace.api import create_app
from pictrace.settings import Settings

from infra.local import LambdaContext, SqsWorker, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import load_event


@pytest.fixture
def indexed(stack: Any) -> Any:
    for name in ("coffee.png", "astronaut.jpg"):
        stack.client("s3").put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py")).drain()
    return stack


def presigned(client: TestClient, content_type: str | None = "image/png") -> dict[str, Any]:
    response = client.post("/uploads", json={"content_type": content_type} if content_type else None)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["key"].startswith("queries/") and body["method"] == "POST" and body["expires_in"] == 900
    return body


def post(body: dict[str, Any], data: bytes, content_type: str) -> httpx.Response:
    """The browser's or the CLI's POST to S3: the fields as given, the Content-Type, then the file."""
    fields = {**body["fields"], "Content-Type": content_type}
    return httpx.post(body["url"], data=fields, files={"file": ("q", data, content_type)}, timeout=30)


def policy(body: dict[str, Any]) -> list[Any]:
    """The conditions of a presigned POST's policy (what S3 enforces)."""
    conditions: list[Any] = json.loads(base64.b64decode(body["fields"]["policy"]))["conditions"]
    return conditions


def upload(client: TestClient, data: bytes, content_type: str | None = "image/png") -> str:
    body = presigned(client, content_type)
    done = post(body, data, content_type or "image/jpeg")
    assert done.status_code in (200, 201, 204), done.text
    key: str = body["key"]
    return key


def test_the_upload_policy_bounds_size_and_type(stack: Any) -> None:
    """Issue 26: whatever the client asks, the presigned POST carries a size range and the image types."""
    client = TestClient(create_app(Settings.from_env(max_bytes=123_456)))
    for asked in ("image/png", None):
        body = presigned(client, asked)
        conditions = policy(body)
        assert ["content-length-range", 1, 123_456] in conditions and body["max_bytes"] == 123_456
        if asked:
            assert {"Content-Type": asked} in conditions and body["fields"]["Content-Type"] == asked
        else:
            assert ["starts-with", "$Content-Type", "image/"] in conditions
        assert {"key": body["key"]} in conditions or any(c == ["eq", "$key", body["key"]] for c in conditions)
    assert client.post("/uploads", json={"content_type": "text/html"}).status_code == 400


def test_upload_then_search_by_key(indexed: Any) -> None:
    client = TestClient(create_app())
    key = upload(client, read("coffee.png"))
    response = client.post("/search", json={"key": key, "top_k": 1})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == hashlib.sha256(read("coffee.png")).hexdigest()
    # the upload is a query, not an image: it is not indexed (the queries prefix does not notify ingest)
    assert response.json()["indexed"] == 2


def test_only_uploaded_keys_under_the_queries_prefix_are_read(indexed: Any) -> None:
    client = TestClient(create_app())
    for key in ("images/coffee.png", "index/x", "queries/", "queries/../images/coffee.png", "queries//x", "/queries/a"):
        response = client.post("/search", json={"key": key})
        assert response.status_code == 400, (key, response.text)
    missing = client.post("/search", json={"key": "queries/never-uploaded"})
    assert missing.status_code == 404 and "expired" in missing.json()["detail"]
    both = client.post("/search", json={"key": "queries/a", "id": "0" * 64})
    assert both.status_code == 400
    assert client.post("/uploads", json={"content_type": "text/html"}).status_code == 400


def test_uploads_over_the_size_limit_are_refused_when_read(indexed: Any) -> None:
    client = TestClient(create_app())
    key = upload(client, read("astronaut.jpg"), content_type=None)
    small = TestClient(create_app(Settings.from_env(max_bytes=len(read("astronaut.jpg")) - 1)))
    response = small.post("/search", json={"key": key})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_uploads_through_api_gateway_and_mangum(stack: Any) -> None:
    event = load_event("apigw_search_id.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/uploads"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /uploads"
    event["body"] = json.dumps({"content_type": "image/jpeg"})
    response = load_handler(ROOT / "functions/search/app.py", fresh=True)(event, LambdaContext())
    assert response["statusCode"] == 201, response["body"]
    body = json.loads(response["body"])
    assert body["key"].startswith("queries/") and body["method"] == "POST"
    assert body["fields"]["Content-Type"] == "image/jpeg" and "x-amz-signature" in body["fields"]
    assert stack.bucket in body["url"]
