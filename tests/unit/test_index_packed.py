"""The in-memory index's packed bookkeeping (pictrace.index.packed) and the EmbeddingIndex built on it: ids, keys
and versions without a Python object per row, refreshed by what changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from pictrace.index.layout import Layout
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.packed import KeyTable, Listing, RowIds, live_rows
from pictrace.index.rows import Block, Loaded, Row
from pictrace.index.segments import MANIFEST_VERSION, Segment, SegmentedView, SegmentStore, manifest_entry
from pictrace.index.store import IndexStore
from pictrace.storage import Store


def sha(i: object) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


# --- RowIds ----------------------------------------------------------------------------------------------------------


def test_hex_ids_are_packed_as_digests_and_round_trip() -> None:
    ids = [sha(i) for i in range(50)] + ["ab" * 31 + "00", "00" * 32]  # digests ending (or made) of zero bytes
    packed = RowIds.of(ids)
    assert packed.hexed and packed.packed.dtype == np.dtype("S32")
    assert list(packed) == ids and packed == ids and [packed[i] for i in range(len(ids))] == ids
    assert packed[-1] == ids[-1] and packed[2:4] == ids[2:4]
    assert packed.find([ids[7], "nope", ids[-2], sha("x")]).tolist() == [7, -1, len(ids) - 2, -1]
    assert ids[3] in packed and "A" * 64 not in packed


def test_other_ids_are_kept_as_utf8_and_found() -> None:
    ids = ["z", "a", "é/ü", sha(1), "ABCDEF" + "0" * 58]  # not all lowercase hex: every id as its UTF-8 bytes
    packed = RowIds.of(ids)
    assert not packed.hexed and list(packed) == ids
    assert packed.find(["a", "é/ü", "y", sha(1)]).tolist() == [1, 2, -1, 3]


def test_hex_ids_find_other_ids_as_absent_and_concat_mixes_kinds() -> None:
    hexed = RowIds.of([sha(1), sha(2)])
    assert hexed.find(["short", sha(2), "G" * 64, " " + sha(2)[1:]]).tolist() == [-1, 1, -1, -1]
    both = RowIds.concat([hexed, RowIds.of(["plain"])])
    assert list(both) == [sha(1), sha(2), "plain"] and both.find(["plain", sha(1)]).tolist() == [2, 0]
    assert list(RowIds.concat([hexed.take(np.array([1])), RowIds.of([])])) == [sha(2)]
    assert len(RowIds.of([])) == 0 and RowIds.of([]).find(["a"]).tolist() == [-1]


def test_live_rows_fold_overrides_and_tombstones_in_segment_order() -> None:
    first = RowIds.of([sha(n) for n in range(4)])
    second = RowIds.of([sha(1), sha(7)])
    third = RowIds.of([sha(7)])
    masks = live_rows([(first, []), (second, [sha(2)]), (third, [sha(7), sha(0)])])  # third deletes 7, re-adds it
    assert [m.tolist() for m in masks] == [[False, False, False, True], [True, False], [True]]
    assert live_rows([]) == [] and [m.tolist() for m in live_rows([(RowIds.of([]), [sha(1)])])] == [[]]


# --- KeyTable --------------------------------------------------------------------------------------------------------

ROWS: list[tuple[str, ...]] = [("images/a.jpg",), (), ("b/x.jpg", "images/c.jpg"), ("ü/ß.jpg",), ("images",)]


def test_key_table_round_trips_rows_with_any_number_of_keys() -> None:
    table = KeyTable.of(ROWS)
    assert list(table) == ROWS and len(table) == 5 and table[-1] == ("images",)
    assert table.take(np.array([3, 0, 2])) == [ROWS[3], ROWS[0], ROWS[2]]
    assert table.take(np.array([1, 2, 3])) == ROWS[1:4]
    assert table.take(np.array([], np.intp)) == []
    assert KeyTable.concat([table.take(np.array([4])), KeyTable.of([]), table.take(np.array([0, 1]))]) == [
        ROWS[4],
        ROWS[0],
        ROWS[1],
    ]
    with pytest.raises(IndexError):
        table[5]


@pytest.mark.parametrize("prefix", ["images/", "images", "", "ü/", "b/x.jpg", "b/x.jpgg", "zzz"])
def test_key_table_prefix_masks_match_str_startswith(prefix: str) -> None:
    expected = [any(k.startswith(prefix) for k in keys) for keys in ROWS]
    assert KeyTable.of(ROWS).under(prefix).tolist() == expected


def test_listing_is_a_mapping_of_ids_to_tokens() -> None:
    versions = {sha(1): "s:a", sha(2): "s:a", sha(3): '"etag"'}
    listing = Listing.of(versions)
    assert dict(listing) == versions and len(listing.tokens) == 2
    assert listing.digests()[0] == listing.digests()[1] != listing.digests()[2]
    with pytest.raises(KeyError):
        listing[sha(4)]


# --- EmbeddingIndex over packed bookkeeping --------------------------------------------------------------------------


class Source:
    """A RowSource held in memory: id -> (version, keys, value); every vector of a row is filled with its value."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, tuple[str, ...], float]] = {}
        self.loads: list[list[str]] = []

    def refresh(self) -> tuple[dict[str, str], Callable[[list[str]], Loaded]]:
        def load(ids: list[str]) -> Loaded:
            self.loads.append(sorted(ids))
            return Loaded({i: self.row(i) for i in ids})

        return {i: v for i, (v, _, _) in self.rows.items()}, load

    def row(self, i: str) -> Row | None:
        if i not in self.rows:
            return None
        _, keys, value = self.rows[i]
        return Row(keys, {"embedding": np.full(4, value, np.float32), "gist": np.full(2, -value, np.float32)})


def held(index: EmbeddingIndex) -> dict[str, tuple[tuple[str, ...], float]]:
    """id -> (keys, embedding value) as the index holds them."""
    return {i: (index.keys[i], float(index.matrix[r][0])) for r, i in enumerate(index.ids)}


def test_refresh_adds_changes_and_deletes_rows_by_version() -> None:
    source = Source()
    for n in range(6):
        source.rows[sha(n)] = ("v1", (f"images/{n}.jpg",), float(n))
    index = EmbeddingIndex(source, refresh_seconds=0)
    assert index.refresh(force=True) == 6
    assert held(index) == {sha(n): ((f"images/{n}.jpg",), float(n)) for n in range(6)}
    assert index.refresh(force=True) == 0 and source.loads[-1] == []  # same versions: nothing read

    source.rows[sha(2)] = ("v2", ("images/2.jpg", "other/2.jpg"), 20.0)  # changed
    del source.rows[sha(4)]  # deleted
    source.rows[sha(9)] = ("v1", ("images/9.jpg",), 9.0)  # added
    assert index.refresh(force=True) == 3
    assert source.loads[-1] == sorted([sha(2), sha(9)])
    expected = {sha(n): ((f"images/{n}.jpg",), float(n)) for n in (0, 1, 3, 5, 9)}
    expected[sha(2)] = (("images/2.jpg", "other/2.jpg"), 20.0)
    assert held(index) == expected and len(index) == 6
    assert dict(index.keys) == {i: keys for i, (keys, _) in expected.items()} and index.keys == dict(index.keys)
    assert sha(4) not in index.keys and index.keys.get(sha(4)) is None
    np.testing.assert_array_equal(index.matrices["gist"][:, 0], -index.matrix[:, 0])
    assert set(index.versions) == set(expected)


def test_rows_gone_between_listing_and_read_are_dropped() -> None:
    source = Source()
    source.rows[sha(1)] = ("v1", ("a.jpg",), 1.0)
    index = EmbeddingIndex(source, refresh_seconds=0)
    index.refresh(force=True)
    listed = {sha(1): "v2", sha(2): "v1"}  # both listed, then both gone before the read
    source.refresh = lambda: (listed, lambda ids: Loaded(dict.fromkeys(ids)))  # type: ignore[method-assign]
    assert index.refresh(force=True) == 2
    assert len(index) == 0 and list(index.ids) == [] and index.shortlist(np.ones(4, np.float32), 3) == []


def test_prefix_filters_and_candidates_carry_keys_of_the_current_snapshot() -> None:
    source = Source()
    for n in range(8):
        source.rows[sha(n)] = ("v1", (f"{'cats' if n % 2 else 'dogs'}/{n}.jpg",), float(n + 1))
    index = EmbeddingIndex(source, refresh_seconds=0)
    index.refresh(force=True)
    query = np.ones(4, np.float32) / 2
    cats = index.shortlist(query, 10, key_prefix="cats/")
    assert sorted(i for i, _ in cats) == sorted(sha(n) for n in range(1, 8, 2))
    found = index.candidates(query, np.ones((8, 2), np.float32), 3, key_prefix="dogs/")
    number = {sha(n): n for n in range(8)}
    assert found and all(c.keys == (f"dogs/{number[c.id]}.jpg",) for c in found)
    source.rows[sha(0)] = ("v2", ("cats/0.jpg",), 1.0)  # moved: the next snapshot's mask follows
    index.refresh(force=True)
    assert sha(0) in {i for i, _ in index.shortlist(query, 10, key_prefix="cats/")}
    assert index.shortlist(query, 10, key_prefix="birds/") == []


def test_blocks_are_copied_from_their_matrices_with_packed_ids_and_keys() -> None:
    ids = [sha(n) for n in range(4)]
    matrices = {"embedding": np.arange(16, dtype=np.float32).reshape(4, 4), "gist": np.ones((4, 2), np.float32)}
    block = Block(
        "seg",
        RowIds.of([ids[1], ids[3]]),
        KeyTable.of([("k/1",), ("k/3",)]),
        np.array([1, 3]),
        {"embedding": 4, "gist": 2},
    )

    class Blocks:
        def refresh(self) -> tuple[dict[str, str], Callable[[list[str]], Loaded]]:
            return {ids[1]: "s:seg", ids[3]: "s:seg"}, lambda asked: Loaded({}, [block], lambda bs: iter([matrices]))

    index = EmbeddingIndex(Blocks(), refresh_seconds=0)
    assert index.refresh(force=True) == 2
    assert list(index.ids) == [ids[1], ids[3]] and index.keys == {ids[1]: ("k/1",), ids[3]: ("k/3",)}
    np.testing.assert_array_equal(index.matrix, matrices["embedding"][[1, 3]])
    parts = index.footprint()
    assert set(parts) == {"matrix:embedding", "matrix:gist", "ids", "keys", "versions"}
    assert parts["matrix:embedding"] == index.matrix.nbytes and parts["ids"] >= 2 * 32


# --- SegmentedView: folding packed segments --------------------------------------------------------------------------


class DirStore:
    """The Store operations the segmented index reads, over a dict (ETag: a digest of the body)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []  # ("get" | "list", key or prefix), in order

    def put(self, key: str, body: bytes, **_: object) -> bool:
        self.objects[key] = body
        return True

    def get(self, key: str) -> object:
        from pictrace.errors import NotFound
        from pictrace.storage import StoredObject

        self.calls.append(("get", key))
        if key not in self.objects:
            raise NotFound(key)
        return StoredObject(self.objects[key], hashlib.md5(self.objects[key]).hexdigest())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self.objects[key][start:end]

    def list(self, prefix: str) -> list[tuple[str, str, int]]:
        self.calls.append(("list", prefix))
        return [(k, "e", len(b)) for k, b in sorted(self.objects.items()) if k.startswith(prefix)]


def test_segmented_view_folds_overrides_and_tombstones(tmp_path: Path) -> None:
    store = DirStore()
    layout = Layout("index/")
    v = {n: np.full(4, float(n), np.float32) for n in range(6)}

    def row(n: int, key: str) -> Row:
        return Row((key,), {"embedding": v[n], "gist": np.zeros(2, np.float32)})

    first = Segment.from_rows({sha(n): row(n, f"old/{n}.jpg") for n in range(5)})
    second = Segment.from_rows({sha(1): row(5, "new/1.jpg")}, deleted=[sha(2), sha(9)])  # override 1, delete 2
    listed = []
    for seg in (first, second):
        key, body = layout.new_segment_key(), seg.to_bytes()
        store.put(key, body)
        listed.append(manifest_entry(key, seg, body))
    manifest = {"version": MANIFEST_VERSION, "generation": 1, "segments": listed, "retired": []}
    store.put(layout.manifest_key, json.dumps(manifest).encode())
    view = SegmentedView(SegmentStore(IndexStore(cast(Store, store), "index/")))
    index = EmbeddingIndex(view, refresh_seconds=0)
    assert index.refresh(force=True) == 4
    expected = {sha(0): (("old/0.jpg",), 0.0), sha(1): (("new/1.jpg",), 5.0)}
    expected |= {sha(n): ((f"old/{n}.jpg",), float(n)) for n in (3, 4)}
    assert held(index) == expected
    assert index.refresh(force=True) == 0
    parts = view.footprint()
    assert parts["view: matrices"] == 0 and parts["view: segment ids"] == 6 * 32


def test_a_view_lists_change_markers_again_only_once_compacted_and_then_before_the_manifest() -> None:
    store = DirStore()
    layout = Layout("index/")
    view = SegmentedView(SegmentStore(IndexStore(cast(Store, store), "index/")))
    for _ in range(3):
        view.refresh()
    cold = [("list", layout.changes_prefix), ("get", layout.manifest_key), ("list", layout.entries_prefix)]
    still = [("get", layout.manifest_key), ("list", layout.entries_prefix)]
    assert store.calls == cold + still * 2  # the entries are the rows: a listing of the markers would go unused
    seg = Segment.from_rows({sha(0): Row(("a.jpg",), {"embedding": np.ones(4, np.float32)})})
    key, body = layout.new_segment_key(), seg.to_bytes()
    store.put(key, body)
    manifest = {"version": MANIFEST_VERSION, "generation": 1, "segments": [manifest_entry(key, seg, body)]}
    store.put(layout.manifest_key, json.dumps(manifest | {"retired": []}).encode())
    for _ in range(2):
        store.calls.clear()
        versions, _load = view.refresh()
        assert list(versions) == [sha(0)]
        reads = [c for c in store.calls if c[0] == "list" or c[1] == layout.manifest_key]
        assert reads[-2:] == [("list", layout.changes_prefix), ("get", layout.manifest_key)]  # compaction's order
