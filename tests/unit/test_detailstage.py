"""The details stage (pictrace.detailstage): an indexed image's details made after ingest, written beside its entry,
once; none for a model without a detail rule, with regions off, or for bytes that cannot be decoded this large; an
entry deleted while its details were written leaves none behind, and an entry's deletion takes its details."""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest
from pictrace import details
from pictrace.detailstage import DetailsQueue, DetailStage, requested_id
from pictrace.errors import DecodeTooCostly
from pictrace.index.layout import Entry, content_id, details_from_bytes
from pictrace.index.store import IndexStore
from pictrace.rerank import compute_features
from pictrace.settings import Settings

from tests.conftest import read
from tests.memstore import MemoryStore

KEY = "images/astronaut.png"


class _Model:
    """The default model's name and preprocessing (its calibration's region rule judges details); 4-d unit rows."""

    weights, preprocess, dim = "sscd", "sscd-short256", 4

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        return np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (len(images), 1))


def _indexed(weights: str = "sscd", store: MemoryStore | None = None) -> tuple[MemoryStore, IndexStore, str]:
    """A bucket holding the astronaut as a PNG under KEY, indexed (its entry and pointer) as the model's."""
    store, png = (
        store or MemoryStore(),
        cv2.imencode(".png", cv2.imdecode(np.frombuffer(read("astronaut.jpg"), np.uint8), 1))[1],
    )
    data = png.tobytes()
    store.put(KEY, data)
    index = IndexStore(store, "index/")
    features = compute_features(np.zeros((32, 32, 3), np.uint8))
    meta = {"weights": weights, "preprocess": "sscd-short256"}
    entry = Entry(content_id(data), (KEY,), np.array([1.0, 0, 0, 0], np.float32), features, meta)
    assert index.create_or_add_key(entry, KEY) == "created"
    return store, index, entry.id


def _stage(store: MemoryStore, index: IndexStore, **settings: Any) -> DetailStage:
    return DetailStage(Settings(bucket="bucket", **settings), store, index, _Model())  # type: ignore[arg-type]


def test_the_details_are_written_beside_the_entry_once() -> None:
    store, index, entry_id = _indexed()
    stage = _stage(store, index)
    assert stage.detail(entry_id).action == "detailed"
    written = details_from_bytes(store.get(index.layout.details_key(entry_id)).body)
    assert written.shape == (details.DETAILS, 4) and written.dtype == np.float16
    gets = store.gets
    assert stage.detail(entry_id).action == "present" and store.gets == gets  # a redelivery reads nothing


def test_the_entry_is_marked_changed_after_its_details_so_the_index_rows_take_them() -> None:
    """A marker after the write (pictrace.index.rows.read_row then reads the details with the entry); a redelivery
    whose marker was folded away by a compaction writes one again only if none is there (an index whose details
    predate the marker gets them into its segments through `details-backfill`), never telling the vector mirror."""
    store, index, entry_id = _indexed()
    observed: list[list[str]] = []
    index.on_change = observed.append
    index.drop_changes(index.changes())  # ingest's own marker, folded by a compaction
    assert _stage(store, index).detail(entry_id).action == "detailed"
    first = index.changes()
    assert list(first) == [entry_id]
    assert _stage(store, index).detail(entry_id).action == "present" and index.changes() == first  # kept as it is
    index.drop_changes(first)
    assert _stage(store, index).detail(entry_id).action == "present" and list(index.changes()) == [entry_id]
    assert observed == []


def test_no_details_for_a_model_without_a_detail_rule_or_with_regions_off() -> None:
    store, index, entry_id = _indexed(weights="random:0")
    assert _stage(store, index).detail(entry_id).action == "skipped"
    store, index, entry_id = _indexed()
    assert _stage(store, index, regions=False).detail(entry_id).action == "skipped"  # the opt-out
    assert store.size(index.layout.details_key(entry_id)) is None


def test_bytes_that_cannot_be_decoded_this_large_or_keys_holding_other_bytes_get_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, index, entry_id = _indexed()

    def too_costly(*args: Any, **kwargs: Any) -> None:
        raise DecodeTooCostly("decoding took more than its budget")

    monkeypatch.setattr(details, "decode_image", too_costly)
    assert _stage(store, index).detail(entry_id).action == "none"
    monkeypatch.undo()
    store.put(KEY, read("rocket.bmp"))  # the key holds other bytes now (their own ingest is on its way)
    assert _stage(store, index).detail(entry_id).action == "none"
    assert store.size(index.layout.details_key(entry_id)) is None


def test_an_entry_gone_before_or_while_its_details_are_written_has_none() -> None:
    store, index, entry_id = _indexed()
    assert index.remove_key(KEY) == "deleted"
    assert _stage(store, index).detail(entry_id).action == "gone"

    class DeletedMeanwhile(MemoryStore):
        def put(self, key: str, body: bytes, **kwargs: Any) -> bool:
            if key.endswith(".npy"):  # the entry's deletion lands before the details' write
                index.remove_key(KEY)
            return super().put(key, body, **kwargs)

    store, index, entry_id = _indexed(store=DeletedMeanwhile())
    assert _stage(store, index).detail(entry_id).action == "gone"
    assert store.size(index.layout.details_key(entry_id)) is None  # deleted again, after the write


def test_an_entry_leaving_the_index_takes_its_details() -> None:
    store, index, entry_id = _indexed()
    _stage(store, index).detail(entry_id)
    assert store.size(index.layout.details_key(entry_id)) is not None
    assert index.remove_key(KEY) == "deleted"
    assert store.size(index.layout.details_key(entry_id)) is None


class _Sent:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, bodies: list[str]) -> int:
        self.bodies += bodies
        return len(bodies)


def test_ingest_queues_new_and_redelivered_entries_and_the_stage_reads_what_it_queued() -> None:
    sent = _Sent()
    queue = DetailsQueue(sent)  # type: ignore[arg-type]
    entry_id = content_id(b"x")
    for action in ("created", "unchanged", "added", "removed", "failed"):
        queue.indexed(action, entry_id)
    queue.indexed("created", None)
    assert [requested_id(b) for b in sent.bodies] == [entry_id, entry_id]
    DetailsQueue(None).indexed("created", entry_id)  # no queue configured: nothing sent, no error
    assert DetailsQueue(None).enqueue([entry_id]) == 0


@pytest.mark.parametrize("body", ["", "[]", "{}", '{"id": "../x"}', json.dumps({"id": 3}), "not json"])
def test_a_message_that_names_no_image_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="not a details-queue message"):
        requested_id(body)


def test_an_image_too_small_for_details_gets_an_empty_set_once_and_matches_no_query() -> None:
    from pictrace.regions import Regions

    store, index, _ = _indexed()
    small = cv2.imencode(".png", np.full((details.DETAIL_MIN_SIDE - 1,) * 2 + (3,), 90, np.uint8))[1].tobytes()
    store.put("images/small.png", small)
    features = compute_features(np.zeros((32, 32, 3), np.uint8))
    meta = {"weights": "sscd", "preprocess": "sscd-short256"}
    entry = Entry(content_id(small), ("images/small.png",), np.array([1.0, 0, 0, 0], np.float32), features, meta)
    index.create_or_add_key(entry, "images/small.png")
    stage = _stage(store, index)
    assert stage.detail(entry.id).action == "none"
    written = details_from_bytes(store.get(index.layout.details_key(entry.id)).body)
    assert written.shape == (0, 4)  # written: searches find it, and cache it, instead of asking S3 every time
    assert stage.detail(entry.id).action == "present"
    query = np.array([1.0, 0, 0, 0], np.float32)
    assert Regions(query, [], [], np.zeros((0, 4)), np.zeros((0, 4))).detail(written, None) == 0.0
