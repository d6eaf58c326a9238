"""FileStore: the pictrace.storage.Store operations the segmented index's load uses, over local files (the capacity
phase's store)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from pictrace.errors import NotFound
from pictrace.storage import StoredObject


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


class FileStore:
    """The pictrace.storage.Store operations the segmented index's load uses (get, get_range, list) and the
    generator's put, over files in a directory (key = path); counts the requests, bytes and seconds spent reading
    (summed over threads). ETags are size and modification time."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.counts: dict[str, float] = {"get": 0, "get_range": 0, "list": 0, "put": 0, "bytes_read": 0, "read_s": 0.0}

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad key {key!r}")
        return self.root / key

    def _count(self, what: str, nbytes: int = 0, seconds: float = 0.0) -> None:
        with self._lock:
            self.counts[what] += 1
            self.counts["bytes_read"] += nbytes
            self.counts["read_s"] += seconds

    def _read(self, key: str, start: int = 0, end: int | None = None) -> tuple[bytes, os.stat_result]:
        started = time.perf_counter()
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                body = f.read() if end is None else f.read(max(0, end - start))
                st = os.fstat(f.fileno())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None
        self._count("get" if end is None else "get_range", len(body), time.perf_counter() - started)
        return body, st

    def get(self, key: str) -> StoredObject:
        """The object's bytes; NotFound if there is none."""
        body, st = self._read(key)
        return StoredObject(body, _etag(st))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (fewer at its end); NotFound if there is none."""
        return self._read(key, start, end)[0]

    def put(self, key: str, body: bytes, *, if_none_match: bool = False) -> bool:
        """Write the object (atomically); with if_none_match, False (nothing written) when it exists."""
        path = self._path(key)
        with self._lock:
            self.counts["put"] += 1
            if if_none_match and path.is_file():
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            (tmp := path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")).write_bytes(body)
            os.replace(tmp, path)
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        """(key, etag, size) of every object under the prefix, in key order."""
        self._count("list")
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        paths = [Path(d, n) for d, _, ns in os.walk(folder) for n in ns if not (n[0] == "." and n.endswith(".tmp"))]
        keyed = ((p.relative_to(self.root).as_posix(), p) for p in paths)
        yield from sorted((key, _etag(st := p.stat()), st.st_size) for key, p in keyed if key.startswith(prefix))
