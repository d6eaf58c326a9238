"""EmbeddingIndex.candidates with and without its gist half, and by_detail (the images' details it holds)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from pictrace.index.memory import EmbeddingIndex
from pictrace.index.rows import Loaded, Loader, Row, Versions


class _Rows:
    """A RowSource of fixed rows."""

    def __init__(self, rows: dict[str, Row]) -> None:
        self.rows = rows

    def refresh(self) -> tuple[Versions, Loader]:
        return dict.fromkeys(self.rows, "v1"), lambda ids: Loaded({i: self.rows[i] for i in ids})


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal(n).astype(np.float32)
    return v / np.linalg.norm(v)


def test_without_the_gist_half_the_shortlist_is_the_cosine_half_with_the_same_turns() -> None:
    rng = np.random.default_rng(7)
    rows = {
        f"{i:064x}": Row((f"images/{i}.jpg",), {"embedding": _unit(rng, 16), "gist": _unit(rng, 256)})
        for i in range(60)
    }
    index = EmbeddingIndex(_Rows(rows), refresh_seconds=0)
    index.refresh(force=True)
    query, gists = _unit(rng, 16), np.stack([_unit(rng, 256) for _ in range(8)])
    both = index.candidates(query, gists, 5)
    cosine_only = index.candidates(query, gists, 5, by_layout=False)
    assert len(both) > 5  # the gist half brought in other rows
    assert [c.id for c in cosine_only] == [c.id for c in both[:5]]
    assert [c.cosine for c in cosine_only] == sorted((c.cosine for c in cosine_only), reverse=True)
    for a, b in zip(both[:5], cosine_only, strict=True):
        assert (a.transform, a.keys) == (b.transform, b.keys) and abs(a.gist - b.gist) < 1e-5
    under = index.candidates(query, gists, 5, key_prefix="images/1", by_layout=False)
    assert under and all(c.keys[0].startswith("images/1") for c in under)
    assert index.candidates(query, gists, 5, key_prefix="nowhere/", by_layout=False) == []


def _with_details(rng: np.random.Generator, n: int, windows: int, dim: int, without: int) -> dict[str, Row]:
    """n rows with details (windows unit vectors of dim, quantised as the index holds them), but the first `without`."""
    from pictrace.details import quantised

    rows = {}
    for i in range(n):
        vectors = {"embedding": _unit(rng, dim), "gist": _unit(rng, 256)}
        if i >= without:
            vectors["details"] = quantised(np.stack([_unit(rng, dim) for _ in range(windows)]))
        rows[f"{i:064x}"] = Row((f"images/{i % 3}/{i}.jpg",), vectors)
    return rows


def test_the_details_shortlist_ranks_the_image_one_of_whose_details_the_query_is() -> None:
    """By the best centred cosine of any detail (as pictrace.regions judges one candidate's, on the exact float16
    details), within a prefix; an image without details is never brought; none at all where none are held."""
    from pictrace.details import best_detail, quantised

    rng = np.random.default_rng(11)
    dim, windows = 32, 25
    rows = _with_details(rng, 200, windows, dim, without=20)
    target = f"{57:064x}"
    exact = np.stack([_unit(rng, dim) for _ in range(windows)])
    rows[target].vectors["details"] = quantised(exact)
    query = exact[13] * 0.8 + _unit(rng, dim) * 0.6
    query /= np.linalg.norm(query)
    index = EmbeddingIndex(_Rows(rows), refresh_seconds=0)
    index.refresh(force=True)
    assert index.matrices["details"].dtype == np.int8 and index.matrices["details"].shape == (200, windows * dim)
    centre = _unit(rng, dim) * 0.2
    gists = np.stack([_unit(rng, 256) for _ in range(8)])
    found = index.by_detail(query, gists, 5, centre=centre)
    assert found[0].id == target and len(found) == 5
    held = best_detail(index.matrices["details"], query, centre)
    assert np.isneginf(held[:20]).all()  # the rows without details
    exact_best = best_detail(exact.reshape(1, -1).astype(np.float16), query, centre)[0]
    assert abs(held[list(index.ids).index(target)] - exact_best) < 0.01  # quantised: within a hundredth
    under = index.by_detail(query, gists, 50, key_prefix="images/1/", centre=centre)
    assert under and all(c.keys[0].startswith("images/1/") for c in under) and target not in {c.id for c in under}
    assert all(int(c.id, 16) >= 20 for c in index.by_detail(query, gists, 500))  # only images with details
    plain = EmbeddingIndex(_Rows(_with_details(rng, 10, windows, dim, without=10)), refresh_seconds=0)
    plain.refresh(force=True)
    assert "details" not in plain.matrices and plain.by_detail(query, gists, 5) == []


@pytest.mark.parametrize(("held", "n", "kept"), [(30, 31, False), (31, 31, True), (0, 1, False)])
def test_an_index_past_its_details_limit_holds_none_and_its_details_shortlist_is_empty(
    held: int, n: int, kept: bool
) -> None:
    rng = np.random.default_rng(5)
    rows = _Rows(_with_details(rng, n, 4, 16, without=0))
    index = EmbeddingIndex(rows, refresh_seconds=0, held_at_most={"details": held})
    index.refresh(force=True)
    assert set(index.matrices) == {"embedding", "gist"} | ({"details"} if kept else set()) and len(index) == n
    shortlist = index.by_detail(_unit(rng, 16), np.stack([_unit(rng, 256) for _ in range(8)]), 5)
    assert bool(shortlist) is kept


def test_the_search_backend_holds_as_many_images_details_as_the_settings_say() -> None:
    from pictrace.index.backend import MemoryBackend, open_backend
    from pictrace.index.store import IndexStore
    from pictrace.settings import Settings

    for held in (0, 40_000):
        backend = open_backend(Settings(bucket="b", details_held=held), IndexStore(cast(Any, object()), "index/"))
        assert isinstance(backend, MemoryBackend) and backend.index.held_at_most == {"details": held}


def test_a_segment_stores_the_details_as_int8_whatever_its_float_dtype_and_zeros_for_rows_without() -> None:
    from pictrace.index.segments import Segment

    rng = np.random.default_rng(9)
    rows = _with_details(rng, 6, 4, 16, without=2)
    segment = Segment.from_bytes(Segment.from_rows(rows).to_bytes("float16"))
    details = segment.matrices["details"]
    assert details.dtype == np.int8 and segment.matrices["embedding"].dtype == np.float16
    assert not details[:2].any()  # the rows without details (ids sort as the rows were made)
    assert all((details[i] == rows[segment.ids[i]].vectors["details"]).all() for i in range(2, 6))


def test_an_index_that_holds_no_details_reads_none_and_the_copy_checker_holds_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pictrace.copycheck import get_checker
    from pictrace.details import DETAILS
    from pictrace.index.backend import MemoryBackend, open_backend
    from pictrace.index.layout import Entry, details_to_bytes
    from pictrace.index.store import IndexStore
    from pictrace.rerank import compute_features
    from pictrace.settings import Settings, get_settings
    from pictrace.storage import StoredObject

    from tests.memstore import MemoryStore

    class Reads(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.read: list[str] = []

        def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
            self.read.append(key)
            return super().get(key, max_bytes)

    rng, store = np.random.default_rng(3), Reads()
    index_store = IndexStore(store, "index/")
    features = compute_features(np.zeros((32, 32, 3), np.uint8))
    for i in range(3):
        entry = Entry(f"{i:064x}", (f"images/{i}.jpg",), _unit(rng, 16), features, {})
        assert index_store.create_or_add_key(entry, entry.keys[0]) == "created"
        details = np.stack([_unit(rng, 16) for _ in range(DETAILS)]).astype(np.float16)
        store.put(index_store.layout.details_key(entry.id), details_to_bytes(details))
    for held in (0, 40_000):
        backend = open_backend(Settings(bucket="b", details_held=held), index_store)
        assert isinstance(backend, MemoryBackend)
        store.read.clear()
        backend.refresh(force=True)
        assert sum(k.endswith(".npz") for k in store.read) == 3 and len(backend.index) == 3  # each entry, once
        assert sum(k.endswith(".npy") for k in store.read) == (3 if held else 0)  # and its details where held
        assert ("details" in backend.index.matrices) is bool(held)
    monkeypatch.setenv("PICTRACE_BUCKET", "b")  # the container's settings, which hold 40,000 by default
    get_settings.cache_clear(), get_checker.cache_clear()
    try:
        assert get_settings().details_held > 0
        assert get_checker().service.backend.index.held_at_most == {"details": 0}  # type: ignore[attr-defined]
    finally:
        get_settings.cache_clear(), get_checker.cache_clear()
