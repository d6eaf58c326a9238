"""Per-row bookkeeping of the in-memory index without a Python object per row: ids (RowIds), keys (KeyTable),
version tokens (Listing, and 16-byte digests of them), each a few numpy arrays however many rows there are; and
live_rows, the segments' fold over packed ids.

At 100,000 images a str id, a tuple of keys and a dict entry per image cost about as much as a tenth of the
vectors themselves; these hold the same in about 100 bytes per image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

import numpy as np

_HEX_ID = 64  # ids as ingest names entries: SHA-256, 64 lowercase hex digits
_DIGEST = _HEX_ID // 2
_UTF8 = ("utf-8", "surrogatepass")


def _hex_ids(ids: list[str]) -> np.ndarray | None:
    """The ids as 32-byte digests, or None unless every id is 64 lowercase hex digits."""
    if not all(len(i) == _HEX_ID for i in ids):
        return None
    joined = "".join(ids)
    if joined != joined.lower():
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    if len(raw) != _DIGEST * len(ids):  # fromhex skips whitespace
        return None
    return np.frombuffer(raw, f"S{_DIGEST}").copy()


def _utf8_ids(ids: list[str]) -> np.ndarray:
    return np.array([i.encode(*_UTF8) for i in ids], dtype=bytes) if ids else np.empty(0, "S1")


class RowIds(Sequence[str]):
    """Ids in row order as one fixed-width bytes array: 32-byte digests when every id is 64 lowercase hex digits
    (SHA-256, as ingest names entries), else their UTF-8 bytes. find() looks ids up without a dict."""

    __slots__ = ("_order", "hexed", "packed")

    def __init__(self, packed: np.ndarray, hexed: bool, ordered: bool = False) -> None:
        self.packed = packed
        self.hexed = hexed
        self._order: np.ndarray | None = None if not ordered else np.empty(0, np.intp)  # empty: already sorted

    @classmethod
    def of(cls, ids: Iterable[str]) -> RowIds:
        """These ids, in this order."""
        if isinstance(ids, RowIds):
            return ids
        listed = ids if isinstance(ids, list) else list(ids)
        digests = _hex_ids(listed)
        return cls(digests, True) if digests is not None else cls(_utf8_ids(listed), False)

    @classmethod
    def concat(cls, parts: Sequence[RowIds]) -> RowIds:
        """The parts one after another."""
        if all(p.hexed for p in parts):
            return cls(np.concatenate([p.packed for p in parts]) if parts else np.empty(0, "S32"), True)
        return cls.of([i for p in parts for i in p])

    def take(self, rows: np.ndarray) -> RowIds:
        """The ids of these rows, in this order."""
        return RowIds(self.packed[rows], self.hexed)

    def __len__(self) -> int:
        return len(self.packed)

    def _str(self, b: bytes) -> str:
        return b.ljust(_DIGEST, b"\0").hex() if self.hexed else b.decode(*_UTF8)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._str(bytes(b)) for b in self.packed[i]]
        return self._str(bytes(self.packed[i]))

    def __iter__(self) -> Iterator[str]:
        if self.hexed:
            text = self.packed.tobytes().hex()
            return (text[k : k + _HEX_ID] for k in range(0, len(text), _HEX_ID))
        return (b.decode(*_UTF8) for b in self.packed.tolist())

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and bool(self.find([value])[0] >= 0)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowIds | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowIds({len(self)} ids)"

    @property
    def nbytes(self) -> int:
        """Bytes held (the ids and, once looked up, their sort order)."""
        return int(self.packed.nbytes) + (int(self._order.nbytes) if self._order is not None else 0)

    def indexed(self) -> RowIds:
        """These ids with their sort order computed (find() computes it on first use otherwise)."""
        self._sorter()
        return self

    def _sorter(self) -> np.ndarray | None:
        if self._order is None:
            self._order = np.argsort(self.packed, kind="stable")
        return self._order if len(self._order) else None

    def _query(self, ids: Sequence[str] | RowIds) -> tuple[np.ndarray, np.ndarray | None]:
        """ids packed as self packs its own, and which of them could be present (None: all)."""
        if isinstance(ids, RowIds) and ids.hexed == self.hexed:
            return ids.packed, None
        listed = list(ids)
        if not self.hexed:
            return _utf8_ids(listed), None
        digests = _hex_ids(listed)
        if digests is not None:
            return digests, None
        valid = np.array([_hex_ids([i]) is not None for i in listed], bool)
        packed = np.array([bytes.fromhex(i) if ok else b"" for i, ok in zip(listed, valid, strict=True)], f"S{_DIGEST}")
        return packed, valid

    def find(self, ids: Sequence[str] | RowIds) -> np.ndarray:
        """The row of each id, -1 for those not here."""
        query, valid = self._query(ids)
        if not len(self) or not len(query):
            return np.full(len(query), -1, np.intp)
        sorter = self._sorter()
        pos = np.minimum(np.searchsorted(self.packed, query, sorter=sorter), len(self) - 1)
        rows = sorter[pos] if sorter is not None else pos
        hit = self.packed[rows] == query
        if valid is not None:
            hit &= valid
        return np.where(hit, rows, -1)


class KeyTable(Sequence[tuple[str, ...]]):
    """Each row's keys (a tuple of str) as one UTF-8 blob and two offset arrays: where each key ends in the blob,
    and where each row's keys end among the keys."""

    __slots__ = ("blob", "key_ends", "row_ends")

    def __init__(self, blob: bytes, key_ends: np.ndarray, row_ends: np.ndarray) -> None:
        self.blob = blob
        self.key_ends = key_ends
        self.row_ends = row_ends

    @classmethod
    def of(cls, rows: Iterable[tuple[str, ...]]) -> KeyTable:
        """These rows' keys, in this order."""
        if isinstance(rows, KeyTable):
            return rows
        counts: list[int] = []
        encoded: list[bytes] = []
        for keys in rows:
            counts.append(len(keys))
            encoded.extend(k.encode(*_UTF8) for k in keys)
        key_ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), dtype=np.int64)
        return cls(b"".join(encoded), key_ends, np.cumsum(np.array(counts, np.int64), dtype=np.int64))

    @classmethod
    def concat(cls, parts: Sequence[KeyTable]) -> KeyTable:
        """The parts' rows one after another."""
        key_ends, row_ends, nbytes, nkeys = [], [], 0, 0
        for p in parts:
            key_ends.append(p.key_ends + nbytes)
            row_ends.append(p.row_ends + nkeys)
            nbytes += len(p.blob)
            nkeys += len(p.key_ends)
        return cls(
            b"".join(p.blob for p in parts),
            np.concatenate(key_ends) if key_ends else np.zeros(0, np.int64),
            np.concatenate(row_ends) if row_ends else np.zeros(0, np.int64),
        )

    def _span(self, start: int, end: int) -> KeyTable:
        """Rows [start, end)."""
        k0 = int(self.row_ends[start - 1]) if start else 0
        k1 = int(self.row_ends[end - 1]) if end else 0
        b0 = int(self.key_ends[k0 - 1]) if k0 else 0
        b1 = int(self.key_ends[k1 - 1]) if k1 else 0
        return KeyTable(self.blob[b0:b1], self.key_ends[k0:k1] - b0, self.row_ends[start:end] - k0)

    def take(self, rows: np.ndarray) -> KeyTable:
        """The keys of these rows, in this order (cheapest when they come in runs of consecutive rows)."""
        rows = np.asarray(rows, np.intp)
        if not len(rows):
            return KeyTable.of([])
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts, ends = np.r_[0, breaks], np.r_[breaks, len(rows)]
        return KeyTable.concat(
            [self._span(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, ends, strict=True)]
        )

    def __len__(self) -> int:
        return len(self.row_ends)

    @overload
    def __getitem__(self, i: int) -> tuple[str, ...]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, ...]]: ...
    def __getitem__(self, i: int | slice) -> tuple[str, ...] | list[tuple[str, ...]]:
        if isinstance(i, slice):
            return [self[r] for r in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k0 = int(self.row_ends[i - 1]) if i else 0
        k1 = int(self.row_ends[i])
        if k1 == k0:
            return ()
        ends = self.key_ends[k0:k1].tolist()
        starts = [int(self.key_ends[k0 - 1]) if k0 else 0, *ends[:-1]]
        return tuple(self.blob[a:b].decode(*_UTF8) for a, b in zip(starts, ends, strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyTable | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return len(self.blob) + int(self.key_ends.nbytes) + int(self.row_ends.nbytes)

    def under(self, prefix: str) -> np.ndarray:
        """Per row: whether any of its keys starts with prefix."""
        p = np.frombuffer(prefix.encode(*_UTF8), np.uint8)
        starts = np.r_[np.int64(0), self.key_ends[:-1]] if len(self.key_ends) else self.key_ends
        hit = np.flatnonzero(self.key_ends - starts >= len(p))
        blob = np.frombuffer(self.blob, np.uint8)
        for j, byte in enumerate(p):  # one pass per byte of the prefix, over the keys still matching
            hit = hit[blob[starts[hit] + j] == byte]
        counts = np.diff(self.row_ends, prepend=np.int64(0))
        row_of_key = np.repeat(np.arange(len(self), dtype=np.intp), counts)
        mask = np.zeros(len(self), bool)
        mask[row_of_key[hit]] = True
        return mask


def digests(tokens: Sequence[str]) -> np.ndarray:
    """A 16-byte digest of each version token (BLAKE2b): what the index keeps of a row's version."""
    if not tokens:
        return np.empty(0, "S16")
    return np.array([hashlib.blake2b(t.encode(*_UTF8), digest_size=16).digest() for t in tokens], "S16")


class Listing(Mapping[str, str]):
    """Every live id with its version token (what a RowSource's refresh lists), held as RowIds and, per row, the
    number of its token among the distinct tokens (rows of one segment share one)."""

    def __init__(self, ids: RowIds, codes: np.ndarray, tokens: list[str]) -> None:
        self.ids = ids
        self.codes = codes
        self.tokens = tokens

    @classmethod
    def of(cls, versions: Mapping[str, str]) -> Listing:
        """The listing of an id -> token mapping."""
        if isinstance(versions, Listing):
            return versions
        numbers: dict[str, int] = {}
        codes = np.fromiter((numbers.setdefault(v, len(numbers)) for v in versions.values()), np.int64, len(versions))
        return cls(RowIds.of(list(versions)), codes, list(numbers))

    def __getitem__(self, key: str) -> str:
        row = int(self.ids.find([key])[0])
        if row < 0:
            raise KeyError(key)
        return self.tokens[int(self.codes[row])]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def digests(self) -> np.ndarray:
        """Each row's version digest (see digests)."""
        return digests(self.tokens)[self.codes] if len(self.codes) else np.empty(0, "S16")


def live_rows(segments: Sequence[tuple[RowIds, Sequence[str]]]) -> list[np.ndarray]:
    """Which rows of each segment (its ids, and the ids it deletes from the segments before it) are live: an id's
    row in the last segment that holds it, unless a later segment deletes it (pictrace.index.segments.fold)."""
    parts: list[RowIds] = []
    numbers: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for n, (ids, deleted) in enumerate(segments):  # in order: tombstones first, then the rows, as fold() does
        if deleted:
            parts.append(RowIds.of(list(deleted)))
            numbers.append(np.full(len(deleted), n, np.int32))
            rows.append(np.full(len(deleted), -1, np.int32))
        parts.append(ids)
        numbers.append(np.full(len(ids), n, np.int32))
        rows.append(np.arange(len(ids), dtype=np.int32))
    live = [np.zeros(len(ids), bool) for ids, _ in segments]
    every = RowIds.concat(parts)
    if not len(every):
        return live
    order = np.argsort(every.packed, kind="stable")  # equal ids stay in the order they were applied
    ordered = every.packed[order]
    last = np.ones(len(order), bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    pick = order[last]
    del every, order, ordered, last
    segment, row = np.concatenate(numbers)[pick], np.concatenate(rows)[pick]
    for n, mask in enumerate(live):
        mask[row[(segment == n) & (row >= 0)]] = True
    return live
