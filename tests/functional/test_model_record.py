"""One model per index: the first ingest records the model (weights, width); another model is refused, never mixed,
with a message that says how to reindex."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from pictrace.embedding import SSCD_PREPROCESSINGS
from pictrace.index.layout import Entry
from pictrace.index.store import IndexStore
from pictrace.rerank import compute_features
from pictrace.storage import Store

from infra.local import LambdaContext, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import load_event, sqs_s3_event


def model_record(stack: Any) -> dict[str, Any]:
    body = stack.client("s3").get_object(Bucket=stack.bucket, Key="index/model.json")["Body"].read()
    record: dict[str, Any] = json.loads(body)
    return record


def index_keys(stack: Any) -> list[str]:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket, Prefix="index/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def search_health_and_query(stack: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    handler = load_handler(ROOT / "functions/search/app.py", fresh=True)
    event = load_event("apigw_search_id.json")
    event["body"] = json.dumps({"id": "0" * 64})
    response = handler(event, LambdaContext())
    return response, json.loads(response["body"])


def test_the_first_ingest_records_the_model(stack: Any, model_dir: str) -> None:
    ingest = load_handler(ROOT / "functions/ingest/app.py")
    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=read("astronaut.jpg"))
    assert ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext()) == {"batchItemFailures": []}
    record = model_record(stack)
    assert (record["weights"], record["dim"]) == ("sscd", 512)
    assert record["preprocess"] == json.loads((Path(model_dir) / "model.json").read_text())["preprocess"]


def test_an_index_of_another_model_is_refused_by_ingest_and_search(stack: Any) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="index/model.json", Body=json.dumps({"weights": "random:0", "dim": 2048}))
    s3.put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=read("astronaut.jpg"))
    ingest = load_handler(ROOT / "functions/ingest/app.py")
    with pytest.raises(BatchProcessingError, match="ModelMismatch"):  # retried, then the DLQ: the message stays
        ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext())
    assert index_keys(stack) == ["index/model.json"]  # nothing written, no failure recorded against the image
    response, body = search_health_and_query(stack)
    assert response["statusCode"] == 503 and body["error"] == "ModelMismatch"
    assert (
        "'random:0' (2048-d, resnet50-caffe-224 preprocessing)" in body["detail"]
        and "'sscd' (512-d, " in body["detail"]
    )
    assert "pictrace ingest s3://" in body["detail"] and "Weights=random:0" in body["detail"]


def test_an_index_from_before_the_record_is_judged_by_its_entries(stack: Any) -> None:
    """An index written before model.json existed: its entries' weights decide."""
    store = IndexStore(Store(stack.bucket, stack.client("s3")), "index/")
    bgr = np.zeros((64, 64, 3), np.uint8)
    old = Entry("e" * 64, ("images/old.jpg",), np.ones(2048, np.float32) / 2048**0.5, compute_features(bgr), {})
    old = Entry(old.id, old.keys, old.embedding, old.features, {"weights": "random:0"})
    store.create_or_add_key(old, "images/old.jpg")
    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=read("astronaut.jpg"))
    ingest = load_handler(ROOT / "functions/ingest/app.py")
    with pytest.raises(BatchProcessingError, match="ModelMismatch"):
        ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext())
    assert "index/model.json" not in index_keys(stack)
    response, body = search_health_and_query(stack)
    assert response["statusCode"] == 503 and "'random:0' (2048-d, resnet50-caffe-224 preprocessing)" in body["detail"]


def test_the_same_weights_with_another_preprocessing_are_refused(stack: Any, model_dir: str) -> None:
    """Embeddings of one network made from inputs of other sizes do not mix either: the record names the
    preprocessing, and a record from before it did is read as what `make model` gave SSCD then (short edge 288)."""
    ours = json.loads((Path(model_dir) / "model.json").read_text())["preprocess"]
    other = next(p for p in SSCD_PREPROCESSINGS if p != ours)
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=read("astronaut.jpg"))
    ingest = load_handler(ROOT / "functions/ingest/app.py")
    record = {"weights": "sscd", "dim": 512, "preprocess": other}
    s3.put_object(Bucket=stack.bucket, Key="index/model.json", Body=json.dumps(record))
    with pytest.raises(BatchProcessingError, match="ModelMismatch"):
        ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext())
    assert index_keys(stack) == ["index/model.json"]
    response, body = search_health_and_query(stack)
    assert response["statusCode"] == 503 and f"512-d, {other} preprocessing" in body["detail"]
    assert f"make model WEIGHTS=sscd PREPROCESS={other}" in body["detail"]

    legacy = {"weights": "sscd", "dim": 512}  # written before the record named a preprocessing
    s3.put_object(Bucket=stack.bucket, Key="index/model.json", Body=json.dumps(legacy))
    ingest = load_handler(ROOT / "functions/ingest/app.py", fresh=True)
    if ours == "sscd-short288":
        assert ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext()) == {"batchItemFailures": []}
    else:
        with pytest.raises(BatchProcessingError, match="ModelMismatch"):
            ingest(sqs_s3_event(stack.bucket, ["images/a.jpg"]), LambdaContext())
