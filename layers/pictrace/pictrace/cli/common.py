"""What every command shares: where it points (Target, with the S3 endpoint passed explicitly), the
settings it runs the library with, calls to the HTTP API, and the errors that become exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pictrace.cli.tokens import bearer
from pictrace.limits import is_entry_id

if TYPE_CHECKING:
    from pictrace.settings import Settings
    from pictrace.storage import Store

logger = logging.getLogger(__name__)


DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_S3_ENDPOINT = "http://127.0.0.1:5055"
DEFAULT_BUCKET = "pictrace-local"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

EXIT_OK, EXIT_NOTHING, EXIT_USAGE, EXIT_SERVICE = 0, 1, 2, 3


class CliError(Exception):
    """An error the CLI reports on stderr and turns into its exit code."""

    code = EXIT_SERVICE


class NothingFound(CliError):
    code = EXIT_NOTHING


class UsageError(CliError):
    code = EXIT_USAGE


class ServiceError(CliError):
    code = EXIT_SERVICE


@dataclass
class Target:
    """The API, the S3 endpoint and the bucket a command works on."""

    api: str
    s3_endpoint: str | None  # None: AWS's own endpoints
    bucket: str
    timeout: float = 60.0
    _store: Store | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        endpoint = args.s3_endpoint
        if endpoint is None:
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3", DEFAULT_S3_ENDPOINT)
        endpoint = None if endpoint.strip().lower() in ("", "aws") else endpoint.strip()
        api = (args.api or os.environ.get("PICTRACE_API_URL") or DEFAULT_API).rstrip("/")
        bucket = args.bucket or os.environ.get("PICTRACE_BUCKET") or DEFAULT_BUCKET
        return cls(api=api, s3_endpoint=endpoint, bucket=bucket, timeout=args.timeout)

    def at(self, bucket: str) -> None:
        """Work on this bucket instead (s3://BUCKET/... arguments)."""
        if bucket:
            self.bucket = bucket
            self._store = None

    def store(self) -> Store:
        """The target bucket at the target endpoint: a client of its own, passed explicitly (the process's
        environment is left as it is). A loopback endpoint without credentials in the environment gets moto's
        dummy ones."""
        if self._store is None:
            from pictrace.storage import Store, s3_client_at

            credentials = None
            host = urlsplit(self.s3_endpoint or "").hostname or ""
            if host in _LOOPBACK and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
                credentials = ("testing", "testing")  # a local moto stack accepts any credentials
            self._store = Store(self.bucket, s3_client_at(self.s3_endpoint, credentials))
        return self._store

    def where(self) -> str:
        return f"s3://{self.bucket} at {self.s3_endpoint or 'AWS'}"


def settings_for(target: Target, model_dir: str | None = None) -> Settings:
    """The settings a command runs the library with: the environment's, for the target's bucket."""
    from pictrace.settings import Settings

    return Settings.from_env(bucket=target.bucket, model_dir=model_dir or default_model_dir())


def default_model_dir() -> str:
    """PICTRACE_MODEL_DIR, else the repository's layers/model/model (editable install), else /opt/model."""
    configured = os.environ.get("PICTRACE_MODEL_DIR")
    if configured:
        return configured
    from pictrace.modelfiles import has_model

    in_repo = Path(__file__).resolve().parents[3] / "model" / "model"
    if has_model(in_repo):
        return str(in_repo)
    return "/opt/model"


def tally(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.most_common() if n) or "nothing"


def api_call(target: Target, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A call to the PicTrace API; its errors become CLI errors with the API's own message."""
    import httpx

    url = f"{target.api}{path}"
    try:
        response = httpx.request(method, url, timeout=target.timeout, headers=bearer(target.api), **kwargs)
    except httpx.TimeoutException:
        raise ServiceError(f"the PicTrace API at {target.api} did not answer within {target.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ServiceError(
            f"cannot reach the PicTrace API at {target.api} ({exc}): start it (`make run`) "
            "or point at it with --api / PICTRACE_API_URL"
        ) from None
    if response.status_code >= 400:
        _api_error(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServiceError(f"{url} answered HTTP {response.status_code} with something other than a JSON object")
    return body


def _api_error(response: Any) -> None:
    """Raise the CLI error for an API error answer, with the API's own message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        detail = json.dumps(detail) if detail else response.text[:300] or response.reason_phrase
    kind = body.get("error", "") if isinstance(body, dict) else ""
    message = f"{detail} (HTTP {response.status_code}{' ' + kind if kind else ''})"
    if response.status_code == 404:
        raise NothingFound(message)
    if response.status_code in (401, 403):
        raise UsageError(f"{message}: sign in with `pictrace login`")
    if response.status_code < 500:
        raise UsageError(message)
    raise ServiceError(message)


def api_bytes(target: Target, method: str, path: str, **kwargs: Any) -> tuple[bytes, str]:
    """A call to the PicTrace API answering something other than JSON: (body, content type)."""
    import httpx

    try:
        headers = bearer(target.api)
        response = httpx.request(method, f"{target.api}{path}", timeout=target.timeout, headers=headers, **kwargs)
    except httpx.TimeoutException:
        raise ServiceError(f"the PicTrace API at {target.api} did not answer within {target.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot reach the PicTrace API at {target.api} ({exc})") from None
    if response.status_code >= 400:
        _api_error(response)
    return response.content, response.headers.get("content-type", "")


def query_request(query: str) -> dict[str, Any]:
    """How the API is sent a query: a file ('-' for stdin) as multipart, a URL or an id as JSON."""
    if query == "-":
        return {"files": {"file": ("stdin", sys.stdin.buffer.read())}}
    if Path(query).is_file():
        path = Path(query)
        return {"files": {"file": (path.name, path.read_bytes())}}
    if query.lower().startswith(("http://", "https://")):
        return {"json": {"url": query}}
    if is_entry_id(query):
        return {"json": {"id": query}}
    raise UsageError(f"{query}: no such file (give an image file, '-' for stdin, an http(s) URL or an image id)")
