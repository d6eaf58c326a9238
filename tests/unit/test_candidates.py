"""EmbeddingIndex.candidates with and without its gist half."""

from __future__ import annotations

import numpy as np
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
