"""Amazon S3 Vectors as the index's scale-out backend: the embeddings live in a vector index, not in memory.

Each indexed image is one vector, keyed by its id (SHA-256), cosine distance, with metadata:
    id        the image id (as the vector key)
    keys      the image keys (non-filterable: up to the 40 KB of metadata a vector may carry)
    folders   every folder prefix of every key ("images/", "images/2019/", ...): filterable, so a search can be
              confined to a folder or a tenant ($eq on a list matches any element)

Entries stay the source of truth in S3 (entries/<id>.npz, with the rerank features). Ingest mirrors every
change at once (put_entry / delete); the scheduled compact function reconciles from the change markers
(pictrace.segments), so a mirror write lost to a crash or a race is repaired within one schedule period.
QueryVectors answers at most 100 neighbours (topK ≤ 100): that bounds the shortlist with this backend.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import numpy as np
from botocore.exceptions import ClientError

from pictrace.errors import BadRequest
from pictrace.index import Entry, IndexStore

logger = logging.getLogger(__name__)

MAX_TOP_K = 100  # QueryVectors' limit
PUT_BATCH = 500  # PutVectors takes at most 500 vectors per call
NON_FILTERABLE = ["keys"]


@functools.lru_cache(maxsize=4)
def s3vectors_client(region: str | None = None) -> Any:
    """One boto3 s3vectors client per process (honours AWS_ENDPOINT_URL_S3VECTORS)."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3vectors", region_name=region)


def folders(keys: tuple[str, ...] | list[str]) -> list[str]:
    """Every folder prefix of the keys, sorted: images/a/b.jpg -> images/, images/a/."""
    out: set[str] = set()
    for key in keys:
        parts = key.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
    return sorted(out)


@dataclass(frozen=True)
class Neighbour:
    """One QueryVectors answer."""

    id: str
    cosine: float
    keys: tuple[str, ...]


class VectorIndex:
    """One S3 Vectors index (bucket and index name, or the index ARN): the operations PicTrace needs."""

    def __init__(self, bucket: str, index: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.index = index
        self._client = client

    @property
    def client(self) -> Any:
        """The s3vectors client, created on first use."""
        if self._client is None:
            self._client = s3vectors_client()
        return self._client

    def _where(self) -> dict[str, str]:
        if self.index.startswith("arn:"):
            return {"indexArn": self.index}
        return {"vectorBucketName": self.bucket, "indexName": self.index}

    def create(self, dimension: int) -> None:
        """Create the vector bucket and index (the template does this in AWS; local stacks and tests call it)."""
        try:
            self.client.create_vector_bucket(vectorBucketName=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
        self.client.create_index(
            **self._where(),
            dataType="float32",
            dimension=dimension,
            distanceMetric="cosine",
            metadataConfiguration={"nonFilterableMetadataKeys": NON_FILTERABLE},
        )

    def put(self, entries: list[Entry]) -> None:
        """Insert or replace the entries' vectors with their current keys."""
        for start in range(0, len(entries), PUT_BATCH):
            vectors = [
                {
                    "key": e.id,
                    "data": {"float32": [float(x) for x in np.asarray(e.embedding, dtype=np.float32)]},
                    "metadata": {"id": e.id, "keys": list(e.keys), "folders": folders(e.keys)},
                }
                for e in entries[start : start + PUT_BATCH]
            ]
            self.client.put_vectors(**self._where(), vectors=vectors)

    def delete(self, ids: list[str]) -> None:
        """Remove vectors (absent ones are ignored)."""
        for start in range(0, len(ids), PUT_BATCH):
            self.client.delete_vectors(**self._where(), keys=ids[start : start + PUT_BATCH])

    def get(self, ids: list[str]) -> dict[str, tuple[str, ...]]:
        """id -> keys of the vectors that exist."""
        if not ids:
            return {}
        response = self.client.get_vectors(**self._where(), keys=ids, returnData=False, returnMetadata=True)
        return {v["key"]: tuple(v.get("metadata", {}).get("keys", ())) for v in response.get("vectors", [])}

    def ids(self) -> Iterator[str]:
        """Every vector key (paginated ListVectors)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {**self._where(), "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            response = self.client.list_vectors(**kwargs)
            for v in response.get("vectors", []):
                yield str(v["key"])
            token = response.get("nextToken")
            if not token:
                return

    def query(self, vector: np.ndarray, k: int, prefix: str | None = None) -> list[Neighbour]:
        """The k nearest images by cosine (k ≤ 100), best first; prefix: a folder ("images/2019/") to search in."""
        kwargs: dict[str, Any] = {
            **self._where(),
            "topK": min(k, MAX_TOP_K),
            "queryVector": {"float32": [float(x) for x in np.asarray(vector, dtype=np.float32)]},
            "returnMetadata": True,
            "returnDistance": True,
        }
        if prefix:
            if not prefix.endswith("/"):
                raise BadRequest("with the S3 Vectors backend, prefix must be a folder (end with '/')")
            kwargs["filter"] = {"folders": {"$eq": prefix}}
        response = self.client.query_vectors(**kwargs)
        return [
            Neighbour(str(v["key"]), 1.0 - float(v.get("distance", 1.0)), tuple(v.get("metadata", {}).get("keys", ())))
            for v in response.get("vectors", [])
        ]


def mirror(vectors: VectorIndex, index_store: IndexStore, ids: list[str]) -> tuple[int, int]:
    """Make the vectors of these ids what their entries are now (put, or delete where the entry is gone)."""
    from pictrace.segments import SegmentStore

    found = SegmentStore(index_store).get_entries(ids)
    present = [e for e in found.values() if e is not None]
    gone = [i for i, e in found.items() if e is None]
    if present:
        vectors.put(present)
    if gone:
        vectors.delete(gone)
    return len(present), len(gone)


def reconcile(vectors: VectorIndex, index_store: IndexStore, remove_markers: bool = True) -> dict[str, int]:
    """Mirror every changed entry (the change markers) into the vector index, then drop the markers it read.

    A marker is removed only if unchanged since it was listed, so a change racing this run is mirrored next time.
    remove_markers=False: leave them to the compaction that runs next (pictrace.segments.compact does both).
    """
    markers = {
        k[len(index_store.changes_prefix()) :]: e for k, e, _ in index_store.store.list(index_store.changes_prefix())
    }
    put, deleted = mirror(vectors, index_store, list(markers))
    left = sum(
        not index_store.store.delete(f"{index_store.changes_prefix()}{i}", if_match=etag)
        for i, etag in markers.items()
        if remove_markers
    )
    result = {"put": put, "deleted": deleted, "markers_left": left}
    logger.info("reconciled the vector index", extra=result)
    return result
