"""Events for the real handlers, made from the committed samples in events/ (`sam local generate-event`)."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any
from urllib.parse import quote_plus

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
