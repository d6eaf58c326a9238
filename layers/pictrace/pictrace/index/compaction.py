"""Compaction: fold the change markers into new segments and merge the newest small ones, safely.

Compaction writes the changes as new segments of at most segment_rows rows. When more than max_segments of the
newest segments are short of segment_rows, it merges that tail (and the new rows) into full segments plus a rest:
full segments are never rewritten, so memory is bounded by the tail whatever N is, and the ids the tail deletes
stay as tombstones in the merged segment (they may live in the full ones before it). Deleted rows inside a full
segment stay there as dead bytes, hidden by those tombstones.

Compaction never loses a change: segments have fresh names (written if-none-match), the manifest is replaced
only if it still has the ETag the compactor read (a loser discards its segments and starts again), and a marker
is removed only if it still has the ETag the compactor read (every marker holds a nonce, so a change made after
the compactor read the entry leaves a marker with another ETag behind for the next compaction).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pictrace.index.layout import now_iso
from pictrace.index.rows import Row, read_rows
from pictrace.index.segments import MANIFEST_VERSION, Segment, SegmentStore, fold, manifest_entry, segment_sizes
from pictrace.index.store import ChangeObserver

logger = logging.getLogger(__name__)

RETIRED_GRACE_SECONDS = 3600.0  # a merged-away segment is deleted this long after (readers may still be loading it)


@dataclass
class CompactionResult:
    """What one compaction did."""

    folded: int = 0  # change markers folded into the new segment
    deleted: int = 0  # of which deletions (tombstones)
    segments: int = 0  # segments in the manifest afterwards
    merged: int = 0  # segments merged away
    written: list[str] = field(default_factory=list)
    attempts: int = 0
    markers_left: int = 0  # markers that changed again while compacting (folded next time)


class Compactor:
    """Folds change markers into a new segment and merges small segments; manifest replaced conditionally."""

    def __init__(
        self,
        segments: SegmentStore,
        *,
        dtype: str = "float32",
        max_segments: int = 8,
        segment_rows: int = 20_000,
        attempts: int = 10,
        on_fold: ChangeObserver | None = None,
    ) -> None:
        self.segments = segments
        self.on_fold = on_fold  # called with the changed ids before their markers go (the S3 Vectors mirror)
        self.dtype = dtype
        self.max_segments = max_segments
        self.segment_rows = segment_rows
        self.attempts = attempts

    def _chunks(self, rows: dict[str, Row], deleted: Iterable[str]) -> list[Segment]:
        """Rows (sorted by id) in segments of segment_rows, the tombstones on the first; none if nothing to write."""
        ordered, deleted = sorted(rows), sorted(deleted)
        starts = range(0, len(ordered), self.segment_rows)
        segments = [Segment.from_rows({i: rows[i] for i in ordered[a : a + self.segment_rows]}) for a in starts]
        if deleted:
            if not segments:
                segments = [Segment.from_rows({})]
            segments[0].deleted = deleted
        return segments

    def compact(self) -> CompactionResult:
        """One compaction; retried from scratch when another compactor replaced the manifest first."""
        for attempt in range(1, self.attempts + 1):
            result = self._attempt()
            if result is not None:
                result.attempts = attempt
                return result
            time.sleep(0.05 * attempt)
        raise RuntimeError(f"compaction lost the manifest race {self.attempts} times")

    def _attempt(self) -> CompactionResult | None:
        s = self.segments
        index_store = s.index_store
        markers = index_store.changes()
        current = s.manifest()
        manifest, etag = current if current is not None else ({"segments": [], "retired": []}, None)
        seg_keys: list[str] = [m["key"] for m in manifest["segments"]]
        ids = list(markers)
        if current is None:  # the first compaction: everything there is, markers or not
            ids = sorted(set(ids) | set(index_store.entry_ids()))
        listed_segments = [dict(m) for m in manifest["segments"]]
        # the newest segments short of segment_rows (a suffix: merges write full ones, then the rest, then new
        # ones come after); full segments are never rewritten, so a merge holds at most this tail in memory
        tail = 0
        while tail < len(listed_segments) and int(listed_segments[-1 - tail]["count"]) < self.segment_rows:
            tail += 1
        retired = [r for r in manifest.get("retired", [])]
        expired = [r for r in retired if time.time() - r["at"] > RETIRED_GRACE_SECONDS]
        if not ids and tail <= self.max_segments and not expired and current is not None:
            return CompactionResult(segments=len(seg_keys))
        if self.on_fold is not None and ids:
            self.on_fold(ids)
        read = read_rows(index_store, ids)
        rows = {i: row for i, row in read.items() if row is not None}
        gone = [i for i, row in read.items() if row is None]
        del read
        new_segments = [(s.layout.new_segment_key(), seg) for seg in self._chunks(rows, gone)]
        del rows
        merged: list[str] = []
        if tail + len(new_segments) > self.max_segments and tail:
            merged = [m["key"] for m in listed_segments[len(listed_segments) - tail :]]
            loaded = s.get_segments(merged, segment_sizes(manifest))
            suffix = [*(loaded[k] for k in merged), *(seg for _, seg in new_segments)]
            live = fold(suffix)
            # ids the suffix deletes must stay deleted in the older (full) segments it does not rewrite
            deleted: set[str] = set()
            if tail < len(listed_segments):
                deleted = set().union(*(seg.deleted for seg in suffix)) - set(live)
            new_segments = [
                (s.layout.new_segment_key(), seg)
                for seg in self._chunks({i: live[i][0].row(live[i][1]) for i in live}, deleted)
            ]
            del loaded, suffix, live
            listed_segments = listed_segments[: len(listed_segments) - tail]
        for key, seg in new_segments:
            body = seg.to_bytes(self.dtype)
            s.store.put(key, body, if_none_match=True)
            listed_segments.append(manifest_entry(key, seg, body))
            del body
        now = time.time()
        new_manifest = {
            "version": MANIFEST_VERSION,
            "generation": int(manifest.get("generation", 0)) + 1,
            "updated": now_iso(),
            "dtype": self.dtype,
            "segments": listed_segments,
            "retired": [r for r in retired if r not in expired] + [{"key": k, "at": now} for k in merged],
        }
        body = json.dumps(new_manifest, indent=1).encode()
        if etag is None:
            won = s.store.put(s.layout.manifest_key, body, if_none_match=True, content_type="application/json")
        else:
            won = s.store.put(s.layout.manifest_key, body, if_match=etag, content_type="application/json")
        if not won:
            logger.info("compaction: another compactor replaced the manifest first; starting again")
            for key, _ in new_segments:
                s.store.delete(key)
            return None
        for r in expired:
            s.store.delete(r["key"])
        left = index_store.drop_changes(markers)
        result = CompactionResult(
            folded=len(ids),
            deleted=len(gone),
            segments=len(listed_segments),
            merged=len(merged),
            written=[k for k, _ in new_segments],
            markers_left=left,
        )
        logger.info("compaction", extra=vars(result))
        return result
