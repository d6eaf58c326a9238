"""The index's S3 layout: every key name under the index prefix, how each is parsed back, and the entry format.

This module is the only place that knows the layout (tests/unit/test_architecture.py checks it):
    entries/<id>.npz              embedding, rerank features and metadata (keys, format, size) of one image,
                                  content-addressed by SHA-256 (Entry)
    keys/<sha256(key)>.json       which entry an image key currently points to (for removals)
    failures/<sha256(key)>.json   why an object under the images prefix could not be indexed
    changes/<id>                  written after every change to an entry: entries newer than the segments
    manifest.json                 the segments that make up the packed index, oldest first
    segments/<stamp>-<nonce>.npz  immutable packed rows (pictrace.index.segments)
    model.json                    the model whose embeddings the index holds (weights and width)
    vector-failures/<id>.json     why S3 Vectors refused an entry's vector (pictrace.index.vectors)
    copies/<id>/<other>.json      a copy link found between two entries, written under both ids (pictrace.copies)
    dismissed/<id>-<other>.json   a pair marked not a copy, the lower id first; kept by content ids across reindexing
    details/<id>.npy              the embeddings of an entry's details (pictrace.details), written after the entry by
                                  the details stage (pictrace.detailstage), deleted with it
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pictrace.rerank import Features

FORMAT_VERSION = 1

_ENTRIES = "entries/"
_KEYS = "keys/"
_FAILURES = "failures/"
_CHANGES = "changes/"
_SEGMENTS = "segments/"
_VECTOR_FAILURES = "vector-failures/"
_COPIES = "copies/"
_DISMISSED = "dismissed/"
_DETAILS = "details/"
_MANIFEST = "manifest.json"
_MODEL = "model.json"
_NPZ = ".npz"
_JSON = ".json"
_NPY = ".npy"


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def content_id(data: bytes) -> str:
    """The entry id of an image's bytes: their SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


def key_digest(key: str) -> str:
    """A fixed-length, S3-safe name for an image key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One indexed image."""

    id: str
    keys: tuple[str, ...]
    embedding: np.ndarray  # (d,) float32, unit length
    features: Features
    meta: dict[str, Any] = field(default_factory=dict)  # format, width, height, bytes, created, weights

    def to_bytes(self) -> bytes:
        """Serialise (npz, no pickles)."""
        header = json.dumps({"version": FORMAT_VERSION, "id": self.id, "keys": list(self.keys), **self.meta})
        arrays: dict[str, np.ndarray] = {
            "header": np.frombuffer(header.encode(), dtype=np.uint8),
            "embedding": self.embedding.astype(np.float32),
            "thumb": self.features.thumb,
            "keypoints": self.features.keypoints,
            "descriptors": self.features.descriptors,
        }
        if self.features.inner is not None:  # the photo it frames (pictrace.frames)
            arrays["inner"] = self.features.inner.astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs: a dict of arrays may hold allow_pickle
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse what to_bytes wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            inner = npz["inner"] if "inner" in npz.files else None  # entries written before frames have none
            features = Features(npz["thumb"], npz["keypoints"], npz["descriptors"], inner)
            embedding = npz["embedding"]
        entry_id = header.pop("id")
        keys = tuple(header.pop("keys"))
        header.pop("version", None)
        return cls(id=entry_id, keys=keys, embedding=embedding, features=features, meta=header)


def details_to_bytes(details: np.ndarray) -> bytes:
    """Serialise an entry's details (npy, float16, no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(details, np.float16), allow_pickle=False)
    return buf.getvalue()


def details_from_bytes(data: bytes) -> np.ndarray:
    """Parse what details_to_bytes wrote: (k, d) float16."""
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))


@dataclass(frozen=True)
class Layout:
    """Key names under one index prefix, and their parsers (None: not a key of that kind)."""

    prefix: str

    # --- entries
    @property
    def entries_prefix(self) -> str:
        """Where the entries live."""
        return f"{self.prefix}{_ENTRIES}"

    def entry_key(self, entry_id: str) -> str:
        """S3 key of an entry."""
        return f"{self.prefix}{_ENTRIES}{entry_id}{_NPZ}"

    def entry_id(self, key: str) -> str | None:
        """The entry id an S3 key under entries_prefix names."""
        if key.startswith(self.entries_prefix) and key.endswith(_NPZ):
            return key[len(self.entries_prefix) : -len(_NPZ)]
        return None

    @property
    def details_prefix(self) -> str:
        """Where the entries' details live (pictrace.details)."""
        return f"{self.prefix}{_DETAILS}"

    def details_key(self, entry_id: str) -> str:
        """S3 key of an entry's details."""
        return f"{self.details_prefix}{entry_id}{_NPY}"

    # --- pointers and failures, named by the image key's digest
    @property
    def pointers_prefix(self) -> str:
        """Where the image keys' pointers live."""
        return f"{self.prefix}{_KEYS}"

    def pointer_key(self, image_key: str) -> str:
        """S3 key of an image key's pointer."""
        return f"{self.pointers_prefix}{key_digest(image_key)}{_JSON}"

    @property
    def failures_prefix(self) -> str:
        """Where the failure records live."""
        return f"{self.prefix}{_FAILURES}"

    def failure_key(self, image_key: str) -> str:
        """S3 key of an image key's failure record."""
        return f"{self.failures_prefix}{key_digest(image_key)}{_JSON}"

    @staticmethod
    def digest(key: str) -> str:
        """The image key digest a pointer or failure record's S3 key names."""
        return key.rsplit("/", 1)[-1].removesuffix(_JSON)

    # --- change markers
    @property
    def changes_prefix(self) -> str:
        """Where the change markers live."""
        return f"{self.prefix}{_CHANGES}"

    def change_key(self, entry_id: str) -> str:
        """S3 key of an entry's change marker."""
        return f"{self.changes_prefix}{entry_id}"

    def change_id(self, key: str) -> str:
        """The entry id a change marker's S3 key names."""
        return key[len(self.changes_prefix) :]

    # --- segments and their manifest
    @property
    def manifest_key(self) -> str:
        """S3 key of the manifest."""
        return f"{self.prefix}{_MANIFEST}"

    def new_segment_key(self) -> str:
        """A fresh S3 key for a new segment."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return f"{self.prefix}{_SEGMENTS}{stamp}-{uuid.uuid4().hex[:12]}{_NPZ}"

    # --- records
    @property
    def model_key(self) -> str:
        """S3 key of the record of the model whose embeddings the index holds."""
        return f"{self.prefix}{_MODEL}"

    @property
    def vector_failures_prefix(self) -> str:
        """Where refused vectors are recorded."""
        return f"{self.prefix}{_VECTOR_FAILURES}"

    def vector_failure_key(self, entry_id: str) -> str:
        """S3 key of the record of why S3 Vectors refused an entry's vector."""
        return f"{self.vector_failures_prefix}{entry_id}{_JSON}"

    # --- copy links and dismissed pairs (pictrace.copies)
    @property
    def copies_prefix(self) -> str:
        """Where the copy links live."""
        return f"{self.prefix}{_COPIES}"

    def copies_of_prefix(self, entry_id: str) -> str:
        """Where one entry's copy links live."""
        return f"{self.prefix}{_COPIES}{entry_id}/"

    def copy_key(self, entry_id: str, other: str) -> str:
        """S3 key of the link from an entry to its copy."""
        return f"{self.prefix}{_COPIES}{entry_id}/{other}{_JSON}"

    def copy_pair(self, key: str) -> tuple[str, str] | None:
        """(entry id, copy id) a copy link's S3 key names."""
        if not (key.startswith(self.copies_prefix) and key.endswith(_JSON)):
            return None
        parts = key[len(self.copies_prefix) : -len(_JSON)].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

    @property
    def dismissed_prefix(self) -> str:
        """Where the pairs marked not a copy live."""
        return f"{self.prefix}{_DISMISSED}"

    def dismissed_key(self, a: str, b: str) -> str:
        """S3 key of the mark that two entries are not copies (the same for either order)."""
        lo, hi = sorted((a, b))
        return f"{self.prefix}{_DISMISSED}{lo}-{hi}{_JSON}"

    def dismissed_pair(self, key: str) -> tuple[str, str] | None:
        """The (lower, higher) ids a dismissed pair's S3 key names."""
        if not (key.startswith(self.dismissed_prefix) and key.endswith(_JSON)):
            return None
        lo, sep, hi = key[len(self.dismissed_prefix) : -len(_JSON)].partition("-")
        return (lo, hi) if sep and lo and hi else None
