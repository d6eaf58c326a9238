"""The S3 client and the few S3 operations PicTrace uses, with conditional writes surfaced as results."""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from pictrace.errors import NotFound, ObjectTooLarge

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


_MAKING = threading.Lock()


def _timestamp_as_sent(value: str) -> str:
    return value


@functools.lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    """PicTrace's boto3 session in this process, made by its first client (under _MAKING): its responses keep
    timestamps as sent."""
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp_as_sent)
    return boto3.session.Session(botocore_session=core)


def new_client(service: str, **kwargs: Any) -> Any:
    """A new boto3 client (Session.client's arguments), made while no other thread makes one: sessions are not
    thread-safe (boto3's guidance; clients made in parallel from one can fail with KeyError 'credential_provider'),
    and a new container's first request makes its clients on several threads (ingest's read-ahead, search's model
    fetch beside its index load). They come from one session of PicTrace's own (credentials and region as boto3's
    default one finds them) whose responses keep timestamps as sent: PicTrace reads none, and parsing each listed
    key's LastModified was most of the client's CPU in a LIST."""
    with _MAKING:
        make: Callable[..., Any] = _session().client  # any service by name (the stubs type one overload per service)
        return make(service, **kwargs)


class ProcessClients:
    """AWS clients made on first use (new_client), one per region and process, and made anew after cache_clear (a
    SnapStart restore: pictrace.snapstart). A thread that asks while another makes the client waits for that one
    instead of making its own (ingest's read-ahead threads all want it when a new container takes its first batch).
    """

    _every: ClassVar[weakref.WeakSet[ProcessClients]] = weakref.WeakSet()

    def __init__(self, make: Callable[[str | None], Any]) -> None:
        self._make = make
        self._made: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        ProcessClients._every.add(self)

    @classmethod
    def clear_all(cls) -> None:
        """Drop the clients of every ProcessClients (a SnapStart restore; a new local stack's endpoints)."""
        for clients in list(cls._every):
            clients.cache_clear()

    def __call__(self, region: str | None = None) -> Any:
        """The region's client (None: the environment's region)."""
        client = self._made.get(region)
        if client is None:
            with self._lock:
                client = self._made.get(region)
                if client is None:
                    client = self._made[region] = self._make(region)
        return client

    def cache_clear(self) -> None:
        """Drop the clients made so far: the next call makes a new one."""
        with self._lock:
            self._made.clear()

    def held(self) -> int:
        """How many clients are held."""
        return len(self._made)


def _make_s3_client(region: str | None) -> Any:
    return new_client("s3", region_name=aws_region(region), config=_config())


#: One boto3 S3 client per process (honours AWS_ENDPOINT_URL_S3), retrying throttling and 5xx answers. Retries:
#: AWS_RETRY_MODE (default adaptive) and AWS_MAX_ATTEMPTS (default 5), botocore's own variables.
s3_client = ProcessClients(_make_s3_client)


def s3_client_at(endpoint: str | None, credentials: tuple[str, str] | None = None) -> Any:
    """A new S3 client for this endpoint (None: AWS's own, whatever the environment names), with these access
    key and secret (None: boto3's own credential chain); retries as s3_client."""
    return new_client(
        "s3",
        region_name=aws_region(),
        endpoint_url=endpoint,
        aws_access_key_id=credentials[0] if credentials else None,
        aws_secret_access_key=credentials[1] if credentials else None,
        config=_config(ignore_configured_endpoint_urls=endpoint is None),
    )


def aws_region(region: str | None = None) -> str:
    """The region given, else the environment's (AWS_REGION, then AWS_DEFAULT_REGION), else us-east-1."""
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _config(**extra: Any) -> Config:
    retries: Any = {
        "mode": os.environ.get("AWS_RETRY_MODE", "adaptive"),
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")),
    }
    return Config(retries=retries, max_pool_connections=32, signature_version="s3v4", **extra)


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes and the ETag they were read at."""

    body: bytes
    etag: str


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Store:
    """A bucket, seen through the operations PicTrace needs."""

    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        """The S3 client: the one given, else the process's (s3_client, created on first use and renewed by
        s3_client.cache_clear(), e.g. after a SnapStart restore)."""
        return self._client if self._client is not None else s3_client()

    def get(self, key: str, max_bytes: int | None = None) -> StoredObject:
        """The object's bytes (one GET); NotFound if there is none; ObjectTooLarge if it is larger than max_bytes
        (its bytes unread when S3 announced the size, else read no further than max_bytes + 1)."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise NotFound(key) from None
            raise
        body = response["Body"]
        size = int(response.get("ContentLength", 0))
        if max_bytes is not None and size > max_bytes:
            body.close()
            raise ObjectTooLarge(key, size)
        data: bytes = body.read() if max_bytes is None else body.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # longer than announced
            body.close()
            raise ObjectTooLarge(key, None)
        return StoredObject(data, response["ETag"])

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (one ranged GET); NotFound if there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise NotFound(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if it does not exist."""
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise

    def put(
        self,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Write the object; with a condition, False when the condition did not hold (nothing written)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body, "ContentType": content_type}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            self.client.put_object(**kwargs)
        except ClientError as exc:
            if _code(exc) in _PRECONDITION or (if_match is not None and _code(exc) in _NOT_FOUND):
                return False
            raise
        return True

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        """Delete the object; with if_match, False when it changed since (nothing deleted)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            self.client.delete_object(**kwargs)
        except ClientError as exc:
            if _code(exc) in _PRECONDITION or _code(exc) in _NOT_FOUND:
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, str, int]]:
        """(key, etag, size) of every object under the prefix."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"], item["ETag"], int(item["Size"])

    def presign_get(self, key: str, expires: int) -> str:
        """A presigned GET link to the object, valid for `expires` seconds."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )
        return url

    def presign_post(
        self, key: str, expires: int, max_bytes: int, content_type: str | None, type_prefix: str
    ) -> tuple[str, dict[str, str]]:
        """A presigned POST (url, form fields) for the key, valid for `expires` seconds, whose policy S3 enforces:
        a body of 1 to max_bytes bytes, and a Content-Type that is content_type (or starts with type_prefix)."""
        fields: dict[str, str] = {}
        conditions: list[Any] = [["content-length-range", 1, max_bytes]]
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        else:
            conditions.append(["starts-with", "$Content-Type", type_prefix])
        post: dict[str, Any] = self.client.generate_presigned_post(
            self.bucket, key, Fields=fields or None, Conditions=conditions, ExpiresIn=expires
        )
        return str(post["url"]), {k: str(v) for k, v in post["fields"].items()}


class PresignedLinks:
    """Presigned GET links to a store's objects, each reused while at least half of its validity is left and for at
    most REUSE_SECONDS (signing one costs about a millisecond of CPU; a search asks for one per candidate and per
    hit). The cap keeps a reused link no older than a fresh one could be: a link also dies with the temporary
    credentials that signed it, whatever its expiry."""

    REUSE_SECONDS = 300.0

    def __init__(self, store: Store, expires: int, size: int = 4096) -> None:
        self.store = store
        self.expires = expires
        self.size = size
        self._links: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str:
        """A link to the key, signed at most min(expires/2, REUSE_SECONDS) seconds ago."""
        now = time.monotonic()
        with self._lock:
            cached = self._links.get(key)
            if cached is not None and now < cached[1]:
                self._links.move_to_end(key)
                return cached[0]
        url = self.store.presign_get(key, self.expires)
        with self._lock:
            self._links[key] = (url, now + min(self.expires / 2, self.REUSE_SECONDS))
            self._links.move_to_end(key)
            while len(self._links) > self.size:
                self._links.popitem(last=False)
        return url

    def clear(self) -> None:
        """Forget every link (after a SnapStart restore: new links are signed with the copy's own credentials)."""
        with self._lock:
            self._links.clear()
