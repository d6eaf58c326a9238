"""EmbeddingIndex: every image's named vectors as float32 matrices held across warm invocations, refreshed from
a RowSource by what changed, and the shortlist over them (centred cosine and gist layout, optionally within a key
prefix)."""

from __future__ import annotations

import threading
import time

import numpy as np

from pictrace.index.alloc import trim, tune_allocator
from pictrace.index.rows import Candidate, Loaded, RowSource

_MASKS_KEPT = 8  # key-prefix masks kept per snapshot (a prefix filter costs a pass over every key in Python)
_TRIM_AFTER_ROWS = 256  # a refresh that changed at least this many rows hands freed heap pages back (see alloc.trim)


class EmbeddingIndex:
    """All embeddings as one float32 matrix, kept across warm invocations and refreshed by what changed.

    source: where the rows come from (pictrace.index.segments.SegmentedView: the segments and the entries changed
    since, or every entry before the first compaction; pictrace.index.rows.EntryRows: every entry).
    """

    def __init__(self, source: RowSource, refresh_seconds: float = 2.0) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        # (named matrices, ids) replaced as one tuple so a concurrent reader never sees a half-updated pair
        self._snapshot: tuple[dict[str, np.ndarray], list[str]] = ({}, [])
        self.keys: dict[str, tuple[str, ...]] = {}
        self._versions: dict[str, str] = {}  # id -> version of its row (entry ETag, or segment/marker token)
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()
        self._centring_cache: tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._masks: tuple[list[str], dict[str, np.ndarray]] = ([], {})  # per snapshot: key prefix -> rows under it

    def __len__(self) -> int:
        return len(self._snapshot[1])

    @property
    def matrices(self) -> dict[str, np.ndarray]:
        """Named (n, d) float32 matrices (see index_vectors), one row per id."""
        return self._snapshot[0]

    @property
    def matrix(self) -> np.ndarray:
        """The (n, 2048) float32 embedding matrix, one row per id."""
        return self._snapshot[0].get("embedding", np.zeros((0, 0), dtype=np.float32))

    @property
    def ids(self) -> list[str]:
        """Entry ids in matrix row order."""
        return self._snapshot[1]

    @property
    def versions(self) -> dict[str, str]:
        """id -> the version token of the row held (read-only view for callers; see RowSource)."""
        return dict(self._versions)

    def expire(self) -> None:
        """Make the next refresh look at S3 whatever the refresh interval (e.g. after a SnapStart restore)."""
        self._refreshed_at = float("-inf")

    def refresh(self, force: bool = False) -> int:
        """Bring the matrix up to date with S3 (at most every refresh_seconds); returns how many rows changed."""
        with self._lock:
            if not force and time.monotonic() - self._refreshed_at < self.refresh_seconds:
                return 0
            tune_allocator()
            listed, load = self.source.refresh()
            changed = [i for i, version in listed.items() if self._versions.get(i) != version]
            gone = [i for i in self._versions if i not in listed]
            loaded = load(changed)
            if changed or gone:
                self.apply(loaded, set(changed) | set(gone), listed)
            del loaded
            if len(changed) + len(gone) >= _TRIM_AFTER_ROWS:
                trim()
            self._refreshed_at = time.monotonic()
            return len(changed) + len(gone)

    def apply(self, loaded: Loaded, drop: set[str], versions: dict[str, str]) -> None:
        """The next snapshot: the rows not in drop, then the loaded rows, then the blocks, each matrix written once
        into its final array (blocks straight from their object's matrices, one object at a time).

        drop: every id changed or gone (the loaded ones among them come back with their new rows).
        """
        matrices, ids = self._snapshot
        rows = {i: row for i, row in loaded.rows.items() if row is not None}
        block_ids = [i for b in loaded.blocks for i in b.ids]
        keep_rows = np.fromiter((row for row, i in enumerate(ids) if i not in drop), np.intp)
        new_ids = [ids[row] for row in keep_rows] + list(rows) + block_ids
        dims: dict[str, int] = {name: m.shape[1] for name, m in matrices.items()}
        for b in reversed(loaded.blocks):
            dims.update(b.dims)
        for row in rows.values():
            dims.update({name: len(v) for name, v in row.vectors.items()})
        new: dict[str, np.ndarray] = {}
        for name, dim in sorted(dims.items()):
            # a vector some rows lack (written before it existed, e.g. an older segment) is zeros for them
            out = new[name] = np.empty((len(new_ids), dim), np.float32)
            old = matrices.get(name)
            if old is not None:
                np.take(old, keep_rows, axis=0, out=out[: len(keep_rows)])
            else:
                out[: len(keep_rows)] = 0.0
            if rows:
                zero = np.zeros(dim, np.float32)
                np.stack(
                    [row.vectors.get(name, zero) for row in rows.values()],
                    out=out[len(keep_rows) : len(keep_rows) + len(rows)],
                )
        if loaded.blocks:
            assert loaded.matrices is not None, "blocks come with their matrices"
            start = len(keep_rows) + len(rows)
            for block, source in zip(loaded.blocks, loaded.matrices(loaded.blocks), strict=True):
                end = start + len(block.ids)
                for name, out in new.items():
                    m = source.get(name)
                    if m is None:
                        out[start:end] = 0.0
                    elif len(block.rows) == len(m):  # every row of the object, in order (see SegmentedView)
                        out[start:end] = m
                    else:
                        out[start:end] = m[block.rows]
                start = end
        self._snapshot = (new, new_ids)
        for i in drop:
            self.keys.pop(i, None)
            self._versions.pop(i, None)
        for i, row in rows.items():
            self.keys[i] = row.keys
            self._versions[i] = versions[i]
        for b in loaded.blocks:
            for i, keys in zip(b.ids, b.keys, strict=True):
                self.keys[i] = keys
                self._versions[i] = versions[i]

    def _centring(self, matrices: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The embeddings' mean and, per row, e.mean and |e - mean| (cached per snapshot)."""
        cached = self._centring_cache
        if cached is not None and cached[0] is matrices:
            return cached[1]
        embeddings = matrices["embedding"]
        mean = embeddings.mean(axis=0)
        dots = embeddings @ mean
        norms = np.sqrt(np.maximum(1.0 - 2.0 * dots + float(mean @ mean), 1e-12))
        self._centring_cache = (matrices, (mean, dots, norms))
        return mean, dots, norms

    def candidates(
        self, query: np.ndarray, gists: np.ndarray, k: int, key_prefix: str | None = None
    ) -> list[Candidate]:
        """Shortlist of up to 2k ids: the k best by centred embedding cosine and the k best by gist correlation.

        query: the unit embedding; gists: (8, 256) gists of the query's D4 turns (see rerank.gist_variants).
        Each candidate carries both scores and the turn of the query whose gist matched best.
        """
        matrices, ids = self._snapshot
        if not ids:
            return []
        mean, dots, norms = self._centring(matrices)
        q = query.astype(np.float32)
        centred_q = float(np.linalg.norm(q - mean)) or 1.0
        cosines = (matrices["embedding"] @ q - float(q @ mean) - dots + float(mean @ mean)) / (norms * centred_q)
        by_turn = matrices["gist"] @ gists.astype(np.float32).T  # (n, 8)
        turns = by_turn.argmax(axis=1)
        layout = by_turn[np.arange(len(ids)), turns]
        allowed = self._mask(ids, key_prefix) if key_prefix else None
        chosen: dict[int, None] = {}
        for sims in (cosines, layout):
            ranked = np.where(allowed, sims, -np.inf) if allowed is not None else sims
            m = min(k, len(ids) if allowed is None else int(allowed.sum()))
            if m <= 0:
                continue
            top = np.argpartition(-ranked, m - 1)[:m]
            for row in top[np.argsort(-ranked[top], kind="stable")]:
                chosen.setdefault(int(row), None)
        keys = self.keys
        return [
            Candidate(ids[r], float(cosines[r]), float(layout[r]), int(turns[r]), keys.get(ids[r], ())) for r in chosen
        ]

    def _mask(self, ids: list[str], key_prefix: str) -> np.ndarray:
        """Rows with a key under the prefix; the last few prefixes' masks are kept until the snapshot changes."""
        snapshot, masks = self._masks
        if snapshot is not ids:
            masks = {}
            self._masks = (ids, masks)
        mask = masks.get(key_prefix)
        if mask is None:
            keys = self.keys
            mask = np.fromiter((any(k.startswith(key_prefix) for k in keys.get(i, ())) for i in ids), bool, len(ids))
            if len(masks) >= _MASKS_KEPT:
                masks.pop(next(iter(masks)))
            masks[key_prefix] = mask
        return mask

    def centred_cosine(self, query: np.ndarray, embedding: np.ndarray) -> float:
        """Cosine of two embeddings centred on the index mean, as candidates() computes it (plain cosine for an
        empty index)."""
        matrices = self._snapshot[0]
        if not self._snapshot[1]:
            return float(np.dot(query, embedding))
        mean = self._centring(matrices)[0]
        a, b = query.astype(np.float32) - mean, embedding.astype(np.float32) - mean
        return float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))

    def shortlist(self, query: np.ndarray, k: int, key_prefix: str | None = None) -> list[tuple[str, float]]:
        """The k ids most cosine-similar to a unit query vector, best first, with their cosine.

        key_prefix: only images with a key under this prefix (a folder, a tenant).
        """
        matrices, ids = self._snapshot
        if not ids:
            return []
        sims = matrices["embedding"] @ query.astype(np.float32)
        if key_prefix:
            mask = self._mask(ids, key_prefix)
            sims = np.where(mask, sims, -np.inf)
            k = min(k, int(mask.sum()))
            if k == 0:
                return []
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(ids[i], float(sims[i])) for i in top]
