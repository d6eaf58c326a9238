"""PresignedLinks (a signed link is reused while at least half of its validity is left, five minutes at most, and
forgotten on clear) and what the search service does with them and around a snapshot; no network."""

from __future__ import annotations

from typing import Any

import pytest
from pictrace import storage
from pictrace.storage import PresignedLinks, Store


class CountingStore(Store):
    def __init__(self) -> None:
        super().__init__("bucket", client=object())
        self.signed: list[tuple[str, int]] = []

    def presign_get(self, key: str, expires: int) -> str:
        self.signed.append((key, expires))
        return f"https://example.invalid/{key}?n={len(self.signed)}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    now = {"t": 1000.0}

    class Time:
        @staticmethod
        def monotonic() -> float:
            return now["t"]

    monkeypatch.setattr(storage, "time", Time)
    return now


def test_reused_until_half_the_validity_is_gone(clock: dict[str, float]) -> None:
    store = CountingStore()
    links = PresignedLinks(store, expires=300)
    first = links.get("a.jpg")
    clock["t"] += 149
    assert links.get("a.jpg") == first
    assert store.signed == [("a.jpg", 300)]
    clock["t"] += 2  # past half of 300 s: a new link, valid for the full 300 s again
    second = links.get("a.jpg")
    assert second != first
    assert store.signed == [("a.jpg", 300), ("a.jpg", 300)]


def test_long_lived_links_are_reused_for_at_most_five_minutes(clock: dict[str, float]) -> None:
    store = CountingStore()
    links = PresignedLinks(store, expires=7 * 24 * 3600)  # signed with temporary credentials: may die sooner
    first = links.get("a.jpg")
    clock["t"] += PresignedLinks.REUSE_SECONDS - 1
    assert links.get("a.jpg") == first
    clock["t"] += 2
    assert links.get("a.jpg") != first


def test_each_key_has_its_own_link_and_clear_forgets_them(clock: dict[str, float]) -> None:
    store = CountingStore()
    links = PresignedLinks(store, expires=900)
    a, b = links.get("a.jpg"), links.get("b.jpg")
    assert a != b
    links.clear()
    assert links.get("a.jpg") not in (a, b)
    assert [k for k, _ in store.signed] == ["a.jpg", "b.jpg", "a.jpg"]


def test_holds_at_most_size_links(clock: dict[str, float]) -> None:
    store = CountingStore()
    links = PresignedLinks(store, expires=900, size=2)
    links.get("a.jpg")
    links.get("b.jpg")
    links.get("a.jpg")  # a is the most recent now
    links.get("c.jpg")  # b goes
    signed = len(store.signed)
    links.get("a.jpg")
    assert len(store.signed) == signed
    links.get("b.jpg")
    assert len(store.signed) == signed + 1


def test_search_service_renews_its_links_after_a_restore(monkeypatch: Any) -> None:
    from pictrace.search import SearchService
    from pictrace.settings import Settings

    service = SearchService(Settings(bucket="bucket"), store=CountingStore(), embedder=None, backend=_NoBackend())
    first = service.link("images/a.jpg")
    assert service.link("images/a.jpg") == first
    service.renew()
    assert service.link("images/a.jpg") != first


class _NoBackend:
    on_change = None
    centred = True

    def expire(self) -> None:
        pass


def test_the_warm_up_goes_on_when_the_features_cannot_be_read_ahead(monkeypatch: Any) -> None:
    """Reading indexed images' features before a snapshot is a head start: an S3 failure there is logged, not fatal."""
    import numpy as np
    from pictrace.errors import UpstreamError
    from pictrace.search import SearchService
    from pictrace.settings import Settings

    class Embedder:
        weights, backend, dim = "random:0", "test", 4

        def embed(self, images: Any) -> np.ndarray:
            return np.ones((len(images), 4), np.float32) / 2

    class Backend(_NoBackend):
        refreshed = False

        def refresh(self, force: bool = False) -> int:
            Backend.refreshed = True
            return 0

    store = CountingStore()
    service = SearchService(Settings(bucket="bucket"), store=store, embedder=Embedder(), backend=Backend())
    monkeypatch.setattr(service.index_store, "check_model", lambda embedder: None)
    monkeypatch.setattr(store, "list", lambda prefix: iter([(f"{prefix}{'a' * 64}.npz", '"etag"', 10)]))
    asked: list[list[str]] = []

    async def failing(keys: list[str], arrived: Any = None) -> dict[str, Any]:
        asked.append(keys)
        raise UpstreamError("the index store could not be read (ClientError)")

    monkeypatch.setattr(service.fetcher, "fetch_many", failing)
    timings = service.warm()
    assert Backend.refreshed and set(timings) == {"model", "index", "features"}
    assert asked == [[service.layout.entry_key("a" * 64)]]
