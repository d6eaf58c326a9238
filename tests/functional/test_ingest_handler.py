"""The real ingest handler on SQS events (from events/), against the local S3 server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pictrace.index.layout import Entry
from pictrace.index.store import IndexStore
from pictrace.storage import Store

from infra.local import LambdaContext, load_handler
from tests.conftest import ROOT, read
from tests.functional.helpers import sqs_s3_event


@pytest.fixture
def ingest() -> Any:
    return load_handler(ROOT / "functions/ingest/app.py")


def index_objects(stack: Any) -> dict[str, str]:
    """key -> ETag of everything under the index prefix."""
    s3 = stack.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="index/")
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def entries(stack: Any) -> dict[str, Entry]:
    store = IndexStore(Store(stack.bucket, stack.client("s3")), "index/")
    found = {}
    for key in index_objects(stack):
        if key.startswith("index/entries/"):
            entry_id = key.split("/")[-1].removesuffix(".npz")
            found[entry_id] = store.get_entry(entry_id)[0]
    return found


def put(stack: Any, key: str, body: bytes) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=body)


def test_put_event_indexes_one_entry_named_by_sha256(stack: Any, ingest: Any) -> None:
    import hashlib

    data = read("astronaut.jpg")
    put(stack, "images/astronaut.jpg", data)
    result = ingest(sqs_s3_event(stack.bucket, ["images/astronaut.jpg"]), LambdaContext())
    assert result == {"batchItemFailures": []}
    found = entries(stack)
    entry_id = hashlib.sha256(data).hexdigest()
    assert list(found) == [entry_id]
    entry = found[entry_id]
    assert entry.keys == ("images/astronaut.jpg",)
    assert entry.embedding.shape == (512,) and abs(float(np.linalg.norm(entry.embedding)) - 1) < 1e-5
    assert entry.meta["format"] == "jpeg" and entry.meta["weights"] == "sscd"
    assert len(entry.features.descriptors) > 0


def test_redelivery_changes_nothing(stack: Any, ingest: Any) -> None:
    put(stack, "images/a.jpg", read("astronaut.jpg"))
    event = sqs_s3_event(stack.bucket, ["images/a.jpg"])
    ingest(event, LambdaContext())
    before = index_objects(stack)
    ingest(event, LambdaContext())
    ingest(event, LambdaContext())
    assert index_objects(stack) == before


def test_same_bytes_under_a_second_key_add_the_key_not_an_entry(stack: Any, ingest: Any) -> None:
    data = read("coffee.png")
    put(stack, "images/one.png", data)
    put(stack, "images/copies/two.png", data)
    ingest(sqs_s3_event(stack.bucket, ["images/one.png", "images/copies/two.png"]), LambdaContext())
    (entry,) = entries(stack).values()
    assert entry.keys == ("images/copies/two.png", "images/one.png")


def test_removing_keys_removes_the_entry_with_its_last_key(stack: Any, ingest: Any) -> None:
    data = read("chelsea.webp")
    for key in ("images/x.webp", "images/y.webp"):
        put(stack, key, data)
    ingest(sqs_s3_event(stack.bucket, ["images/x.webp", "images/y.webp"]), LambdaContext())
    s3 = stack.client("s3")
    s3.delete_object(Bucket=stack.bucket, Key="images/x.webp")
    ingest(sqs_s3_event(stack.bucket, ["images/x.webp"], removed=True), LambdaContext())
    (entry,) = entries(stack).values()
    assert entry.keys == ("images/y.webp",)
    s3.delete_object(Bucket=stack.bucket, Key="images/y.webp")
    ingest(sqs_s3_event(stack.bucket, ["images/y.webp"], removed=True), LambdaContext())
    # only the entry's change marker stays (the tombstone the next compaction folds into a segment), and the record
    # of the model the index is built with
    assert list(index_objects(stack)) == [f"index/changes/{entry.id}", "index/model.json"]


def test_overwriting_a_key_with_other_bytes_moves_it(stack: Any, ingest: Any) -> None:
    put(stack, "images/p.jpg", read("astronaut.jpg"))
    ingest(sqs_s3_event(stack.bucket, ["images/p.jpg"]), LambdaContext())
    put(stack, "images/p.jpg", read("rocket.bmp"))
    ingest(sqs_s3_event(stack.bucket, ["images/p.jpg"]), LambdaContext())
    (entry,) = entries(stack).values()
    assert entry.meta["format"] == "bmp" and entry.keys == ("images/p.jpg",)


def test_bad_object_is_recorded_and_the_rest_of_the_batch_goes_in(stack: Any, ingest: Any) -> None:
    put(stack, "images/good.jpg", read("astronaut.jpg"))
    ingest(sqs_s3_event(stack.bucket, ["images/good.jpg"]), LambdaContext())
    before = entries(stack)
    put(stack, "images/bad.jpg", read("truncated.jpg"))
    put(stack, "images/empty.jpg", b"")
    put(stack, "images/ok.png", read("coffee.png"))
    result = ingest(
        sqs_s3_event(stack.bucket, ["images/bad.jpg", "images/empty.jpg", "images/ok.png"]), LambdaContext()
    )
    assert result == {"batchItemFailures": []}  # invalid images are permanent failures: recorded, not retried
    after = entries(stack)
    assert len(after) == 2 and all(after[i].keys == e.keys for i, e in before.items())
    store = IndexStore(Store(stack.bucket, stack.client("s3")), "index/")
    assert "truncated" in store.failure("images/bad.jpg")["reason"]  # type: ignore[index]
    assert "empty" in store.failure("images/empty.jpg")["reason"]  # type: ignore[index]


def test_keys_outside_the_images_prefix_are_ignored(stack: Any, ingest: Any) -> None:
    put(stack, "index/entries/evil.npz", read("astronaut.jpg"))
    before = index_objects(stack)
    ingest(sqs_s3_event(stack.bucket, ["index/entries/evil.npz"]), LambdaContext())
    assert index_objects(stack) == before


def test_sample_event_file_runs_unchanged(stack: Any, ingest: Any) -> None:
    from tests.functional.helpers import load_event

    put(stack, "images/astronaut.jpg", read("astronaut.jpg"))  # the key events/sqs_s3_put.json names
    event = load_event("sqs_s3_put.json")
    event["Records"][0]["body"] = event["Records"][0]["body"].replace("pictrace-local", stack.bucket)
    assert ingest(event, LambdaContext()) == {"batchItemFailures": []}
    assert len(entries(stack)) == 1


def test_a_batch_is_read_ahead_of_its_index_writes(stack: Any, ingest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pictrace.ingest import Ingestor

    events: list[tuple[str, str]] = []
    real_read, real_commit = Ingestor.read, Ingestor.commit

    def logged_read(self: Ingestor, key: str) -> Any:
        events.append(("read", key))
        return real_read(self, key)

    def logged_commit(self: Ingestor, loaded: Any) -> Any:
        outcome = real_commit(self, loaded)
        events.append(("indexed", loaded.key))
        return outcome

    monkeypatch.setattr(Ingestor, "read", logged_read)
    monkeypatch.setattr(Ingestor, "commit", logged_commit)
    keys = ["images/1.jpg", "images/2.png", "images/3.webp"]
    for key, name in zip(keys, ["astronaut.jpg", "coffee.png", "chelsea.webp"], strict=True):
        put(stack, key, read(name))
    assert ingest(sqs_s3_event(stack.bucket, keys), LambdaContext()) == {"batchItemFailures": []}
    assert events.index(("read", "images/2.png")) < events.index(("indexed", "images/1.jpg"))
    assert [k for what, k in events if what == "indexed"] == keys  # the index stage keeps the batch's order
    assert sorted(k for e in entries(stack).values() for k in e.keys) == sorted(keys)


def test_a_failing_read_fails_its_record_only(stack: Any, ingest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pictrace.storage import Store as RealStore

    get = RealStore.get

    def flaky(self: RealStore, key: str, max_bytes: int | None = None) -> Any:
        if key == "images/flaky.jpg":
            raise ConnectionError("S3 is down for this key")
        return get(self, key, max_bytes)

    monkeypatch.setattr(RealStore, "get", flaky)
    for key, name in [
        ("images/a.jpg", "astronaut.jpg"),
        ("images/flaky.jpg", "rocket.bmp"),
        ("images/c.png", "coffee.png"),
    ]:
        put(stack, key, read(name))
    event = sqs_s3_event(stack.bucket, ["images/a.jpg", "images/flaky.jpg", "images/c.png"])
    result = ingest(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}  # retried by SQS
    assert sorted(k for e in entries(stack).values() for k in e.keys) == ["images/a.jpg", "images/c.png"]


def test_a_batchs_order_does_not_change_the_index(stack: Any, ingest: Any) -> None:
    s3 = stack.client("s3")
    objects = {
        "images/a.jpg": read("astronaut.jpg"),
        "images/same-as-a.jpg": read("astronaut.jpg"),
        "images/c.png": read("coffee.png"),
        "images/bad.jpg": read("truncated.jpg"),
    }
    for key, body in objects.items():
        put(stack, key, body)
    keys = [*objects, "images/never-written.jpg"]

    def index_after(order: list[str]) -> dict[str, Any]:
        for key in index_objects(stack):
            s3.delete_object(Bucket=stack.bucket, Key=key)
        assert ingest(sqs_s3_event(stack.bucket, order), LambdaContext()) == {"batchItemFailures": []}
        store = IndexStore(Store(stack.bucket, s3), "index/")
        return {
            "entries": {
                i: (e.keys, e.embedding, {k: v for k, v in e.meta.items() if k != "created"})
                for i, e in entries(stack).items()
            },
            "failure": (store.failure("images/bad.jpg") or {}).get("reason"),
        }

    forward, backward = index_after(keys), index_after(keys[::-1])
    assert forward["failure"] == backward["failure"] and "truncated" in forward["failure"]
    assert forward["entries"].keys() == backward["entries"].keys() and len(forward["entries"]) == 2
    for entry_id, (keys_f, embedding_f, meta_f) in forward["entries"].items():
        keys_b, embedding_b, meta_b = backward["entries"][entry_id]
        assert keys_f == keys_b and meta_f == meta_b and np.allclose(embedding_f, embedding_b, atol=1e-5)


def test_an_entry_gone_between_read_and_index_is_made_again(stack: Any) -> None:
    from pictrace.headers import read_dimensions
    from pictrace.ingest import Ingestor
    from pictrace.settings import get_settings

    put(stack, "images/a.jpg", read("astronaut.jpg"))
    put(stack, "images/b.jpg", read("astronaut.jpg"))
    ingestor = Ingestor(get_settings())
    first = ingestor.sync_key("images/a.jpg")
    assert first.action == "created" and {"read", "decode", "features", "embed", "index"} <= first.ms.keys()
    early = ingestor.decode(ingestor.read("images/b.jpg"))  # read ahead while the entry exists: nothing decoded
    assert early.decoded is None and early.embedding is None
    stack.client("s3").delete_object(Bucket=stack.bucket, Key="images/a.jpg")
    assert ingestor.sync_key("images/a.jpg").action == "deleted"  # the entry goes with its last key
    late = ingestor.commit(early)
    assert late.action == "created" and late.id == first.id and "embed" in late.ms
    (entry,) = entries(stack).values()
    width, height = read_dimensions(read("astronaut.jpg"), "jpeg")
    assert entry.keys == ("images/b.jpg",) and (entry.meta["width"], entry.meta["height"]) == (width, height)
    assert len(entry.features.descriptors) > 0
