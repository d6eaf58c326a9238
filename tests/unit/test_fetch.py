"""ObjectFetcher's cache, without the network."""

from __future__ import annotations

import asyncio

from pictrace.fetch import ObjectFetcher


def test_clear_empties_the_cache_and_forget_drops_one_key() -> None:
    fetcher = ObjectFetcher(lambda key: f"http://127.0.0.1:9/{key}", bytes.decode)
    fetcher._cache.update({"a": "A", "b": "B"})
    fetcher.forget("a")
    assert asyncio.run(fetcher.fetch_many(["b"])) == {"b": "B"}  # served from the cache: no request made
    fetcher.clear()
    assert not fetcher._cache


def test_cached_objects_are_handed_over_as_they_are_at_hand() -> None:
    fetcher = ObjectFetcher(lambda key: f"http://127.0.0.1:9/{key}", bytes.decode)
    fetcher._cache.update({"a": "A", "b": "B"})
    seen: list[tuple[str, str]] = []
    found = asyncio.run(fetcher.fetch_many(["b", "a"], lambda key, value: seen.append((key, value))))
    assert found == {"a": "A", "b": "B"} and seen == [("b", "B"), ("a", "A")]
