"""Large query images: POST /uploads (presigned PUT into the queries prefix), PUT, then POST /search {"key": ...}."""

from __future__ import annotations

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


def upload(client: TestClient, data: bytes, content_type: str | None = "image/png") -> str:
    response = client.post("/uploads", json={"content_type": content_type} if content_type else None)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith("queries/") and body["method"] == "PUT" and body["expires_in"] == 900
    put = httpx.put(body["url"], content=data, headers=body["headers"], timeout=30)
    assert put.status_code == 200, put.text
    key: str = body["key"]
    return key


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
    assert body["key"].startswith("queries/") and body["headers"] == {"content-type": "image/jpeg"}
    assert stack.bucket in body["url"] and "X-Amz-Signature" in body["url"]
