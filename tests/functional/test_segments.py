"""The segmented index (pictrace.segments) against the local S3 server: format, compaction, its races, and what a
cold search reads."""

from __future__ import annotations

import collections
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterable
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from pictrace.index.compaction import Compactor
from pictrace.index.layout import Entry
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.rows import EntryRows
from pictrace.index.segments import Segment, SegmentedView, SegmentStore, header_range
from pictrace.index.store import IndexStore
from pictrace.rerank import Features
from pictrace.storage import Store

DIM = 16  # the index does not care about the width: small vectors keep large-N tests light


def counting_store(stack: Any) -> tuple[Store, collections.Counter[str]]:
    """A Store on the stack's bucket whose client counts the S3 requests it sends, by operation."""
    client = boto3.client(
        "s3", endpoint_url=stack.endpoint, region_name="us-east-1", config=Config(max_pool_connections=32)
    )
    counts: collections.Counter[str] = collections.Counter()
    client.meta.events.register("before-call.s3.*", lambda model, **_: counts.update([model.name]))
    return Store(stack.bucket, client), counts


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def entry(i: int, vector: np.ndarray, keys: tuple[str, ...]) -> Entry:
    features = Features(np.zeros((8, 8), np.uint8), np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return Entry(hashlib.sha256(str(i).encode()).hexdigest(), keys, vector, features)


def add_images(index_store: IndexStore, vectors: np.ndarray, numbers: Iterable[int]) -> None:
    """Index entry n (vector n) under images/<n>.jpg for each number."""
    for n in numbers:
        index_store.create_or_add_key(entry(n, vectors[n], (f"images/{n}.jpg",)), f"images/{n}.jpg")


def truth(index_store: IndexStore) -> dict[str, tuple[str, ...]]:
    """Every entry and its keys, read one by one (the unsegmented way)."""
    legacy = EmbeddingIndex(EntryRows(index_store), refresh_seconds=0)
    legacy.refresh(force=True)
    return dict(legacy.keys)


def segmented(index_store: IndexStore) -> EmbeddingIndex:
    index = EmbeddingIndex(SegmentedView(SegmentStore(index_store)), refresh_seconds=0)
    index.refresh(force=True)
    return index


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_segment_round_trip(dtype: str) -> None:
    rng = np.random.default_rng(0)
    matrices = {"embedding": unit(rng, 3), "gist": rng.random((3, 5)).astype(np.float32)}
    seg = Segment(["a", "b", "c"], [("k1",), ("k2", "k3"), ()], matrices, deleted=["z"])
    body = seg.to_bytes(dtype)
    back = Segment.from_bytes(body)
    assert back.ids == seg.ids and back.keys == seg.keys and back.deleted == ["z"]
    start, end = header_range(body)  # what a reader fetches first, with one ranged GET
    head = Segment.from_header(body[start:end])
    assert (head.ids, head.keys, head.deleted) == (seg.ids, seg.keys, ["z"]) and head.released
    assert head.dims == {"embedding": DIM, "gist": 5} and head.matrices == {}
    for name, m in matrices.items():
        assert back.matrices[name].dtype == np.dtype(dtype)  # the index converts as it copies
        np.testing.assert_allclose(back.matrices[name], m, atol=1e-3 if dtype == "float16" else 0)


def test_compaction_folds_creations_key_changes_and_deletions(stack: Any) -> None:
    store, _ = counting_store(stack)
    index_store = IndexStore(store, "index/")
    rng = np.random.default_rng(1)
    vectors = unit(rng, 30)
    add_images(index_store, vectors, range(30))
    compactor = Compactor(SegmentStore(index_store), max_segments=2)
    first = compactor.compact()
    assert first.folded == 30 and first.segments == 1 and not list(store.list("index/changes/"))
    view = segmented(index_store)
    assert view.keys == truth(index_store) and len(view) == 30
    # changes after the manifest: seen by readers at once, folded by the next compactions (with a merge)
    for i in range(5):
        index_store.remove_key(f"images/{i}.jpg")  # entry deleted with its last key
    for i in range(5, 10):
        index_store.add_key(entry(i, vectors[i], ()).id, f"images/copy-{i}.jpg")
    index_store.create_or_add_key(entry(99, vectors[0], ("images/new.jpg",)), "images/new.jpg")
    expected = truth(index_store)
    assert len(expected) == 26
    assert segmented(index_store).keys == expected
    second = compactor.compact()
    assert second.folded == 11 and second.deleted == 5 and second.segments == 2
    assert segmented(index_store).keys == expected
    index_store.remove_key("images/10.jpg")
    third = compactor.compact()
    assert third.merged == 2 and third.segments == 1  # 2 + 1 > max_segments: merged into one
    expected = truth(index_store)
    view = segmented(index_store)
    assert view.keys == expected and len(view) == 25
    rows = {i: r for r, i in enumerate(view.ids)}
    for i in range(11, 30):
        np.testing.assert_array_equal(view.matrix[rows[entry(i, vectors[i], ()).id]], vectors[i])
    assert compactor.compact().folded == 0  # nothing to do


def test_a_warm_reader_follows_compactions_without_rereading_segments(stack: Any) -> None:
    store, counts = counting_store(stack)
    index_store = IndexStore(store, "index/")
    rng = np.random.default_rng(2)
    for i in range(10):
        index_store.create_or_add_key(entry(i, unit(rng, 1)[0], (f"images/{i}.jpg",)), f"images/{i}.jpg")
    compactor = Compactor(SegmentStore(index_store))
    compactor.compact()
    reader = segmented(index_store)
    index_store.create_or_add_key(entry(10, unit(rng, 1)[0], ("images/10.jpg",)), "images/10.jpg")
    compactor.compact()
    counts.clear()
    reader.refresh(force=True)
    # one LIST of changes, the manifest, the new segment's header then its matrices: no old segment, no entry
    assert counts == {"ListObjectsV2": 1, "GetObject": 3}
    assert reader.keys == truth(index_store)


def test_cold_search_at_100k_images_reads_o_segments_objects(stack: Any) -> None:
    """N = 100,000 packed into 5 segments plus 3 newer entries: a cold reader sends 1 LIST and 1 + 5 + 2 x 3 GETs
    (each newer entry, and its details: pictrace.index.rows.read_row)."""
    store, counts = counting_store(stack)
    index_store = IndexStore(store, "index/")
    rng = np.random.default_rng(3)
    n, per = 100_000, 20_000
    listed = []
    for s in range(n // per):
        ids = [hashlib.sha256(f"seg{s}-{r}".encode()).hexdigest() for r in range(per)]
        keys = [(f"images/{s}/{r}.jpg",) for r in range(per)]
        seg = Segment(ids, keys, {"embedding": unit(rng, per)})
        key = index_store.layout.new_segment_key()
        store.put(key, seg.to_bytes("float16"), if_none_match=True)
        listed.append({"key": key, "count": per})
    store.put(
        index_store.layout.manifest_key, json.dumps({"version": 1, "segments": listed}).encode(), if_none_match=True
    )
    planted = unit(rng, 3)
    for i in range(3):
        index_store.create_or_add_key(entry(i, planted[i], (f"images/new/{i}.jpg",)), f"images/new/{i}.jpg")
    counts.clear()
    started = time.perf_counter()
    cold = segmented(index_store)
    elapsed = time.perf_counter() - started
    assert len(cold) == n + 3
    assert all(m.dtype == np.float32 for m in cold.matrices.values())  # float16 segments, converted
    assert counts == {"ListObjectsV2": 1, "GetObject": 1 + n // per + 2 * 3}, f"{dict(counts)} in {elapsed:.1f} s"
    gists = np.zeros((8, 256), np.float32)
    best = cold.candidates(planted[1], gists, 1)
    assert best[0].id == entry(1, planted[1], ()).id and best[0].cosine == pytest.approx(1.0, abs=1e-2)
    under = cold.candidates(planted[1], gists, 5, key_prefix="images/3/")
    assert len(under) >= 5 and all(c.keys[0].startswith("images/3/") for c in under)


def test_large_segments_are_read_with_parallel_ranged_gets(stack: Any) -> None:
    """A segment bigger than part_bytes (its size from the manifest) comes in ranged GETs and parses the same."""
    store, counts = counting_store(stack)
    index_store = IndexStore(store, "ranged/")
    rng = np.random.default_rng(5)
    vectors = unit(rng, 300)
    add_images(index_store, vectors, range(300))
    Compactor(SegmentStore(index_store)).compact()
    manifest = json.loads(store.get("ranged/manifest.json").body)
    size = manifest["segments"][0]["bytes"]
    part = 4096
    assert size > 4 * part
    ranges: list[str] = []
    store.client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: ranges.append(params.get("headers", {}).get("Range", ""))
    )
    counts.clear()
    index = EmbeddingIndex(SegmentedView(SegmentStore(index_store, part_bytes=part)), refresh_seconds=0)
    index.refresh(force=True)
    parts = -(-size // part)
    assert counts == {"ListObjectsV2": 1, "GetObject": 1 + 1 + parts}  # manifest, header, the parts
    start, end = manifest["segments"][0]["header"]
    expected = [f"bytes={s}-{min(s + part, size) - 1}" for s in range(0, size, part)] + [f"bytes={start}-{end - 1}"]
    assert sorted(r for r in ranges if r) == sorted(expected)
    rows = {i: r for r, i in enumerate(index.ids)}
    for i in range(300):
        np.testing.assert_array_equal(index.matrix[rows[entry(i, vectors[i], ()).id]], vectors[i])


def test_a_cold_reader_reads_headers_first_and_each_segment_once_while_copying(stack: Any) -> None:
    """Refresh reads only the headers (ids, keys, tombstones); the index copies each segment's matrices as they
    are read, and the view keeps none of them afterwards: loading rows again reads their segment again."""
    store, counts = counting_store(stack)
    index_store = IndexStore(store, "headers/")
    rng = np.random.default_rng(6)
    vectors = unit(rng, 25)
    add_images(index_store, vectors, range(25))
    Compactor(SegmentStore(index_store), segment_rows=10).compact()  # 3 segments: 10 + 10 + 5 rows
    counts.clear()
    view = SegmentedView(SegmentStore(index_store))
    refreshed = view.refresh()
    assert counts == {"ListObjectsV2": 1, "GetObject": 1 + 3}  # the manifest and 3 headers, no matrices yet
    versions, load = refreshed
    loaded = load(sorted(versions))
    assert loaded.rows == {} and [len(b.ids) for b in loaded.blocks] == [10, 10, 5]
    assert loaded.matrices is not None
    sources = list(loaded.matrices(loaded.blocks))
    assert counts["GetObject"] == 1 + 3 + 3
    number = {entry(n, vectors[n], ()).id: n for n in range(25)}
    for block, source in zip(loaded.blocks, sources, strict=True):
        for i, row in zip(block.ids, block.rows, strict=True):
            np.testing.assert_array_equal(source["embedding"][row], vectors[number[i]])
    counts.clear()
    wanted = entry(7, vectors[7], ()).id
    again = load([wanted])
    assert again.matrices is not None and [b.ids for b in again.blocks] == [[wanted]]
    (source,) = again.matrices(again.blocks)
    assert counts == {"GetObject": 1}  # released after the first copy: read again
    np.testing.assert_array_equal(source["embedding"][again.blocks[0].rows[0]], vectors[7])
    index = EmbeddingIndex(view, refresh_seconds=0)
    index.refresh(force=True)
    assert index.keys == truth(index_store) and all(m.dtype == np.float32 for m in index.matrices.values())


def test_prefix_masks_follow_key_changes_between_refreshes(stack: Any) -> None:
    """The index keeps recent prefix masks per snapshot: a key added or removed shows in the next filtered scan."""
    store, _ = counting_store(stack)
    index_store = IndexStore(store, "masks/")
    rng = np.random.default_rng(9)
    vectors = unit(rng, 6)
    ids = [entry(i, vectors[i], ()).id for i in range(6)]
    for i in range(6):
        key = f"images/{'a' if i < 3 else 'b'}/{i}.jpg"
        index_store.create_or_add_key(entry(i, vectors[i], (key,)), key)
    index = EmbeddingIndex(EntryRows(index_store), refresh_seconds=0)
    index.refresh(force=True)
    gists = np.zeros((8, 256), np.float32)

    def under_a() -> tuple[set[str], set[str]]:
        by_cosine = {c.id for c in index.candidates(vectors[0], gists, 6, key_prefix="images/a/")[:3]}
        shortlisted = {c.id for c in index.candidates(vectors[0], gists, 6, key_prefix="images/a/")}
        return by_cosine, shortlisted

    assert under_a() == (set(ids[:3]), set(ids[:3]))
    index_store.add_key(ids[4], "images/a/copy-of-4.jpg")
    index_store.remove_key("images/a/1.jpg")
    index.refresh(force=True)
    assert under_a() == ({ids[0], ids[2], ids[4]}, {ids[0], ids[2], ids[4]})


def test_compactors_racing_each_other_and_ingest_lose_nothing(stack: Any) -> None:
    """Two compactors in a loop while four writers create entries, add and remove keys, and a reader checks that
    every finished creation is visible; at the end the packed index equals the entries, key for key."""
    index_store = IndexStore(Store(stack.bucket), "index/")
    rng = np.random.default_rng(4)
    vectors = unit(rng, 200)
    created: set[str] = set()  # ids whose creation has returned (and that are never deleted)
    stop = threading.Event()
    errors: list[BaseException] = []
    compactions: collections.Counter[str] = collections.Counter()

    def guarded(fn: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                stop.set()

        return run

    @guarded
    def writer(w: int) -> None:
        r = random.Random(w)
        for j in range(w * 40, w * 40 + 40):
            e = entry(j, vectors[j], (f"images/{j}.jpg",))
            index_store.create_or_add_key(e, f"images/{j}.jpg")
            if j % 4 == 0:  # churn: a second key, then one of the two removed
                index_store.add_key(e.id, f"images/extra/{j}.jpg")
                index_store.remove_key(r.choice([f"images/extra/{j}.jpg", f"images/{j}.jpg"]))
            elif j % 7 == 0:
                index_store.remove_key(f"images/{j}.jpg")  # deleted: never counted as created
                continue
            created.add(e.id)

    @guarded
    def compactor(c: int) -> None:
        comp = Compactor(SegmentStore(index_store), max_segments=3)
        while not stop.is_set():
            result = comp.compact()
            compactions["runs"] += 1
            compactions["merges"] += bool(result.merged)
            compactions["retries"] += result.attempts - 1

    @guarded
    def reader() -> None:
        view = EmbeddingIndex(SegmentedView(SegmentStore(index_store)), refresh_seconds=0)
        while not stop.is_set():
            before = set(created)
            view.refresh(force=True)
            missing = before - set(view.keys)
            assert not missing, f"{len(missing)} finished creations invisible to a reader"
            compactions["reads"] += 1

    threads = [threading.Thread(target=compactor, args=(c,)) for c in range(2)]
    threads.append(threading.Thread(target=reader))
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    Compactor(SegmentStore(index_store), max_segments=3).compact()
    expected = truth(index_store)
    assert created <= set(expected) and len(expected) >= 100
    view = segmented(index_store)
    assert view.keys == expected
    assert compactions["runs"] >= 4 and compactions["reads"] >= 2, compactions


def test_merges_rewrite_only_the_small_newest_segments_and_keep_their_deletions(stack: Any) -> None:
    """Full segments are never rewritten (a merge holds only the small tail in memory); a deletion the tail
    carries still hides the row in the full segment it does not rewrite."""
    store, _ = counting_store(stack)
    index_store = IndexStore(store, "tiered/")
    rng = np.random.default_rng(8)
    vectors = unit(rng, 40)
    add_images(index_store, vectors, range(25))
    compactor = Compactor(SegmentStore(index_store), max_segments=2, segment_rows=10)
    first = compactor.compact()
    assert first.segments == 3 and first.merged == 0  # 10 + 10 + 5 rows
    full = [m["key"] for m in json.loads(store.get("tiered/manifest.json").body)["segments"][:2]]
    in_full = sorted(range(25), key=lambda i: entry(i, vectors[i], ()).id)[0]  # in the first full segment
    index_store.remove_key(f"images/{in_full}.jpg")
    add_images(index_store, vectors, (30, 31))
    assert compactor.compact().merged == 0  # small tail 1 + 1 new <= 2
    index_store.create_or_add_key(entry(32, vectors[32], ("images/32.jpg",)), "images/32.jpg")
    third = compactor.compact()
    assert third.merged == 2 and third.segments == 3  # the two small ones and the new one became one
    manifest = json.loads(store.get("tiered/manifest.json").body)
    assert [m["key"] for m in manifest["segments"][:2]] == full
    assert manifest["segments"][2]["count"] == 5 + 2 + 1 and manifest["segments"][2]["deleted"] == 1
    expected = truth(index_store)
    assert len(expected) == 27 and entry(in_full, vectors[in_full], ()).id not in expected
    assert segmented(index_store).keys == expected


def test_merged_segments_are_deleted_only_after_the_grace_period(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader may still be loading a segment a merge replaced: it stays for RETIRED_GRACE_SECONDS, then goes."""
    import pictrace.index.compaction

    store, _ = counting_store(stack)
    index_store = IndexStore(store, "index/")
    rng = np.random.default_rng(7)
    compactor = Compactor(SegmentStore(index_store), max_segments=1)
    for i in range(3):
        index_store.create_or_add_key(entry(i, unit(rng, 1)[0], (f"images/{i}.jpg",)), f"images/{i}.jpg")
        compactor.compact()
    segments = sorted(k for k, _, _ in store.list("index/segments/"))
    manifest = json.loads(store.get("index/manifest.json").body)
    assert len(manifest["segments"]) == 1 and len(manifest["retired"]) == 2
    assert len(segments) == 3  # the merged-away ones are still there
    assert compactor.compact().folded == 0 and len(list(store.list("index/segments/"))) == 3
    monkeypatch.setattr(pictrace.index.compaction, "RETIRED_GRACE_SECONDS", 0.0)
    compactor.compact()
    assert [k for k, _, _ in store.list("index/segments/")] == [manifest["segments"][0]["key"]]
    assert json.loads(store.get("index/manifest.json").body)["retired"] == []
    assert segmented(index_store).keys == truth(index_store)


def test_the_clients_pictrace_makes_leave_a_listings_timestamps_as_sent(stack: Any) -> None:
    """What S3 lists is read without parsing each key's LastModified (PicTrace reads none): a LIST of many keys
    costs the client its XML alone. The keys, ETags and sizes are read as before."""
    from pictrace.storage import new_client

    client = new_client("s3", region_name="us-east-1")
    store = Store(stack.bucket, client)
    store.put("index/changes/a", b"12345")
    listed = client.list_objects_v2(Bucket=stack.bucket, Prefix="index/changes/")["Contents"][0]
    assert isinstance(listed["LastModified"], str) and listed["LastModified"].startswith("20")
    assert list(store.list("index/changes/")) == [("index/changes/a", listed["ETag"], 5)]
    parsed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=stack.bucket)["Contents"][0]
    assert not isinstance(parsed["LastModified"], str)  # boto3's own clients are left as they were
