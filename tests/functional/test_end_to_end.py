"""Upload -> S3 notification -> SQS -> real ingest handler -> index in S3 -> POST /search (the real app)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, read


@pytest.fixture
def indexed(stack: Any) -> Iterator[tuple[Any, SqsWorker]]:
    """The local stack with the test photos uploaded and indexed through the queue."""
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    s3 = stack.client("s3")
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    worker.drain()
    assert worker.processed >= len(PHOTOS) and worker.failed == 0  # plus S3's s3:TestEvent message
    yield stack, worker


@pytest.fixture
def client(indexed: Any) -> TestClient:
    from pictrace.api import create_app

    return TestClient(create_app())


def index_snapshot(stack: Any) -> dict[str, str]:
    pages = stack.client("s3").get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="index/")
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def variants() -> dict[str, bytes]:
    photo = cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    return {
        "same bytes": read("astronaut.jpg"),
        "resized": cv2.imencode(".png", cv2.resize(photo, (w // 2, h // 2), interpolation=cv2.INTER_AREA))[1].tobytes(),
        "cropped": cv2.imencode(".jpg", photo[h // 10 : h - h // 10, w // 10 : w - w // 10])[1].tobytes(),
        "jpeg q30": cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes(),
    }


@pytest.mark.parametrize("variant", ["same bytes", "resized", "cropped", "jpeg q30"])
def test_uploaded_photo_comes_back_first(client: TestClient, variant: str) -> None:
    response = client.post("/search?top_k=3", files={"file": ("q.jpg", variants()[variant], "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    best = body["results"][0]
    assert best["id"] == hashlib.sha256(read("astronaut.jpg")).hexdigest()
    assert best["keys"] == ["images/astronaut.jpg"]
    assert set(best["scores"]) >= {"cosine", "ssim", "orb", "final"}
    assert [r["scores"]["final"] for r in body["results"]] == sorted(
        (r["scores"]["final"] for r in body["results"]), reverse=True
    )
    assert set(body["timings_ms"]) >= {"decode", "embed", "scan", "fetch", "rerank", "total"}
    assert body["weights"] == "sscd" and body["indexed"] == len(PHOTOS)
    # "copy / not a copy" is unmistakable: the edited photo is a copy, the other indexed photos are not
    assert best["match"] is True and best["similarity"] > 50, best
    others = body["results"][1:]
    assert others and all(r["match"] is False and r["similarity"] < 50 for r in others), others
    if variant == "same bytes":
        assert best["scores"]["cosine"] > 0.999 and best["similarity"] > 99


def test_presigned_link_serves_the_original(client: TestClient, indexed: Any) -> None:
    import urllib.request

    body = client.post("/search", files={"file": ("q.png", read("coffee.png"), "image/png")}).json()
    with urllib.request.urlopen(body["results"][0]["url"], timeout=10) as r:
        assert r.read() == read("coffee.png")


def test_search_by_base64_and_by_id(client: TestClient) -> None:
    entry_id = hashlib.sha256(read("chelsea.webp")).hexdigest()
    by_b64 = client.post("/search", json={"image_base64": base64.b64encode(read("chelsea.webp")).decode(), "top_k": 2})
    assert by_b64.status_code == 200 and by_b64.json()["results"][0]["id"] == entry_id, by_b64.text
    assert len(by_b64.json()["results"]) == 2
    by_id = client.post("/search", json={"id": entry_id})
    assert by_id.status_code == 200 and by_id.json()["results"][0]["id"] == entry_id


def test_search_by_url(client: TestClient, indexed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, _ = indexed
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="public/rocket.bmp", Body=read("rocket.bmp"), ContentType="image/bmp")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": stack.bucket, "Key": "public/rocket.bmp"})
    refused = client.post("/search", json={"url": url})
    assert refused.status_code == 422 and "loopback" in refused.json()["detail"]  # 127.0.0.1 is refused by default
    from pictrace.api import create_app
    from pictrace.settings import Settings

    allowing = TestClient(create_app(Settings.from_env(url_allow_private=True)))
    response = allowing.post("/search", json={"url": url})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == hashlib.sha256(read("rocket.bmp")).hexdigest()


def test_image_details_and_health(client: TestClient) -> None:
    entry_id = hashlib.sha256(read("rocket.bmp")).hexdigest()
    details = client.get(f"/images/{entry_id}").json()
    assert details["keys"] == ["images/rocket.bmp"] and details["meta"]["format"] == "bmp"
    assert client.get(f"/images/{'0' * 64}").status_code == 404
    assert client.get("/images/not-an-id").status_code == 400
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["weights"] == "sscd" and health["backend"] == "onnxruntime"
    assert client.get("/openapi.json").json()["paths"]["/search"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    "kwargs,status,words",
    [
        ({"files": {"file": ("x.txt", b"hello, not an image", "text/plain")}}, 422, "not a supported image"),
        ({"files": {"file": ("t.jpg", read("truncated.jpg"), "image/jpeg")}}, 422, "truncated"),
        ({"files": {"file": ("c.jpg", read("corrupt.jpg"), "image/jpeg")}}, 422, "corrupt"),
        ({"files": {"file": ("e.jpg", b"", "image/jpeg")}}, 422, "empty"),
        ({"files": {"other": ("a.jpg", read("astronaut.jpg"), "image/jpeg")}}, 400, "'file'"),
        ({"json": {}}, 400, "exactly one"),
        ({"json": {"id": "0" * 64, "url": "http://example.com/a.jpg"}}, 400, "exactly one"),
        ({"json": {"image_base64": "%%%"}}, 400, "base64"),
        ({"json": {"url": "ftp://example.com/a.jpg"}}, 422, "http"),
        ({"json": {"url": "http://unreachable.invalid/a.jpg"}}, 422, "resolve"),
        ({"json": {"id": "0" * 64}}, 404, "no indexed image"),
        ({"content": b"raw", "headers": {"content-type": "text/plain"}}, 400, "multipart"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message_and_leave_the_index(
    client: TestClient, indexed: Any, kwargs: dict[str, Any], status: int, words: str
) -> None:
    stack, _ = indexed
    before = index_snapshot(stack)
    response = client.post("/search", **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert index_snapshot(stack) == before


def test_over_the_limits_is_413_naming_the_limit(indexed: Any) -> None:
    from pictrace.api import create_app
    from pictrace.settings import Settings

    few_bytes = TestClient(create_app(Settings.from_env(max_bytes=10_000)))
    too_big = few_bytes.post("/search", files={"file": ("a.jpg", read("astronaut.jpg"), "image/jpeg")})
    assert too_big.status_code == 413 and "bytes" in too_big.json()["detail"]
    few_pixels = TestClient(create_app(Settings.from_env(max_pixels=10_000)))
    too_many = few_pixels.post("/search", files={"file": ("c.png", read("coffee.png"), "image/png")})
    assert too_many.status_code == 413 and "pixels" in too_many.json()["detail"]


def test_new_upload_becomes_searchable_and_delete_removes_it(client: TestClient, indexed: Any) -> None:
    stack, worker = indexed
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/new/rgba.png", Body=read("rgba.png"))
    worker.drain()
    entry_id = hashlib.sha256(read("rgba.png")).hexdigest()
    body = client.post("/search", files={"file": ("q.png", read("rgba.png"), "image/png")}).json()
    assert body["results"][0]["id"] == entry_id and body["indexed"] == len(PHOTOS) + 1
    assert client.get(f"/images/{entry_id}").json()["keys"] == ["images/new/rgba.png"]  # now in the feature cache
    s3.delete_object(Bucket=stack.bucket, Key="images/new/rgba.png")
    worker.drain()
    body = client.post("/search", files={"file": ("q.png", read("rgba.png"), "image/png")}).json()
    assert entry_id not in [r["id"] for r in body["results"]] and body["indexed"] == len(PHOTOS)
    assert client.get(f"/images/{entry_id}").status_code == 404  # the cache does not resurrect it
    assert client.post("/search", json={"id": entry_id}).status_code == 404
    assert client.get("/health").json()["indexed"] == len(PHOTOS)
