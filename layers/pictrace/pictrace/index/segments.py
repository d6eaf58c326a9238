"""Segments: the index packed into a few large immutable objects, listed by a manifest, with safe compaction.

The segments, their manifest and the change markers (key names: pictrace.index.layout): the manifest lists the
segments that make up the packed index, oldest first (conditional writes only); a segment is immutable and holds
ids, keys and named per-image float matrices (rows in id order), plus the ids it deletes from the segments before
it (tombstones); a change marker is written after every change to an entry (create, key added or removed,
deletion), for entries newer than the manifest; compaction (pictrace.index.compaction) folds them in and removes
the markers.

A cold reader lists the change markers, then reads the manifest and the segments (in parallel), then only the changed
entries: O(segments + changes) objects, not O(entries). Listing changes before the manifest matters: compaction
writes the manifest before it removes markers, so a reader sees every change either as a marker or in a segment.

How segments are written and merged, and why no change is lost: pictrace.index.compaction.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pictrace.errors import NotFound
from pictrace.index.layout import now_iso
from pictrace.index.packed import KeyTable, Listing, RowIds, live_rows
from pictrace.index.rows import Block, EntryRows, Loaded, Loader, Row, RowSource, Versions, read_rows, vector_dtype
from pictrace.index.store import IndexStore, parallel

logger = logging.getLogger(__name__)

SEGMENT_VERSION = 1
MANIFEST_VERSION = 1
PART_BYTES = 16 * 2**20  # segments larger than this are read with parallel ranged GETs of this size


@dataclass
class Segment:
    """Ids, keys and named matrices (one row per id), and the ids it deletes from older segments."""

    ids: list[str]
    keys: list[tuple[str, ...]]
    matrices: dict[str, np.ndarray]
    deleted: list[str] = field(default_factory=list)
    released: bool = False  # no matrices in memory: read only the header, or dropped once copied (SegmentedView)
    widths: dict[str, int] = field(default_factory=dict)  # of the matrices, when they are not in memory

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dims(self) -> dict[str, int]:
        """Width of each named matrix."""
        return {name: m.shape[1] for name, m in self.matrices.items()} if self.matrices else dict(self.widths)

    def release(self) -> None:
        """Drop the matrices, keep ids, keys, tombstones (all that folding needs) and the matrices' widths."""
        if self.ids:
            self.widths, self.matrices, self.released = self.dims, {}, True

    def row(self, i: int) -> Row:
        """Row i as the in-memory index takes it: views into the matrices (no copy per row)."""
        return Row(self.keys[i], {name: m[i] for name, m in self.matrices.items()})

    def to_bytes(self, dtype: str = "float32") -> bytes:
        """npz, no pickles; float matrices stored as float16 or float32, the others as they are (rows.VECTOR_DTYPES)."""
        header: dict[str, Any] = {"version": SEGMENT_VERSION, "ids": self.ids, "keys": [list(k) for k in self.keys]}
        header["deleted"] = self.deleted
        header["dims"] = self.dims
        arrays: dict[str, Any] = {
            f"m_{name}": m.astype(dtype if vector_dtype(name).kind == "f" else vector_dtype(name))
            for name, m in self.matrices.items()
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        """Parse what to_bytes wrote; matrices keep the stored dtype (the index converts them as it copies)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            matrices = {n[2:]: npz[n] for n in npz.files if n.startswith("m_")}
        keys = [tuple(k) for k in header["keys"]]
        return cls(list(header["ids"]), keys, matrices, list(header.get("deleted", [])))

    @classmethod
    def from_header(cls, data: bytes) -> Segment:
        """The segment without its matrices, from the header member's bytes (see header_range)."""
        header = json.loads(np.load(io.BytesIO(data), allow_pickle=False).tobytes().decode())
        keys = [tuple(k) for k in header["keys"]]
        widths = {name: int(d) for name, d in header["dims"].items()}
        return cls(list(header["ids"]), keys, {}, list(header.get("deleted", [])), released=True, widths=widths)

    @classmethod
    def from_rows(cls, rows: dict[str, Row], deleted: Iterable[str] = ()) -> Segment:
        """A segment holding these rows (sorted by id); a vector some rows lack (details not made yet) is zeros."""
        ids = sorted(rows)
        widths = {n: len(v) for r in rows.values() for n, v in r.vectors.items()}
        matrices = {}
        for name, width in sorted(widths.items()):
            out = matrices[name] = np.zeros((len(ids), width), vector_dtype(name))
            for n, i in enumerate(ids):
                if (vector := rows[i].vectors.get(name)) is not None:
                    out[n] = vector
        return cls(ids, [rows[i].keys for i in ids], matrices, sorted(deleted))


def header_range(body: bytes) -> tuple[int, int]:
    """Where the header member (ids, keys, tombstones, widths) lies in a segment's bytes: [start, end)."""
    info = zipfile.ZipFile(io.BytesIO(body)).getinfo("header.npy")
    local = info.header_offset
    name_len = int.from_bytes(body[local + 26 : local + 28], "little")
    extra_len = int.from_bytes(body[local + 28 : local + 30], "little")
    start = local + 30 + name_len + extra_len
    return start, start + info.compress_size


def manifest_entry(key: str, seg: Segment, body: bytes) -> dict[str, Any]:
    """How the manifest lists a segment: rows, tombstones, bytes and the header's byte range (for cheap reads)."""
    return {
        "key": key,
        "count": len(seg),
        "deleted": len(seg.deleted),
        "bytes": len(body),
        "header": list(header_range(body)),
        "at": now_iso(),
    }


def segment_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    """Segment key -> bytes, for the segments whose manifest entry records it (manifests before it did not)."""
    return {m["key"]: int(m["bytes"]) for m in manifest.get("segments", []) if "bytes" in m}


def fold(segments: Iterable[Segment]) -> dict[str, tuple[Segment, int]]:
    """id -> (segment, row) of the live rows: later segments override earlier ones and delete what they list."""
    live: dict[str, tuple[Segment, int]] = {}
    for seg in segments:
        for i in seg.deleted:
            live.pop(i, None)
        for row, i in enumerate(seg.ids):
            live[i] = (seg, row)
    return live


class SegmentStore:
    """The manifest and the segments in S3."""

    def __init__(self, index_store: IndexStore, workers: int = 16, part_bytes: int = PART_BYTES) -> None:
        self.index_store = index_store
        self.store = index_store.store
        self.layout = index_store.layout
        self.workers = workers
        self.part_bytes = part_bytes

    def manifest(self) -> tuple[dict[str, Any], str] | None:
        """The manifest and its ETag, or None when nothing has been compacted yet."""
        try:
            obj = self.store.get(self.layout.manifest_key)
        except NotFound:
            return None
        manifest: dict[str, Any] = json.loads(obj.body)
        return manifest, obj.etag

    def get_segments(self, keys: list[str], sizes: Mapping[str, int] | None = None) -> dict[str, Segment]:
        """Several segments (see iter_segments)."""
        return dict(self.iter_segments(keys, sizes))

    def iter_headers(self, ranges: Mapping[str, tuple[int, int]]) -> Iterator[tuple[str, Segment]]:
        """(key, segment without its matrices) in the order of ranges: the headers read in parallel, each parsed
        only when the previous one has been taken (so one header's Python objects exist at a time)."""
        keys = list(ranges)
        bodies = parallel(lambda key: self.store.get_range(key, *ranges[key]), keys, self.workers)
        for n, key in enumerate(keys):
            body, bodies[n] = bodies[n], b""
            yield key, Segment.from_header(body)

    def iter_segments(self, keys: list[str], sizes: Mapping[str, int] | None = None) -> Iterator[tuple[str, Segment]]:
        """(key, segment) in the order of keys, their bytes read in parallel and each parsed once it has arrived.

        sizes: segment bytes as the manifest lists them; a segment larger than part_bytes whose size is known is
        read as parallel ranged GETs of part_bytes (S3's advice for throughput), the others with one GET each.
        At most workers + 4 parts are in flight, so memory beyond the segment being parsed stays bounded.
        """
        sizes = sizes or {}
        parts = [(key, part) for key in keys for part in self._parts(sizes.get(key))]
        if not parts:
            return
        queued = iter(parts)
        pending: deque[tuple[str, Future[bytes]]] = deque()
        chunks: list[bytes] = []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(parts))) as pool:

            def top_up() -> None:
                while len(pending) < self.workers + 4 and (part := next(queued, None)) is not None:
                    pending.append((part[0], pool.submit(self._read, *part)))

            top_up()
            while pending:
                key, future = pending.popleft()
                chunks.append(future.result())
                top_up()
                if not pending or pending[0][0] != key:  # that was the segment's last part
                    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    chunks = []
                    yield key, Segment.from_bytes(body)
                    del body

    def _parts(self, size: int | None) -> list[tuple[int, int] | None]:
        if size is None or size <= self.part_bytes:
            return [None]
        return [(start, min(start + self.part_bytes, size)) for start in range(0, size, self.part_bytes)]

    def _read(self, key: str, part: tuple[int, int] | None) -> bytes:
        return self.store.get(key).body if part is None else self.store.get_range(key, *part)


@dataclass
class _Held:
    """A segment as SegmentedView keeps it: ids and keys packed, its tombstones and widths, and its matrices until
    the index has copied them (empty: read them again when needed)."""

    ids: RowIds
    keys: KeyTable
    deleted: list[str]
    dims: dict[str, int]
    matrices: dict[str, np.ndarray]

    @classmethod
    def of(cls, seg: Segment) -> _Held:
        """What the view keeps of a segment it has read (header only, or whole)."""
        ids = RowIds.of(seg.ids)
        if bool(np.all(ids.packed[1:] >= ids.packed[:-1])):  # rows in id order: no sort order kept
            ids = RowIds(ids.packed, ids.hexed, ordered=True)
        return cls(ids, KeyTable.of(seg.keys), list(seg.deleted), seg.dims, seg.matrices)


class SegmentedView(RowSource):
    """The rows of the segmented index, read cheaply: a RowSource (pictrace.index.rows).

    refresh() returns (versions, load): versions (a pictrace.index.packed.Listing) maps every live id to a token
    that changes whenever its row may have; load(ids) returns them as Loaded: changed entries as rows, segment rows
    as one block per segment, whose matrices are read (or taken from memory) one segment at a time while the index
    copies them. Before the first compaction (no manifest) the rows are the entries themselves (EntryRows); once a
    refresh has found no manifest, the next ones look for it first and list no change marker while there is none
    (compaction removes no entry, so the module docstring's order matters only once a manifest exists).

    Memory: a new segment whose manifest entry gives its header's byte range is read as that header only (ids,
    keys, tombstones: all that folding needs), kept packed; its matrices are read when its rows are loaded, and
    dropped once copied. So a cold load holds the index's matrices plus about one segment, not every segment twice.
    details: False for an index that holds no details (changed entries are read without theirs).
    """

    def __init__(self, segments: SegmentStore, details: bool = True) -> None:
        self.segments = segments
        self.details = details
        self._manifest_etag: str | None = None
        self._uncompacted = False  # the last refresh found no manifest
        self._loaded: dict[str, _Held] = {}  # in the manifest's order
        self._keys: list[str] = []
        self._live: list[np.ndarray] = []  # per segment in _keys: which of its rows are live
        self._missing: dict[str, str] = {}  # id -> marker ETag of changed entries found deleted
        self._sizes: dict[str, int] = {}
        self._entries = EntryRows(segments.index_store, details)

    def footprint(self) -> dict[str, int]:
        """Bytes the view holds beyond the index, by part: the segments' ids and keys, the folded live rows, and
        matrices not yet copied."""
        held = self._loaded.values()
        return {
            "view: segment ids": sum(h.ids.nbytes for h in held),
            "view: segment keys": sum(h.keys.nbytes for h in held),
            "view: live rows": sum(int(m.nbytes) for m in self._live),
            "view: matrices": sum(int(m.nbytes) for h in held for m in h.matrices.values()),
        }

    def refresh(self) -> tuple[Versions, Loader]:
        """See the class docstring."""
        s = self.segments
        if self._uncompacted and s.manifest() is None:  # still: the entries are the rows, markers would go unused
            return self._entries.refresh()
        markers = s.index_store.changes()  # before the manifest: see the module docstring
        current = s.manifest()
        self._uncompacted = current is None
        if current is None:
            return self._entries.refresh()
        manifest, etag = current
        if etag != self._manifest_etag:
            listed = manifest["segments"]
            keys = [m["key"] for m in listed]
            self._sizes = segment_sizes(manifest)
            new = [m for m in listed if m["key"] not in self._loaded]
            ranges = {m["key"]: (m["header"][0], m["header"][1]) for m in new if "header" in m}
            fresh = {k: _Held.of(seg) for k, seg in s.iter_headers(ranges)}  # packed one header at a time
            older = s.iter_segments([m["key"] for m in new if "header" not in m], self._sizes)  # older manifests
            fresh |= {k: _Held.of(seg) for k, seg in older}
            self._loaded = {k: self._loaded.get(k) or fresh[k] for k in keys}
            del fresh
            self._keys = keys
            self._live = live_rows([(self._loaded[k].ids, self._loaded[k].deleted) for k in keys])
            self._manifest_etag = etag
        listing = self._listing(markers)
        self._missing = {i: e for i, e in self._missing.items() if markers.get(i) == e}
        return listing, lambda ids: self._load(ids, listing)

    def _find(self, ids: RowIds) -> tuple[np.ndarray, np.ndarray]:
        """The segment number (in _keys) and row of each live id; -1, -1 for the others."""
        number = np.full(len(ids), -1, np.intp)
        row = np.full(len(ids), -1, np.intp)
        for n, key in enumerate(self._keys):
            found = self._loaded[key].ids.find(ids)
            hit = found >= 0
            hit[hit] = self._live[n][found[hit]]
            number[hit], row[hit] = n, found[hit]
        return number, row

    def _listing(self, markers: dict[str, str]) -> Listing:
        """Every live id with its token: "s:" + its segment's key, or "c:" + the ETag of its change marker."""
        tokens = ["s:" + k for k in self._keys]
        rows = [np.flatnonzero(m) for m in self._live]
        live = RowIds.concat([self._loaded[k].ids.take(r) for k, r in zip(self._keys, rows, strict=True)])
        codes = np.repeat(np.arange(len(rows), dtype=np.int64), [len(r) for r in rows])
        kept = np.ones(len(live), bool)
        extra: list[str] = []
        extra_codes: list[int] = []
        if markers:
            marked = list(markers)
            number, row = self._find(RowIds.of(marked))
            starts = np.cumsum([0, *(len(r) for r in rows)])
            for i, n, r in zip(marked, number.tolist(), row.tolist(), strict=True):
                at = int(starts[n] + np.searchsorted(rows[n], r)) if n >= 0 else -1  # its place in `live`
                marker_etag = markers[i]
                if self._missing.get(i) == marker_etag:  # read since that marker: deleted
                    if at >= 0:
                        kept[at] = False
                    continue
                tokens.append("c:" + marker_etag)
                if at >= 0:
                    codes[at] = len(tokens) - 1
                else:
                    extra.append(i)
                    extra_codes.append(len(tokens) - 1)
        if kept.all() and not extra:
            return Listing(live, codes, tokens)
        keep = np.flatnonzero(kept)
        ids = RowIds.concat([live.take(keep), RowIds.of(extra)])
        return Listing(ids, np.concatenate([codes[keep], np.array(extra_codes, np.int64)]), tokens)

    def _load(self, ids: list[str], listing: Listing) -> Loaded:
        asked = RowIds.of(ids)
        where = listing.ids.find(asked)
        assert bool((where >= 0).all()), "ids are loaded from the listing they came with"
        changed = listing.codes[where] >= len(self._keys)
        entry_ids = asked.take(np.flatnonzero(changed))
        rows = read_rows(self.segments.index_store, list(entry_ids), self.details)
        for i, row in rows.items():
            if row is None:
                self._missing[i] = listing[i][2:]
        from_segments = asked.take(np.flatnonzero(~changed))
        number, row_number = self._find(from_segments)
        assert bool((number >= 0).all()), "an id listed with a segment's token is live in it"
        order = np.lexsort((row_number, number))  # by segment, then by row
        blocks = []
        bounds = np.flatnonzero(np.diff(number[order])) + 1
        for part in np.split(order, bounds) if len(order) else []:
            key = self._keys[int(number[part[0]])]
            held = self._loaded[key]
            at = row_number[part]
            blocks.append(Block(key, from_segments.take(part), held.keys.take(at), at, dict(held.dims)))
        return Loaded(rows, blocks, self._matrices)

    def _matrices(self, blocks: list[Block]) -> Iterator[dict[str, np.ndarray]]:
        """Each block's segment matrices, in order: from memory (then dropped), else read with a window ahead."""
        reading = self.segments.iter_segments(
            [b.source for b in blocks if not self._loaded[b.source].matrices], self._sizes
        )
        for block in blocks:
            held = self._loaded[block.source]
            if not held.matrices:
                key, read = next(reading)
                assert key == block.source
                yield read.matrices
                del read
            else:
                yield held.matrices
                held.matrices = {}
        for held in self._loaded.values():
            held.matrices = {}
