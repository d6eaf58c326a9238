"""Amazon S3 Vectors as the index's scale-out backend: the embeddings live in a vector index, not in memory.

Each indexed image is one vector: its key is the image id (SHA-256), cosine distance, and its metadata is
    keys      the image keys, sorted (non-filterable), as many as fit in METADATA_BUDGET with the folders
    folders   folder prefixes of the keys ("images/", "images/2019/", ...): the only filterable metadata, so a
              search can be confined to a folder or a tenant ($eq on a list matches any element)
The id is not repeated in the metadata: the vector key is the id, and metadata counts against the limits.

Over ~400 lines on purpose: the service's limits, the client that keeps within them and the mirror that uses it
are read together (each limit next to the code that respects it).

Limits of the service (https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-limitations.html) and how
this module stays within them, by construction rather than by hoping:
    request payload ≤ 20 MiB      PutVectors batches are cut by their serialised JSON bytes (REQUEST_BUDGET,
                                  18 MiB: margin for headers) as well as by count (≤ 500 vectors)
    filterable metadata ≤ 2 KB    only `folders`, kept within FILTERABLE_BUDGET bytes of JSON: the shallowest
                                  folders first, then by name; deeper ones that do not fit are left out, so a
                                  prefix search on such a folder misses that image (see folders_within)
    total metadata ≤ 40 KB        keys kept in sorted order while the whole metadata fits METADATA_BUDGET; the
                                  entry in S3 keeps every key (search shows the first ones)
    GetVectors ≤ 100 keys, DeleteVectors ≤ 500 keys, ListVectors ≤ 1,000 per page
    QueryVectors topK ≤ 10,000    answered in pages: nextToken is followed until topK results or no token
    cosine refuses zero vectors   refused_vector() says why; ingest refuses them before anything is written
A filtered query asks for queryMode ENHANCED (the filter is applied before the search), so a folder holding few
images still gets topK results on an index in the older CLASSIC mode.

Entries stay the source of truth in S3 (with the rerank features). Ingest mirrors every change at once (mirror,
the IndexStore's change observer); the scheduled compact function mirrors whatever its change markers name
(pictrace.index.compaction), so a mirror write lost to a crash or a race is repaired within one schedule period. A
vector S3 Vectors refuses (ValidationException) is recorded (IndexStore.record_vector_refused) and skipped, so one
bad item never blocks the others or the compaction. backfill() mirrors the whole index, for a
stack switched to this backend after images were indexed (`pictrace vectors-backfill`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from pictrace.errors import BadRequest
from pictrace.index.layout import Entry
from pictrace.index.rows import RowSource
from pictrace.index.store import IndexStore
from pictrace.storage import ProcessClients, aws_region, new_client

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 20 * 2**20  # the service's request payload limit
REQUEST_BUDGET = 18 * 2**20  # what a PutVectors body may serialise to here (headers and rounding: the margin)
PUT_BATCH = 500  # vectors per PutVectors
DELETE_BATCH = 500  # keys per DeleteVectors
GET_BATCH = 100  # keys per GetVectors
LIST_PAGE = 1000  # vectors per ListVectors page
MAX_TOP_K = 10_000  # QueryVectors' topK (answered in pages)
FILTERABLE_LIMIT = 2048  # bytes of filterable metadata per vector
METADATA_LIMIT = 40 * 1024  # bytes of metadata (filterable + non-filterable) per vector
FILTERABLE_BUDGET = 1800  # what `folders` may serialise to here (the service's own count is not documented)
METADATA_BUDGET = 36 * 1024
NON_FILTERABLE = ["keys"]
_SPLIT_ON = {"ValidationException", "RequestEntityTooLargeException", "413"}  # a batch S3 Vectors refused as a whole


class VectorRefused(BadRequest):
    """A vector S3 Vectors would refuse (all zeros under cosine, NaN or infinity); the message says which."""


def _json_bytes(value: Any) -> int:
    """Bytes of value as botocore's JSON serialiser writes it (default separators, ASCII escapes)."""
    return len(json.dumps(value).encode())


def _make_s3vectors_client(region: str | None) -> Any:
    return new_client("s3vectors", region_name=aws_region(region))


#: One boto3 s3vectors client per process (honours AWS_ENDPOINT_URL_S3VECTORS).
s3vectors_client = ProcessClients(_make_s3vectors_client)


def folders(keys: tuple[str, ...] | list[str]) -> list[str]:
    """Every folder prefix of the keys, sorted: images/a/b.jpg -> images/, images/a/."""
    out: set[str] = set()
    for key in keys:
        parts = key.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    return sorted(out)


def folders_within(keys: tuple[str, ...] | list[str], budget: int = FILTERABLE_BUDGET) -> list[str]:
    """The folders indexed for prefix filters: shallowest first, then by name, while {"folders": [...]} fits the
    budget in JSON bytes. A folder left out is always deeper than (or as deep as, and after) every one kept."""
    kept: list[str] = []
    size = _json_bytes({"folders": []})
    for folder in sorted(folders(keys), key=lambda f: (f.count("/"), f)):
        extra = _json_bytes(folder) + (2 if kept else 0)  # ", " between list items
        if size + extra > budget:
            break
        kept.append(folder)
        size += extra
    return kept


def metadata(keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A vector's metadata for these image keys, within FILTERABLE_BUDGET and METADATA_BUDGET by construction."""
    meta: dict[str, Any] = {"folders": folders_within(keys), "keys": []}
    size = _json_bytes(meta)
    for key in sorted(keys):
        extra = _json_bytes(key) + (2 if meta["keys"] else 0)
        if size + extra > METADATA_BUDGET:
            logger.warning("vector metadata holds %d of %d keys (40 KB limit)", len(meta["keys"]), len(keys))
            break
        meta["keys"].append(key)
        size += extra
    return meta


def refused_vector(vector: np.ndarray) -> str | None:
    """Why S3 Vectors (cosine) would refuse this embedding, or None: all zeros, or NaN/infinite values."""
    v = np.asarray(vector, dtype=np.float32)
    if v.size == 0:
        return "the embedding is empty"
    if not np.all(np.isfinite(v)):
        return "the embedding has NaN or infinite values"
    if not np.any(v):
        return "the embedding is all zeros (no cosine similarity is defined for it)"
    return None


@dataclass(frozen=True)
class Item:
    """What one vector is made of: the image id, its keys and its embedding."""

    id: str
    keys: tuple[str, ...]
    embedding: np.ndarray

    @classmethod
    def of(cls, entry: Entry) -> Item:
        """The vector of an index entry."""
        return cls(entry.id, entry.keys, entry.embedding)

    def request(self) -> dict[str, Any]:
        """This vector as PutVectors takes it; VectorRefused if the service would refuse it."""
        reason = refused_vector(self.embedding)
        if reason is not None:
            raise VectorRefused(f"vector {self.id}: {reason}")
        data = [float(x) for x in np.asarray(self.embedding, dtype=np.float32)]
        return {"key": self.id, "data": {"float32": data}, "metadata": metadata(self.keys)}


@dataclass(frozen=True)
class Neighbour:
    """One QueryVectors answer."""

    id: str
    cosine: float
    keys: tuple[str, ...]


@dataclass
class PutResult:
    """What a put did: vectors written, PutVectors calls made, and ids refused with the reason."""

    put: int = 0
    requests: int = 0
    refused: dict[str, str] = field(default_factory=dict)


def parse_index_arn(arn: str) -> tuple[str, str, str]:
    """(vector bucket ARN, bucket name, index name) of an index ARN (…:bucket/<bucket>/index/<index>)."""
    head, sep, index = arn.partition("/index/")
    bucket = head.rpartition(":bucket/")[2]
    if not sep or not index or not bucket or ":bucket/" not in head:
        raise BadRequest(f"not an S3 Vectors index ARN: {arn!r}")
    return head, bucket, index


class VectorIndex:
    """One S3 Vectors index (bucket and index name, or the index ARN): the operations PicTrace needs."""

    def __init__(self, bucket: str, index: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.index = index
        self._client = client

    @property
    def client(self) -> Any:
        """The s3vectors client: the one given, else the process's (s3vectors_client, renewed by its cache_clear)."""
        return self._client if self._client is not None else s3vectors_client()

    def _where(self) -> dict[str, str]:
        if self.index.startswith("arn:"):
            return {"indexArn": self.index}
        return {"vectorBucketName": self.bucket, "indexName": self.index}

    def create(self, dimension: int) -> None:
        """Create the vector bucket and index (the template does this in AWS; local stacks and tests call it)."""
        if self.index.startswith("arn:"):  # CreateIndex names the bucket (or its ARN) and the index, never indexArn
            bucket_arn, bucket, index = parse_index_arn(self.index)
            where: dict[str, str] = {"vectorBucketArn": bucket_arn, "indexName": index}
        else:
            bucket, where = self.bucket, {"vectorBucketName": self.bucket, "indexName": self.index}
        try:
            self.client.create_vector_bucket(vectorBucketName=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
        self.client.create_index(
            **where,
            dataType="float32",
            dimension=dimension,
            distanceMetric="cosine",
            metadataConfiguration={"nonFilterableMetadataKeys": NON_FILTERABLE},
        )

    def put(self, entries: Iterable[Entry | Item], budget: int = REQUEST_BUDGET) -> PutResult:
        """Insert or replace the vectors with their current keys, in requests of at most PUT_BATCH vectors and
        `budget` bytes. Vectors the service refuses are left out and listed in the result (never raised)."""
        result = PutResult()
        envelope = _json_bytes({**self._where(), "vectors": []})
        batch: list[dict[str, Any]] = []
        size = envelope
        for e in entries:
            item = Item.of(e) if isinstance(e, Entry) else e
            try:
                vector = item.request()
            except VectorRefused as exc:
                result.refused[item.id] = str(exc)
                continue
            vector_bytes = _json_bytes(vector)
            if batch and (len(batch) == PUT_BATCH or size + 2 + vector_bytes > budget):  # 2: the ", " before it
                self._put_batch(batch, result)
                batch, size = [], envelope
            size += vector_bytes + (2 if batch else 0)
            batch.append(vector)
        if batch:
            self._put_batch(batch, result)
        for i, reason in result.refused.items():
            logger.error("S3 Vectors refused vector %s, skipped: %s", i, reason)
        return result

    def _put_batch(self, batch: list[dict[str, Any]], result: PutResult) -> None:
        """One PutVectors; a batch refused as invalid is halved until the vectors at fault stand alone."""
        try:
            result.requests += 1
            self.client.put_vectors(**self._where(), vectors=batch)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if error.get("Code") not in _SPLIT_ON and status not in _SPLIT_ON:
                raise  # throttling, 5xx, access: the whole call is retried later (markers stay)
            if len(batch) == 1:
                result.refused[batch[0]["key"]] = f"{error.get('Code')}: {error.get('Message')}"
                return
            half = len(batch) // 2
            self._put_batch(batch[:half], result)
            self._put_batch(batch[half:], result)
            return
        result.put += len(batch)

    def delete(self, ids: list[str]) -> None:
        """Remove vectors (absent ones are ignored)."""
        for start in range(0, len(ids), DELETE_BATCH):
            self.client.delete_vectors(**self._where(), keys=ids[start : start + DELETE_BATCH])

    def get(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """id -> keys of the vectors that exist."""
        found: dict[str, tuple[str, ...]] = {}
        for start in range(0, len(ids), GET_BATCH):
            response = self.client.get_vectors(
                **self._where(), keys=ids[start : start + GET_BATCH], returnData=False, returnMetadata=True
            )
            found.update({v["key"]: tuple(v.get("metadata", {}).get("keys", ())) for v in response.get("vectors", [])})
        return found

    def ids(self) -> Iterator[str]:
        """Every vector key (paginated ListVectors)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {**self._where(), "maxResults": LIST_PAGE}
            if token:
                kwargs["nextToken"] = token
            response = self.client.list_vectors(**kwargs)
            for v in response.get("vectors", []):
                yield str(v["key"])
            token = response.get("nextToken")
            if not token:
                return

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None) -> list[Neighbour]:
        """The k nearest images by cosine (k ≤ MAX_TOP_K), best first; prefix: a folder ("images/2019/") to search
        in, applied before the search (queryMode ENHANCED). Every page of the answer is read."""
        k = min(k, MAX_TOP_K)
        kwargs: dict[str, Any] = {
            **self._where(),
            "topK": k,
            "queryVector": {"float32": [float(x) for x in np.asarray(vector, dtype=np.float32)]},
            "returnMetadata": True,
            "returnDistance": True,
        }
        if prefix:
            if not prefix.endswith("/"):
                raise BadRequest("with the S3 Vectors backend, prefix must be a folder (end with '/')")
            kwargs["filter"] = {"folders": {"$eq": prefix}}
            kwargs["queryMode"] = "ENHANCED"
        found: list[Neighbour] = []
        while True:
            response = self.client.query_vectors(**kwargs)
            found.extend(
                Neighbour(
                    str(v["key"]), 1.0 - float(v.get("distance", 1.0)), tuple(v.get("metadata", {}).get("keys", ()))
                )
                for v in response.get("vectors", [])
            )
            token = response.get("nextToken")
            if not token or len(found) >= k:
                return found[:k]
            kwargs["nextToken"] = token


@dataclass
class Mirrored:
    """What a mirror did: vectors put, vectors deleted, and ids S3 Vectors refused (recorded and skipped)."""

    put: int = 0
    deleted: int = 0
    refused: dict[str, str] = field(default_factory=dict)


def mirror(vectors: VectorIndex, index_store: IndexStore, ids: list[str]) -> Mirrored:
    """Make the vectors of these ids what their entries are now (put, or delete where the entry is gone).

    A vector the service refuses is recorded (IndexStore.record_vector_refused) and skipped: it never stops the
    others.
    """
    found = index_store.get_entries(ids)
    present = [e for e in found.values() if e is not None]
    gone = [i for i, e in found.items() if e is None]
    done = Mirrored()
    if present:
        put = vectors.put(present)
        done.put, done.refused = put.put, put.refused
        index_store.record_vector_refused(put.refused)
        vectors.delete(list(put.refused))  # an older vector of a refused entry would hold stale keys
    if gone:
        vectors.delete(gone)
        done.deleted = len(gone)
    return done


def reconcile(vectors: VectorIndex, index_store: IndexStore, remove_markers: bool = True) -> dict[str, int]:
    """Mirror every changed entry (the change markers) into the vector index, then drop the markers it read.

    A marker is removed only if unchanged since it was listed, so a change racing this run is mirrored next time.
    remove_markers=False: leave them to the compaction that runs next (pictrace.index.backend.compact does both).
    """
    markers = index_store.changes()
    done = mirror(vectors, index_store, list(markers))
    left = index_store.drop_changes(markers) if remove_markers else 0
    result = {"put": done.put, "deleted": done.deleted, "refused": len(done.refused), "markers_left": left}
    logger.info("reconciled the vector index", extra=result)
    return result


def backfill(vectors: VectorIndex, index_store: IndexStore, source: RowSource, prune: bool = True) -> dict[str, int]:
    """Mirror the whole index (every row the source has) into the vector index: for a stack switched to S3 Vectors
    after images were indexed.

    Idempotent: every indexed image is put again. What the long put phase may have got wrong is decided against the
    index as it is after it, never against the ids read at the start: the source is read again once the put phase
    (and, with prune, the listing of the vectors) is over, and every id that is new, changed or gone since the
    start, and every listed vector the index no longer holds, is mirrored as its entry is then (mirror: put if the
    entry exists, deleted if not). So an image indexed meanwhile keeps its vector, and one deleted meanwhile loses
    the vector this run put for it. prune: also delete vectors of images no longer indexed (needs ListVectors).
    Refused vectors are recorded and skipped, as in mirror.
    """
    before, load = source.refresh()
    put_ids: set[str] = set()

    def items() -> Iterator[Item]:
        for entry_id, keys, embedding in load(list(before)).items():
            put_ids.add(entry_id)
            yield Item(entry_id, keys, embedding)

    put = vectors.put(items())
    index_store.record_vector_refused(put.refused)
    vectors.delete(list(put.refused))  # a refused entry's older vector would hold stale keys
    unknown = [i for i in vectors.ids() if i not in put_ids] if prune else []  # stale, or indexed since the start
    now, _ = source.refresh()  # what is live at the prune, not at the start
    recheck = [i for i in now if now.get(i) != before.get(i)]  # new or changed since the start
    recheck += [i for i in put_ids if i not in now]  # gone since the start: this run may have put them back
    recheck += [i for i in unknown if i not in now]  # stale: not indexed now
    again = Mirrored()
    for start in range(0, len(recheck), PUT_BATCH):  # each as its entry is at this moment
        done = mirror(vectors, index_store, recheck[start : start + PUT_BATCH])
        again.put, again.deleted = again.put + done.put, again.deleted + done.deleted
        again.refused |= done.refused
    result = {
        "indexed": len(now),
        "put": put.put + again.put,
        "requests": put.requests,
        "refused": len(put.refused.keys() | again.refused.keys()),
        "deleted": again.deleted,
    }
    logger.info("backfilled the vector index", extra=result)
    return result
