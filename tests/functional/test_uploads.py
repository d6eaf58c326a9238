"""Large query images: POST /uploads (a presigned POST into the queries prefix whose policy bounds the size and the
type), the POST to S3, then POST /search {"key": ...}.

moto's S3 server does not enforce POST policies (it stores a file of any size or type under any presigned POST):
the policy is read from the fields and evaluated as S3 does (admits), and read_upload's own size bound is tested
against an upload the policy of a smaller limit would have refused."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pictrace.api import create_app
from pictrace.settings import Settings
from pictrace.uploads import UPLOAD_TYPES

from infra.local import LambdaContext, SqsWorker, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import load_event


@pytest.fixture
def indexed(stack: Any) -> Any:
    for name in ("coffee.png", "astronaut.jpg"):
        stack.client("s3").put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py")).drain()
    return stack


def presigned(client: TestClient, content_type: str = "image/png") -> dict[str, Any]:
    response = client.post("/uploads", json={"content_type": content_type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["key"].startswith("queries/") and body["method"] == "POST" and body["expires_in"] == 900
    return body


def post(body: dict[str, Any], data: bytes) -> httpx.Response:
    """The browser's or the CLI's POST to S3: the fields as given (the Content-Type among them), then the file."""
    return httpx.post(body["url"], data=body["fields"], files={"file": ("q", data)}, timeout=30)


def policy(body: dict[str, Any]) -> dict[str, Any]:
    """The presigned POST's policy document (what S3 enforces): expiration and conditions."""
    document: dict[str, Any] = json.loads(base64.b64decode(body["fields"]["policy"]))
    return document


def admits(document: dict[str, Any], form: dict[str, str], size: int, bucket: str) -> bool:
    """Whether S3 accepts a POST of this form and a file of this size under the policy: every condition holds
    (exact match, starts-with, content-length-range), and every form field but the signature's and the file is
    covered by a condition. moto's server accepts any POST whatever its policy (moto 5.2.5), hence this reading."""
    values = {**{k.lower(): v for k, v in form.items()}, "bucket": bucket}
    covered = {"policy", "x-amz-signature", "file"}
    for condition in document["conditions"]:
        if isinstance(condition, dict):
            ((name, want),) = condition.items()
            op, name = "eq", name.lower()
        elif condition[0] == "content-length-range":
            if not condition[1] <= size <= condition[2]:
                return False
            continue
        else:
            op, name, want = condition[0], condition[1].lstrip("$").lower(), condition[2]
        covered.add(name)
        have = values.get(name)
        if have is None or (have != want if op == "eq" else not have.startswith(want)):
            return False
    return set(values) - {"bucket"} <= covered


def upload(client: TestClient, data: bytes, content_type: str = "image/png") -> str:
    body = presigned(client, content_type)
    done = post(body, data)
    assert done.status_code in (200, 201, 204), done.text
    key: str = body["key"]
    return key


def test_the_upload_policy_admits_one_image_type_and_1_byte_to_max_bytes(stack: Any) -> None:
    """Issue 26: the presigned POST's policy bounds the size (1 byte to max_bytes) and admits only the image type
    asked for, one of the five PicTrace reads; the form as given passes it, a larger or empty file, another type, or
    another key does not."""
    client = TestClient(create_app(Settings.from_env(max_bytes=123_456)))
    for asked in UPLOAD_TYPES:
        body = presigned(client, asked)
        document = policy(body)
        assert ["content-length-range", 1, 123_456] in document["conditions"] and body["max_bytes"] == 123_456
        assert {"Content-Type": asked} in document["conditions"] and body["fields"]["Content-Type"] == asked
        assert not any(isinstance(c, list) and c[0] == "starts-with" for c in document["conditions"])
        expires = datetime.fromisoformat(document["expiration"].replace("Z", "+00:00"))
        assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 900 + 5

        form = body["fields"]
        assert admits(document, form, 1, stack.bucket) and admits(document, form, 123_456, stack.bucket)
        assert not admits(document, form, 123_457, stack.bucket) and not admits(document, form, 0, stack.bucket)
        for other in ("text/html", "image/svg+xml", "image/gif", "application/octet-stream", ""):
            assert not admits(document, {**form, "Content-Type": other}, 100, stack.bucket), other
        assert not admits(document, {k: v for k, v in form.items() if k != "Content-Type"}, 100, stack.bucket)
        assert not admits(document, {**form, "key": "images/x.jpg"}, 100, stack.bucket)
        assert not admits(document, form, 100, "another-bucket")


@pytest.mark.parametrize(
    "asked",
    [
        None,
        {},
        {"content_type": None},
        {"content_type": "text/html"},
        {"content_type": "image/svg+xml"},
        {"content_type": "image/gif"},
        {"content_type": "image/"},
    ],
)
def test_an_upload_needs_one_of_the_image_types(stack: Any, asked: dict[str, Any] | None) -> None:
    response = TestClient(create_app()).post("/uploads", json=asked)
    assert response.status_code == 400, response.text
    assert all(t in response.json()["detail"] for t in UPLOAD_TYPES)


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


def test_uploads_over_the_size_limit_are_refused_when_read(indexed: Any) -> None:
    client = TestClient(create_app())
    key = upload(client, read("astronaut.jpg"), content_type="image/jpeg")
    small = TestClient(create_app(Settings.from_env(max_bytes=len(read("astronaut.jpg")) - 1)))
    response = small.post("/search", json={"key": key})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_a_too_large_or_wrongly_typed_upload_is_refused_by_the_endpoint_or_when_read(indexed: Any) -> None:
    """Against the storage endpoint as it is (S3 refuses these POSTs by the policy; moto stores them): either the
    POST is refused, or the search by its key is a 4xx (over max_bytes: 413; not an image: 422)."""
    photo = read("coffee.png")
    client = TestClient(create_app(Settings.from_env(max_bytes=len(photo))))
    for data, form_type, status in (
        (photo + b"\0", "image/png", 413),
        (b"<script>alert(1)</script>", "text/html", 422),
    ):
        body = presigned(client, "image/png")
        stored = httpx.post(
            body["url"], data={**body["fields"], "Content-Type": form_type}, files={"file": ("q", data)}
        )
        if stored.status_code < 300:  # moto: the policy is not enforced, the read is the bound
            answer = client.post("/search", json={"key": body["key"]})
            assert answer.status_code == status and answer.json()["detail"], answer.text
        else:
            assert stored.status_code in (400, 403), stored.text
    assert post(presigned(client, "image/png"), photo).status_code in (200, 201, 204)  # exactly max_bytes: stored


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
