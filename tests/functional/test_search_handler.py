"""The real search handler (Mangum) on API Gateway HTTP API events, including a base64 multipart body."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

from infra.local import LambdaContext, SqsWorker, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import load_event


def test_health_event(stack: Any) -> None:
    handler = load_handler(ROOT / "functions/search/app.py", fresh=True)
    response = handler(load_event("apigw_health.json"), LambdaContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["weights"] == "sscd"


def test_multipart_upload_survives_api_gateway_and_mangum(stack: Any) -> None:
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    for name in ("astronaut.jpg", "coffee.png"):
        stack.client("s3").put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    worker.drain()
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + read("coffee.png")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    event = load_event("apigw_search_id.json")
    event["headers"]["content-type"] = f"multipart/form-data; boundary={boundary}"
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    handler = load_handler(ROOT / "functions/search/app.py", fresh=True)
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["results"][0]["id"] == hashlib.sha256(read("coffee.png")).hexdigest()


def test_search_by_id_event(stack: Any) -> None:
    handler = load_handler(ROOT / "functions/search/app.py", fresh=True)
    response = handler(load_event("apigw_search_id.json"), LambdaContext())
    assert response["statusCode"] == 404
    assert "no indexed image" in json.loads(response["body"])["detail"]
