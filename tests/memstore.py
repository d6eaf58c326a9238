"""A bucket in memory for unit tests (no network): S3's conditional writes, and a count of GETs."""

from __future__ import annotations

from collections.abc import Iterator

from pictrace.errors import NotFound
from pictrace.storage import Store, StoredObject


class MemoryStore(Store):
    """A bucket in memory, with S3's conditional writes and a count of GETs."""

    def __init__(self) -> None:
        super().__init__("bucket", client=object())
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.gets = 0
        self._n = 0

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        self.gets += 1
        if key not in self.objects:
            raise NotFound(key)
        body, etag = self.objects[key]
        return StoredObject(body, etag)

    def size(self, key: str) -> int | None:
        return len(self.objects[key][0]) if key in self.objects else None

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str = "application/octet-stream",
    ) -> bool:
        if if_none_match and key in self.objects:
            return False
        if if_match is not None and self.objects.get(key, (b"", None))[1] != if_match:
            return False
        self._n += 1
        self.objects[key] = (body, f'"{self._n}"')
        return True

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        return self.objects.pop(key, None) is not None

    def list(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield key, self.objects[key][1], len(self.objects[key][0])
