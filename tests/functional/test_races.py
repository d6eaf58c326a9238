"""Lost races, made to happen: a writer reads an object (and its ETag), then — before its conditional write — another
writer commits a change to the same object. Each test fails if the guard it is named after is removed:
    the manifest write in Compactor._attempt           (if_match=etag)
    IndexStore.add_key's entry rewrite                  (if_match=etag)
    IndexStore._remove_key_from_entry's rewrite/delete  (if_match=etag)
and the `consistent` check itself must catch a pointer whose entry does not hold its key.

No model is loaded: entries are made from small synthetic vectors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pictrace.index.compaction import Compactor
from pictrace.index.segments import SegmentStore
from pictrace.index.store import IndexStore
from pictrace.storage import Store, StoredObject

from tests.functional.helpers import consistent
from tests.functional.test_segments import add_images, entry, segmented, truth, unit


@pytest.fixture
def model_dir() -> str:
    """Nothing here embeds an image: the stack needs no model artifact."""
    from tests.conftest import MODEL_DIR

    return str(MODEL_DIR)


class Interleaved(Store):
    """A Store that, the first time it reads `key`, lets `interloper` commit its change before handing back what it
    read: the caller then writes from a stale read. Conditional writes that found the object changed are listed."""

    def __init__(self, bucket: str, key: str, interloper: Callable[[], object]) -> None:
        super().__init__(bucket)
        self.key = key
        self.interloper: Callable[[], object] | None = interloper
        self.lost: list[str] = []

    def get(self, key: str) -> StoredObject:
        obj = super().get(key)
        if key == self.key and self.interloper is not None:
            interloper, self.interloper = self.interloper, None
            interloper()
        return obj

    def put(self, key: str, body: bytes, **kwargs: Any) -> bool:
        written = super().put(key, body, **kwargs)
        if not written:
            self.lost.append(key)
        return written

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        deleted = super().delete(key, if_match=if_match)
        if not deleted and if_match is not None:
            self.lost.append(key)
        return deleted


def test_a_compactor_that_read_a_stale_manifest_loses_the_race_and_starts_again(stack: Any) -> None:
    """A reads the markers and manifest M1; B folds the same markers and one more into M2 and removes them all;
    A's manifest write must fail (else M1 + A's segment replaces M2 and B's extra change is gone for good)."""
    plain = IndexStore(Store(stack.bucket), "index/")
    vs = unit(np.random.default_rng(21), 20)
    add_images(plain, vs, range(10))
    Compactor(SegmentStore(plain)).compact()  # M1
    add_images(plain, vs, range(10, 14))  # the changes A will read

    def interloper() -> None:
        add_images(plain, vs, [14])
        assert Compactor(SegmentStore(plain)).compact().folded == 5  # M2, markers 10..14 removed

    racing = Interleaved(stack.bucket, plain.layout.manifest_key, interloper)
    result = Compactor(SegmentStore(IndexStore(racing, "index/"))).compact()
    assert racing.lost == ["index/manifest.json"] and result.attempts == 2  # the race happened, and A lost it
    expected = truth(plain)
    assert len(expected) == 15 and segmented(plain).keys == expected


def test_add_key_from_a_stale_read_loses_the_race_and_keeps_the_other_writers_key(stack: Any) -> None:
    plain = IndexStore(Store(stack.bucket), "index/")
    e = entry(0, unit(np.random.default_rng(22), 1)[0], ("images/a.jpg",))
    plain.create_or_add_key(e, "images/a.jpg")
    racing = Interleaved(stack.bucket, plain.layout.entry_key(e.id), lambda: plain.add_key(e.id, "images/b.jpg"))
    assert IndexStore(racing, "index/").add_key(e.id, "images/c.jpg") == "added"
    assert racing.lost == [plain.layout.entry_key(e.id)]
    assert consistent(stack) == {e.id: ("images/a.jpg", "images/b.jpg", "images/c.jpg")}


def test_a_new_entry_made_by_another_writer_first_gets_the_key_added(stack: Any) -> None:
    # both found the entry absent when they read their bytes; the other writer stored it first
    index = IndexStore(Store(stack.bucket), "index/")
    e = entry(0, unit(np.random.default_rng(23), 1)[0], ("images/a.jpg",))
    assert index.point_to_new(e, "images/a.jpg") == "created"
    assert index.point_to_new(replace(e, keys=("images/b.jpg",)), "images/b.jpg") == "added"
    assert consistent(stack) == {e.id: ("images/a.jpg", "images/b.jpg")}


def test_removing_a_key_from_a_stale_read_keeps_the_key_another_writer_added(stack: Any) -> None:
    plain = IndexStore(Store(stack.bucket), "index/")
    e = entry(1, unit(np.random.default_rng(23), 1)[0], ("images/a.jpg",))
    plain.create_or_add_key(e, "images/a.jpg")
    plain.add_key(e.id, "images/b.jpg")
    racing = Interleaved(stack.bucket, plain.layout.entry_key(e.id), lambda: plain.add_key(e.id, "images/c.jpg"))
    assert IndexStore(racing, "index/").remove_key("images/a.jpg") == "removed"
    assert racing.lost == [plain.layout.entry_key(e.id)]
    assert consistent(stack) == {e.id: ("images/b.jpg", "images/c.jpg")}


def test_removing_the_last_key_from_a_stale_read_does_not_delete_an_entry_that_gained_one(stack: Any) -> None:
    plain = IndexStore(Store(stack.bucket), "index/")
    e = entry(2, unit(np.random.default_rng(24), 1)[0], ("images/a.jpg",))
    plain.create_or_add_key(e, "images/a.jpg")
    racing = Interleaved(stack.bucket, plain.layout.entry_key(e.id), lambda: plain.add_key(e.id, "images/b.jpg"))
    assert IndexStore(racing, "index/").remove_key("images/a.jpg") == "removed"
    assert racing.lost == [plain.layout.entry_key(e.id)]
    assert consistent(stack) == {e.id: ("images/b.jpg",)}


def test_consistent_catches_a_pointer_whose_entry_does_not_hold_its_key(stack: Any) -> None:
    """The entry exists, but does not hold the key its pointer claims (what a lost rewrite leaves behind)."""
    plain = IndexStore(Store(stack.bucket), "index/")
    e = entry(3, unit(np.random.default_rng(25), 1)[0], ("images/a.jpg",))
    plain.create_or_add_key(e, "images/a.jpg")
    assert consistent(stack) == {e.id: ("images/a.jpg",)}
    body = json.dumps({"key": "images/b.jpg", "id": e.id}).encode()
    plain.store.put(plain.layout.pointer_key("images/b.jpg"), body, content_type="application/json")
    with pytest.raises(AssertionError, match="does not hold it"):
        consistent(stack)
