"""Concurrent and duplicated ingest against the local S3 and SQS, and deletes while searches run."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from fastapi.testclient import TestClient
from pictrace.ingest import Ingestor
from pictrace.settings import get_settings

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, read
from tests.functional.helpers import consistent


def distinct_images(n: int) -> list[bytes]:
    """n different real-photo JPEGs (crops and scales of the test photos)."""
    out = []
    for i in range(n):
        photo = cv2.imdecode(np.frombuffer(read(PHOTOS[i % len(PHOTOS)]), np.uint8), cv2.IMREAD_COLOR)
        w = photo.shape[1]
        crop = photo[i // len(PHOTOS) * 10 :, : w - i]
        out.append(cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    assert len({hashlib.sha256(b).hexdigest() for b in out}) == n
    return out


def test_twenty_distinct_images_ingested_concurrently_give_twenty_entries(stack: Any) -> None:
    images = distinct_images(20)
    s3 = stack.client("s3")
    for i, data in enumerate(images):
        s3.put_object(Bucket=stack.bucket, Key=f"images/c/{i:02d}.jpg", Body=data)
    handler = load_handler(ROOT / "functions/ingest/app.py")
    workers = [SqsWorker(stack, handler, batch_size=3) for _ in range(4)]  # four concurrent "Lambda" pollers
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda w: w.drain(), workers))
    assert sum(w.failed for w in workers) == 0
    entries = consistent(stack)
    assert sorted(entries) == sorted(hashlib.sha256(b).hexdigest() for b in images)


def test_same_bytes_under_ten_keys_concurrently_give_one_entry_with_ten_keys(stack: Any) -> None:
    data = read("astronaut.jpg")
    keys = [f"images/dup/{i}.jpg" for i in range(10)]
    s3 = stack.client("s3")
    for key in keys:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    ingestor = Ingestor(get_settings())
    start = threading.Barrier(10)

    def ingest(key: str) -> str:
        start.wait()
        return ingestor.sync_key(key).action

    with ThreadPoolExecutor(10) as pool:
        actions = list(pool.map(ingest, keys))
    assert actions.count("created") == 1 and sorted(set(actions)) <= ["added", "created", "unchanged"]
    entries = consistent(stack)
    assert entries == {hashlib.sha256(data).hexdigest(): tuple(sorted(keys))}


def test_delete_while_searching_gives_no_5xx_and_no_ghost(stack: Any) -> None:
    from pictrace.api import create_app

    s3 = stack.client("s3")
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    worker.drain()
    client = TestClient(create_app())
    gone = hashlib.sha256(read("coffee.png")).hexdigest()
    statuses: list[int] = []
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            response = client.post("/search", files={"file": ("q.png", read("coffee.png"), "image/png")})
            statuses.append(response.status_code)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        s3.delete_object(Bucket=stack.bucket, Key="images/coffee.png")
        worker.drain()
    finally:
        stop.set()
        searcher.join(60)
    assert statuses and set(statuses) == {200}
    after = client.post("/search", files={"file": ("q.png", read("coffee.png"), "image/png")}).json()
    assert gone not in [r["id"] for r in after["results"]]
    assert after["indexed"] == len(PHOTOS) - 1
