"""Events for the real handlers, made from the committed samples in events/ (`sam local generate-event`), and the
index's invariants as a check."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any
from urllib.parse import quote_plus

from pictrace.index.store import IndexStore
from pictrace.storage import Store

from tests.conftest import ROOT

EVENTS = ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    """A committed sample event."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def sqs_s3_event(bucket: str, keys: list[str], removed: bool = False) -> dict[str, Any]:
    """An SQS batch as Lambda delivers it: one message per key, each carrying an S3 notification."""
    template = load_event("sqs_s3_delete.json" if removed else "sqs_s3_put.json")["Records"][0]
    records = []
    for key in keys:
        record = copy.deepcopy(template)
        body = json.loads(record["body"])
        body["Records"][0]["s3"]["bucket"]["name"] = bucket
        body["Records"][0]["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        body["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe="/")  # as S3 encodes keys
        record["body"] = json.dumps(body)
        record["messageId"] = str(uuid.uuid4())
        records.append(record)
    return {"Records": records}


def consistent(stack: Any, prefix: str = "index/") -> dict[str, tuple[str, ...]]:
    """Every entry's keys have pointers to it, and every pointer's entry holds its key; entry id -> keys."""
    s3 = stack.client("s3")
    store = IndexStore(Store(stack.bucket, s3), prefix)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix)
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    entries: dict[str, tuple[str, ...]] = {}
    for key in listed:
        if key.startswith(f"{prefix}entries/"):
            entry, _ = store.get_entry(key.rsplit("/", 1)[-1].removesuffix(".npz"))
            entries[entry.id] = entry.keys
    for entry_id, keys in entries.items():
        for image_key in keys:
            pointed = store.pointer(image_key)
            assert pointed == entry_id, f"entry {entry_id} holds {image_key}, whose pointer names {pointed}"
    for key in listed:
        if key.startswith(f"{prefix}keys/"):
            pointer = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
            held = entries.get(pointer["id"])
            assert held is not None and pointer["key"] in held, (
                f"the pointer of {pointer['key']} names entry {pointer['id']}, which does not hold it (holds {held})"
            )
    return entries
