"""EmbeddingIndex: every image's named vectors as matrices held across warm invocations, refreshed from a RowSource
by what changed, and the shortlists over them (centred cosine and gist layout, or the images' details; optionally
within a key prefix). Ids, keys and row versions are packed (pictrace.index.packed): no Python object per image."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from pictrace.details import best_detail
from pictrace.index.alloc import trim, tune_allocator
from pictrace.index.packed import KeyTable, Listing, RowIds
from pictrace.index.rows import Candidate, Loaded, RowSource, vector_dtype

logger = logging.getLogger(__name__)

_MASKS_KEPT = 8  # key-prefix masks kept per snapshot
_TRIM_AFTER_ROWS = 256  # a refresh that changed at least this many rows hands freed heap pages back (see alloc.trim)


@dataclass(frozen=True)
class _Snapshot:
    """What one refresh built, replaced as a whole so that a concurrent reader never sees half of an update."""

    matrices: dict[str, np.ndarray]
    ids: RowIds
    keys: KeyTable
    versions: np.ndarray  # per row: the 16-byte digest of its version token (pictrace.index.packed.digests)


_EMPTY = _Snapshot({}, RowIds.of([]), KeyTable.of([]), np.empty(0, "S16"))


class IndexKeys(Mapping[str, tuple[str, ...]]):
    """id -> keys of the rows of one snapshot (read-only)."""

    def __init__(self, ids: RowIds, keys: KeyTable) -> None:
        self._ids = ids
        self._keys = keys

    def __getitem__(self, key: str) -> tuple[str, ...]:
        row = int(self._ids.find([key])[0])
        if row < 0:
            raise KeyError(key)
        return self._keys[row]

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(zip(self._ids, self._keys, strict=True)) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class EmbeddingIndex:
    """All embeddings as one float32 matrix, kept across warm invocations and refreshed by what changed.

    source: where the rows come from (pictrace.index.segments.SegmentedView: the segments and the entries changed
    since, or every entry before the first compaction; pictrace.index.rows.EntryRows: every entry).
    """

    def __init__(
        self, source: RowSource, refresh_seconds: float = 2.0, held_at_most: Mapping[str, int] | None = None
    ) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        # the most images whose named vectors of a name are held (Settings.details_held); an index larger than that
        # holds none of them (without details, a search matches only its candidates' details: pictrace.regions)
        self.held_at_most = dict(held_at_most or {})
        self._snapshot = _EMPTY
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()
        # per snapshot and centre: each row's e.centre and |e - centre|
        self._centring_cache: tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
        self._masks: tuple[_Snapshot, dict[str, np.ndarray]] = (_EMPTY, {})  # per snapshot: key prefix -> rows

    def __len__(self) -> int:
        return len(self._snapshot.ids)

    @property
    def matrices(self) -> dict[str, np.ndarray]:
        """Named (n, d) matrices (see index_vectors; float32 unless rows.VECTOR_DTYPES says), one row per id."""
        return self._snapshot.matrices

    @property
    def matrix(self) -> np.ndarray:
        """The (n, d) float32 embedding matrix, one row per id."""
        return self._snapshot.matrices.get("embedding", np.zeros((0, 0), dtype=np.float32))

    @property
    def ids(self) -> RowIds:
        """Entry ids in matrix row order (a sequence of str)."""
        return self._snapshot.ids

    @property
    def keys(self) -> IndexKeys:
        """id -> the image keys of every row (a read-only mapping)."""
        snapshot = self._snapshot
        return IndexKeys(snapshot.ids, snapshot.keys)

    @property
    def versions(self) -> dict[str, str]:
        """id -> the digest (hex) of the version token of the row held (see RowSource)."""
        snapshot = self._snapshot
        return {i: bytes(v).ljust(16, b"\0").hex() for i, v in zip(snapshot.ids, snapshot.versions, strict=True)}

    def footprint(self) -> dict[str, int]:
        """Bytes the index holds, by part: each matrix ("matrix:<name>"), ids (with their sort order), keys,
        versions."""
        s = self._snapshot
        parts = {f"matrix:{name}": int(m.nbytes) for name, m in s.matrices.items()}
        parts.update({"ids": s.ids.nbytes, "keys": s.keys.nbytes, "versions": int(s.versions.nbytes)})
        return parts

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
            listing = Listing.of(listed)
            del listed
            snapshot = self._snapshot
            found = snapshot.ids.find(listing.ids)
            wanted = listing.digests()
            same = found >= 0
            same[same] = snapshot.versions[found[same]] == wanted[same]
            keep = np.zeros(len(snapshot.ids), bool)
            keep[found[same]] = True
            changed_rows = np.flatnonzero(~same)
            changed = listing.ids.take(changed_rows)
            gone = len(snapshot.ids) - int((found >= 0).sum())  # held rows no longer listed
            del listing, found, same
            loaded = load(list(changed))
            if len(changed) or gone:
                self._apply(loaded, np.flatnonzero(keep), changed, wanted[changed_rows])
            del loaded, wanted
            if len(changed) + gone >= _TRIM_AFTER_ROWS:
                trim()
            self._refreshed_at = time.monotonic()
            return len(changed) + gone

    def _apply(self, loaded: Loaded, keep_rows: np.ndarray, changed: RowIds, versions: np.ndarray) -> None:
        """The next snapshot: the rows kept, then the loaded rows, then the blocks, each matrix written once into
        its final array (blocks straight from their object's matrices, one object at a time).

        changed: the ids asked of the loader, versions: the digest of each one's version.
        """
        snapshot = self._snapshot
        matrices = snapshot.matrices
        rows = {i: row for i, row in loaded.rows.items() if row is not None}
        added = [RowIds.of(list(rows)), *(RowIds.of(b.ids) for b in loaded.blocks)]
        new_ids = RowIds.concat([snapshot.ids.take(keep_rows), *added]).indexed()
        new_keys = KeyTable.concat(
            [
                snapshot.keys.take(keep_rows),
                KeyTable.of([row.keys for row in rows.values()]),
                *(KeyTable.of(b.keys) for b in loaded.blocks),
            ]
        )
        where = changed.find(RowIds.concat(added))
        assert bool((where >= 0).all()), "the loader returned only ids asked of it"
        new_versions = np.concatenate([snapshot.versions[keep_rows], versions[where]])
        del where, added
        dims: dict[str, int] = {name: m.shape[1] for name, m in matrices.items()}
        for b in reversed(loaded.blocks):
            dims.update(b.dims)
        for row in rows.values():
            dims.update({name: len(v) for name, v in row.vectors.items()})
        n, kept = len(new_ids), len(keep_rows)
        new: dict[str, np.ndarray] = {}
        for name, dim in sorted(dims.items()):
            if n > self.held_at_most.get(name, n):
                logger.info("%d images: their %s are not held (at most %d)", n, name, self.held_at_most[name])
                continue
            # a vector some rows lack (written before it existed, e.g. an older segment) is zeros for them
            out = new[name] = np.empty((n, dim), vector_dtype(name))
            old = matrices.get(name)
            if old is not None:
                np.take(old, keep_rows, axis=0, out=out[:kept])
            else:
                out[:kept] = 0
            if rows:
                zero = np.zeros(dim, out.dtype)
                np.stack([row.vectors.get(name, zero) for row in rows.values()], out=out[kept : kept + len(rows)])
        if loaded.blocks:
            assert loaded.matrices is not None, "blocks come with their matrices"
            start = kept + len(rows)
            for block, source in zip(loaded.blocks, loaded.matrices(loaded.blocks), strict=True):
                end = start + len(block.ids)
                for name, out in new.items():
                    m = source.get(name)
                    if m is None:
                        out[start:end] = 0
                    elif len(block.rows) == len(m):  # every row of the object, in order (see SegmentedView)
                        out[start:end] = m
                    else:
                        out[start:end] = m[block.rows]
                start = end
        self._snapshot = _Snapshot(new, new_ids, new_keys, new_versions)

    def _centring(self, matrices: dict[str, np.ndarray], centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, e.centre and |e - centre| (cached per snapshot and centre)."""
        cached = self._centring_cache
        if cached is not None and cached[0] is matrices and cached[1] is centre:
            return cached[2]
        embeddings = matrices["embedding"]
        dots = embeddings @ centre
        norms = np.sqrt(np.maximum(1.0 - 2.0 * dots + float(centre @ centre), 1e-12))
        self._centring_cache = (matrices, centre, (dots, norms))
        return dots, norms

    def _cosines(self, matrices: dict[str, np.ndarray], query: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
        """Every row's cosine with a unit query, both centred on centre (None: the plain cosine)."""
        q = query.astype(np.float32)
        if centre is None:
            return matrices["embedding"] @ q
        dots, norms = self._centring(matrices, centre)
        centred_q = float(np.linalg.norm(q - centre)) or 1.0
        return (matrices["embedding"] @ q - float(q @ centre) - dots + float(centre @ centre)) / (norms * centred_q)

    def candidates(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        k: int,
        key_prefix: str | None = None,
        by_layout: bool = True,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """Shortlist of up to 2k ids: the k best by embedding cosine (centred on centre, the model's reference; None:
        the plain cosine) and the k best by gist correlation (by_layout False: the k best by cosine alone, best
        first).

        query: the unit embedding; gists: (8, 256) gists of the query's D4 turns (see rerank.gist_variants).
        Each candidate carries both scores and the turn of the query whose gist matched best.
        """
        snapshot = self._snapshot
        matrices, ids = snapshot.matrices, snapshot.ids
        if not len(ids):
            return []
        cosines = self._cosines(matrices, query, centre)
        allowed = self._mask(snapshot, key_prefix) if key_prefix else None
        chosen: dict[int, None] = {}
        _add_top(chosen, cosines, k, allowed)
        g = gists.astype(np.float32).T
        if by_layout:  # every row's gist against the query's 8 turns: the k best by their best turn
            _add_top(chosen, (matrices["gist"] @ g).max(axis=1), k, allowed)
        return _with_gists(snapshot, np.fromiter(chosen, np.intp, len(chosen)), cosines, g)

    def by_detail(
        self,
        query: np.ndarray,
        gists: np.ndarray,
        k: int,
        key_prefix: str | None = None,
        centre: np.ndarray | None = None,
    ) -> list[Candidate]:
        """Up to k ids whose details (pictrace.details) the unit query matches best, by the best centred cosine of
        any of them with it (best_detail), best first; none where no image's details are held. Each candidate carries
        its embedding's cosine and the query turn whose gist matched best, as candidates() without by_layout."""
        snapshot = self._snapshot
        details = snapshot.matrices.get("details")
        if details is None or not len(snapshot.ids):
            return []
        best = best_detail(details, query, centre)
        allowed = np.isfinite(best)
        if key_prefix:
            allowed &= self._mask(snapshot, key_prefix)
        chosen: dict[int, None] = {}
        _add_top(chosen, best, k, allowed)
        rows = np.fromiter(chosen, np.intp, len(chosen))
        return _with_gists(snapshot, rows, self._cosines(snapshot.matrices, query, centre), gists.astype(np.float32).T)

    def _mask(self, snapshot: _Snapshot, key_prefix: str) -> np.ndarray:
        """Rows with a key under the prefix; the last few prefixes' masks are kept until the snapshot changes."""
        held, masks = self._masks
        if held is not snapshot:
            masks = {}
            self._masks = (snapshot, masks)
        mask = masks.get(key_prefix)
        if mask is None:
            mask = snapshot.keys.under(key_prefix)
            if len(masks) >= _MASKS_KEPT:
                masks.pop(next(iter(masks)))
            masks[key_prefix] = mask
        return mask

    def shortlist(self, query: np.ndarray, k: int, key_prefix: str | None = None) -> list[tuple[str, float]]:
        """The k ids most cosine-similar to a unit query vector, best first, with their cosine.

        key_prefix: only images with a key under this prefix (a folder, a tenant).
        """
        snapshot = self._snapshot
        matrices, ids = snapshot.matrices, snapshot.ids
        if not len(ids):
            return []
        sims = matrices["embedding"] @ query.astype(np.float32)
        if key_prefix:
            mask = self._mask(snapshot, key_prefix)
            sims = np.where(mask, sims, -np.inf)
            k = min(k, int(mask.sum()))
            if k == 0:
                return []
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(ids[i], float(sims[i])) for i in top]


def _with_gists(snapshot: _Snapshot, rows: np.ndarray, cosines: np.ndarray, gists: np.ndarray) -> list[Candidate]:
    """The candidates of these rows, in order: each with its cosine and the query turn (gists: (256, 8)) its gist
    matches best."""
    by_turn = snapshot.matrices["gist"][rows] @ gists
    turns = by_turn.argmax(axis=1)
    layout = by_turn[np.arange(len(rows)), turns]
    ids, keys = snapshot.ids, snapshot.keys
    return [
        Candidate(ids[r], float(cosines[r]), float(lay), int(turn), keys[r])
        for r, lay, turn in zip(rows, layout, turns, strict=True)
    ]


def _add_top(chosen: dict[int, None], sims: np.ndarray, k: int, allowed: np.ndarray | None) -> None:
    """Add the k best rows by sims (among the allowed ones), best first, to chosen (kept in insertion order)."""
    ranked = np.where(allowed, sims, -np.inf) if allowed is not None else sims
    m = min(k, len(sims) if allowed is None else int(allowed.sum()))
    if m <= 0:
        return
    top = np.argpartition(-ranked, m - 1)[:m]
    for row in top[np.argsort(-ranked[top], kind="stable")]:
        chosen.setdefault(int(row), None)
