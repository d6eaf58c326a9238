"""POST /search's key-prefix filter (one stack, several collections), before and after compaction into segments."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pictrace.wiring import compact

from infra.local import LambdaContext, SqsWorker, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import load_event

FILES = {"images/a/astronaut.jpg": "astronaut.jpg", "images/a/coffee.png": "coffee.png"}
FILES |= {"images/b/chelsea.webp": "chelsea.webp", "images/b/rocket.bmp": "rocket.bmp"}


def search(body: dict[str, Any], query: str = "") -> tuple[int, dict[str, Any]]:
    event = load_event("apigw_search_id.json")
    event["body"] = json.dumps(body)
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    response = load_handler(ROOT / "functions/search/app.py", fresh=True)(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_prefix_filter_in_json_and_query_string_before_and_after_compaction(stack: Any) -> None:
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    for key, name in FILES.items():
        stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=read(name))
    worker.drain()
    coffee = hashlib.sha256(read("coffee.png")).hexdigest()
    for compacted in (False, True):
        if compacted:
            assert compact().folded == 4
        status, everything = search({"id": coffee})
        assert status == 200 and everything["results"][0]["id"] == coffee and len(everything["results"]) == 4
        status, only_b = search({"id": coffee, "prefix": "images/b/"})
        assert status == 200, only_b
        assert {k for r in only_b["results"] for k in r["keys"]} == {"images/b/chelsea.webp", "images/b/rocket.bmp"}
        status, only_a = search({"id": coffee}, "prefix=images/a/")
        assert status == 200 and only_a["results"][0]["keys"] == ["images/a/coffee.png"]
        assert {k for r in only_a["results"] for k in r["keys"]} == {"images/a/coffee.png", "images/a/astronaut.jpg"}
        status, none = search({"id": coffee, "prefix": "images/c/"})
        assert status == 200 and none["results"] == []
