"""`pictrace`: index a folder or a bucket, search, delete and look at the index, from a terminal.

A thin layer: searching goes through the HTTP API (what any client sees); ingesting, deleting and the index's
numbers go through pictrace's own modules on the bucket (Ingestor.sync_key, IndexStore), the same code the
ingest function runs.

Where it points, by flag or environment (the defaults are `make run`'s local stack):
    --api          PICTRACE_API_URL      http://127.0.0.1:8000
    --s3-endpoint  AWS_ENDPOINT_URL_S3   http://127.0.0.1:5055   ('aws' or empty: AWS's own endpoints)
    --bucket       PICTRACE_BUCKET       pictrace-local
Against a loopback endpoint without AWS credentials in the environment it uses moto's dummy ones.

Exit codes (stable, for scripts; errors go to stderr, results to stdout):
    0  done
    1  nothing found: no results, no such image, key or id, no images under the path or prefix,
       or images that could not be indexed (each is listed with its reason)
    2  usage or configuration: bad arguments, a file that does not exist, a query the API refused
       (HTTP 400/413/422), no AWS credentials, no model artifact, model weights that differ from the index's
    3  service error: the API or S3 cannot be reached or failed (HTTP 5xx, S3 errors), or indexing timed out
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import mimetypes
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pictrace import __version__
from pictrace.errors import ConfigError, ModelMismatch, NotFound, PicTraceError, WeightsUnavailable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from pictrace.ingest import Ingestor, Outcome
    from pictrace.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_S3_ENDPOINT = "http://127.0.0.1:5055"
DEFAULT_BUCKET = "pictrace-local"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HEX = set("0123456789abcdef")

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


def is_id(text: str) -> bool:
    """Whether the text is an image id (64 lowercase hex characters: SHA-256 of the image's bytes)."""
    return len(text) == 64 and set(text) <= _HEX


# --------------------------------------------------------------------------- where it points
@dataclass
class Target:
    """The API, the S3 endpoint and the bucket a command works on."""

    api: str
    s3_endpoint: str | None  # None: AWS's own endpoints
    bucket: str
    timeout: float = 60.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Target:
        endpoint = args.s3_endpoint
        if endpoint is None:
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3", DEFAULT_S3_ENDPOINT)
        endpoint = None if endpoint.strip().lower() in ("", "aws") else endpoint.strip()
        api = (args.api or os.environ.get("PICTRACE_API_URL") or DEFAULT_API).rstrip("/")
        bucket = args.bucket or os.environ.get("PICTRACE_BUCKET") or DEFAULT_BUCKET
        return cls(api=api, s3_endpoint=endpoint, bucket=bucket, timeout=args.timeout)

    def use_s3(self, bucket: str | None = None) -> None:
        """Point pictrace's S3 client (pictrace.storage.s3_client, which honours the environment) at the target."""
        from pictrace.storage import s3_client

        if bucket:
            self.bucket = bucket
        if self.s3_endpoint:
            os.environ["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint
            host = urlsplit(self.s3_endpoint).hostname or ""
            if host in _LOOPBACK and not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
                os.environ["AWS_ACCESS_KEY_ID"] = "testing"  # a local moto stack accepts any credentials
                os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
        else:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        s3_client.cache_clear()

    def where(self) -> str:
        return f"s3://{self.bucket} at {self.s3_endpoint or 'AWS'}"


def _settings(target: Target, model_dir: str | None = None) -> Settings:
    from pictrace.settings import Settings

    return Settings.from_env(bucket=target.bucket, model_dir=model_dir or default_model_dir())


def default_model_dir() -> str:
    """PICTRACE_MODEL_DIR, else the repository's layers/model/model (editable install), else /opt/model."""
    configured = os.environ.get("PICTRACE_MODEL_DIR")
    if configured:
        return configured
    from pictrace.embedding import has_model

    in_repo = Path(__file__).resolve().parents[2] / "model" / "model"
    if has_model(in_repo):
        return str(in_repo)
    return "/opt/model"


# --------------------------------------------------------------------------- output
@dataclass
class Output:
    """Where results (stdout) and messages (stderr) go; --json writes one JSON document to stdout instead."""

    json: bool = False
    quiet: bool = False
    out: Console = field(init=False)
    err: Console = field(init=False)

    def __post_init__(self) -> None:
        from rich.console import Console

        # piped into a file or another program: wide enough that tables keep one line per row
        width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
        self.out = Console(highlight=False, soft_wrap=False, width=width)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

    def document(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.err, disable=self.quiet or self.json, transient=False) as bar:
            yield bar


def _tally(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.most_common() if n) or "nothing"


# --------------------------------------------------------------------------- the HTTP API
def api_call(target: Target, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """A call to the PicTrace API; its errors become CLI errors with the API's own message."""
    import httpx

    url = f"{target.api}{path}"
    try:
        response = httpx.request(method, url, timeout=target.timeout, **kwargs)
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
    if response.status_code < 500:
        raise UsageError(message)
    raise ServiceError(message)


def api_bytes(target: Target, method: str, path: str, **kwargs: Any) -> tuple[bytes, str]:
    """A call to the PicTrace API answering something other than JSON: (body, content type)."""
    import httpx

    try:
        response = httpx.request(method, f"{target.api}{path}", timeout=target.timeout, **kwargs)
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
    if is_id(query):
        return {"json": {"id": query}}
    raise UsageError(f"{query}: no such file (give an image file, '-' for stdin, an http(s) URL or an image id)")


# --------------------------------------------------------------------------- search
def cmd_search(args: argparse.Namespace, target: Target, out: Output) -> int:
    query: str = args.query
    params = {k: v for k, v in (("top_k", args.top_k), ("shortlist", args.shortlist)) if v is not None}
    request = query_request(query)
    if "files" in request:
        body = api_call(target, "POST", "/search", params=params, **request)
    else:
        body = api_call(target, "POST", "/search", json={**request["json"], **params})
    results = body.get("results", [])
    if out.json:
        out.document(body)
    else:
        _print_results(out, body)
    if not results:
        raise NothingFound(f"no results: the index holds {body.get('indexed', 0)} images")
    return EXIT_OK


#: how the search table says whether a result is a copy of the query (None: the model has no calibration)
_MATCH: dict[bool | None, str] = {True: "[bold green]copy[/]", False: "[dim]not a copy[/]", None: "[dim]–[/]"}


def _print_results(out: Output, body: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=None, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("copy?", no_wrap=True)
    table.add_column("similar", justify="right", no_wrap=True)
    for name in ("cosine", "ssim", "orb", "final"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("id", no_wrap=True)
    for rank, hit in enumerate(body.get("results", []), start=1):
        s = hit["scores"]
        keys = hit["keys"]
        key = keys[0] + (f" (+{len(keys) - 1})" if len(keys) > 1 else "") if keys else "?"
        table.add_row(
            str(rank),
            _MATCH.get(hit.get("match"), "?"),
            f"[bold]{hit['similarity']:.1f}%[/bold]",
            f"{s['cosine']:.3f}",
            f"{s['ssim']:.3f}",
            f"{s['orb']:.3f} ({s['orb_matches']})",
            f"{s['final']:.3f}",
            key,
            hit["id"][:12],
        )
    if body.get("results"):
        out.out.print(table)
    q = body.get("query", {})
    if "format" in q:
        described = f"{str(q['format']).upper()} {q.get('width')}×{q.get('height')}, {q.get('bytes')} bytes"
    else:
        described = f"indexed image {str(q.get('id', ''))[:12]}"
    timings = body.get("timings_ms", {})
    stages = " ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "total")
    out.out.print(
        f"query {described} · {body.get('indexed')} indexed · weights {body.get('weights')} ({body.get('backend')})"
        f" · {timings.get('total', 0):.0f} ms ({stages})",
        style="dim",
    )


# --------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Compare a query with one indexed image (POST /compare): the evidence, and the picture with --out."""
    request = query_request(args.query)
    image_id = args.image if is_id(args.image) else _id_of_key(target, args.image)
    body = api_call(target, "POST", "/compare", params={"target": image_id}, **request)
    saved = None
    if args.out:
        path = Path(args.out)
        kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
        picture, _ = api_bytes(target, "POST", "/compare", params={"target": image_id, "format": kind}, **request)
        path.write_bytes(picture)
        saved = {"path": str(path), "format": kind, "bytes": len(picture)}
    if out.json:
        out.document({**body, "picture": saved} if saved else body)
        return EXIT_OK
    _print_comparison(out, body)
    if saved:
        out.out.print(f"picture {saved['path']} ({kind.upper()}, {saved['bytes']} bytes)", markup=False)
    return EXIT_OK


def _id_of_key(target: Target, key: str) -> str:
    """The id of the image an image key (images/… or a name under it) holds, from the index in the bucket."""
    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    if key.startswith("s3://"):
        bucket, _, key = key[len("s3://") :].partition("/")
        target.use_s3(bucket)
    else:
        target.use_s3()
    settings = _settings(target)
    index = IndexStore(Store(target.bucket), settings.index_prefix)
    images = settings.images_prefix
    for candidate in [key] if key.startswith(images) else [key, images + key]:
        found = index.pointer(candidate)
        if found:
            return found
    raise NothingFound(f"no indexed image under the key {key!r} in {target.where()} (give a key or an image id)")


def _print_comparison(out: Output, body: dict[str, Any]) -> None:
    from rich.table import Table

    match = body.get("match")
    verdict = "copy" if match is True else "not a copy" if match is False else "no verdict"
    s = body["scores"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("indexed", f"{', '.join(body['keys'])} ({body['id'][:12]})")
    table.add_row("verdict", f"{verdict} · similarity {body['similarity']:.1f}% · {body.get('explain', '')}")
    table.add_row(
        "scores",
        f"cosine {s['cosine']:.3f} · gist {s['gist']:.3f} · ssim {s['ssim']:.3f} · geometry {s['geometry']:.3f}"
        f" · final {s['final']:.3f}",
    )
    table.add_row("matches", f"{body['inliers']} of {body['matches']} ORB matches agree on one affine transform")
    t = body.get("transform")
    if t:
        table.add_row(
            "transform",
            f"query turned {t['rotation_degrees']:g}° counter-clockwise, scale {t['scale']:.3f}"
            + (", mirrored" if t["mirrored"] else ""),
        )
    box = body.get("region_box")
    if box:
        indexed = body.get("indexed", {})
        table.add_row(
            "region",
            f"x {box[0]:.0f}–{box[2]:.0f}, y {box[1]:.0f}–{box[3]:.0f} of {indexed.get('width')}×"
            f"{indexed.get('height')}" + ("" if body.get("exact", True) else " (assumes no trimmed border)"),
        )
    else:
        table.add_row("region", "none: the keypoints agree on no transform")
    out.out.print(table)


# --------------------------------------------------------------------------- ingest
def cmd_ingest(args: argparse.Namespace, target: Target, out: Output) -> int:
    source: str = args.source
    if source.startswith("s3://"):
        bucket, _, prefix = source[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"{source}: give s3://BUCKET/PREFIX")
        target.use_s3(bucket)
        return backfill(args, target, out, prefix)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source}: no such file or folder (give a folder, an image, or s3://BUCKET/PREFIX)")
    target.use_s3()
    return upload(args, target, out, path)


def _check_weights(ingestor: Ingestor, target: Target, out: Output) -> None:
    """Refuse to index with other model weights than the index (or the API) uses: their embeddings do not mix."""
    local = ingestor.embedder.weights
    try:
        served = api_call(target, "GET", "/health").get("weights")
    except CliError as exc:
        out.note(f"[yellow]note:[/yellow] could not ask the API which weights it uses ({exc})")
        served = None
    if served and served != local:
        raise UsageError(
            f"the model in {ingestor.settings.model_dir} holds weights {local!r} but the API at {target.api} uses "
            f"{served!r}: build the same (`make model WEIGHTS={served}`) or pass --model-dir"
        )
    for entry_id in ingestor.index.entry_ids():
        try:
            entry, _ = ingestor.index.get_entry(entry_id)
        except NotFound:
            continue
        indexed_with = entry.meta.get("weights")
        if indexed_with and indexed_with != local:
            raise UsageError(
                f"the index in {target.where()} was built with weights {indexed_with!r} but the model in "
                f"{ingestor.settings.model_dir} holds {local!r}: use the same weights"
            )
        break


def backfill(args: argparse.Namespace, target: Target, out: Output, prefix: str) -> int:
    """Run the ingest code on objects already in the bucket (e.g. put there before the stack existed)."""
    from pictrace.ingest import Ingestor

    settings = _settings(target, args.model_dir)
    images = settings.images_prefix
    if prefix.startswith(images):
        listed = prefix
    elif images.startswith(prefix):
        listed = images  # s3://bucket/ (or a parent of the images prefix): what the stack would index
    else:
        raise UsageError(
            f"s3://{target.bucket}/{prefix}: only keys under the images prefix {images!r} are indexed "
            "(PICTRACE_IMAGES_PREFIX sets it)"
        )
    ingestor = Ingestor(settings)
    objects = [(key, etag) for key, etag, _size in ingestor.store.list(listed) if not key.endswith("/")]
    if not objects:
        raise NothingFound(f"no objects under s3://{target.bucket}/{listed}")
    listing = ingestor.index.listing()
    counts: Counter[str] = Counter()
    failed: list[dict[str, Any]] = []
    todo: list[str] = []
    for key, etag in objects:
        if args.force:
            todo.append(key)
        elif listing.points(key):
            counts["already indexed"] += 1
        elif listing.has_failure(key) and not args.retry_failed:
            record = ingestor.index.failure(key)
            if record and record.get("etag") in (etag, None):  # failed before, on these very bytes
                counts["failed before"] += 1
                failed.append({"key": key, "reason": record.get("reason", "?"), "earlier": True})
            else:
                todo.append(key)
        else:
            todo.append(key)
    if todo:
        _check_weights(ingestor, target, out)
    outcomes: list[Outcome] = []
    with out.progress() as bar:
        task = bar.add_task("indexing", total=len(todo), info="", visible=bool(todo))
        for outcome in _run(ingestor.sync_key, todo, args.workers):
            outcomes.append(outcome)
            counts[outcome.action] += 1
            if outcome.action == "failed":
                failed.append({"key": outcome.key, "reason": outcome.reason})
            bar.update(task, advance=1, info=_tally(Counter(o.action for o in outcomes)))
    summary = {
        "source": f"s3://{target.bucket}/{listed}",
        "objects": len(objects),
        "counts": dict(counts),
        "failed": failed,
        "outcomes": [{"key": o.key, "action": o.action, "id": o.id} for o in outcomes],
    }
    line = f"{len(objects)} objects under s3://{target.bucket}/{listed}: {_tally(counts)}"
    return _finish(out, summary, line, "; `--retry-failed` tries them again" if counts["failed before"] else "")


def _run(fn: Callable[[str], Outcome], keys: list[str], workers: int) -> Iterable[Outcome]:
    """fn over the keys on a few threads (downloads overlap; the embedder runs one image at a time)."""
    if not keys:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fn, key) for key in keys]
        for future in as_completed(futures):
            yield future.result()


def _finish(out: Output, summary: dict[str, Any], line: str, hint: str = "") -> int:
    failed = summary["failed"]
    if out.json:
        out.document(summary)
    else:
        out.out.print(line, markup=False)
    for f in failed:
        when = " (in an earlier run)" if f.get("earlier") else ""
        sys.stderr.write(f"pictrace: not indexed{when}: {f['key']}: {f['reason']}\n")
    if failed:
        raise NothingFound(f"{len(failed)} image(s) could not be indexed{hint}")
    return EXIT_OK


@dataclass
class _Planned:
    path: Path
    key: str
    sha: str = ""
    etag: str = ""
    state: str = ""  # indexed, failed, uploaded, pending (there already, not yet indexed)
    reason: str = ""
    earlier: bool = False  # failed in an earlier run (these bytes are at the key already)


def upload(args: argparse.Namespace, target: Target, out: Output, path: Path) -> int:
    """Upload a folder's images (or one image) under the images prefix; the stack indexes them."""
    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    settings = _settings(target, args.model_dir)
    key_prefix = args.key_prefix if args.key_prefix is not None else settings.images_prefix
    if key_prefix and not key_prefix.endswith("/"):
        key_prefix += "/"
    if not key_prefix.startswith(settings.images_prefix):
        raise UsageError(
            f"--key-prefix {key_prefix!r} is not under the images prefix {settings.images_prefix!r}: "
            "nothing there would be indexed"
        )
    if path.is_file():
        files = [(path, key_prefix + path.name)]
    else:
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files = [(p, key_prefix + p.relative_to(path).as_posix()) for p in found]
    if not files:
        raise NothingFound(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    store = Store(target.bucket)
    index = IndexStore(store, settings.index_prefix)
    existing = {key: (etag.strip('"'), size) for key, etag, size in store.list(key_prefix)}
    listing = index.listing()
    plans = [_Planned(p, key) for p, key in files]

    def put(plan: _Planned) -> _Planned:
        data = plan.path.read_bytes()
        plan.sha = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        etag, size = existing.get(plan.key, ("", -1))
        same = etag == md5 or (size == len(data) and "-" in etag and index.pointer(plan.key) == plan.sha)
        if same and plan.sha in listing.ids:
            plan.state = "indexed"
            return plan
        if same and listing.has_failure(plan.key):
            record = index.failure(plan.key) or {}
            if str(record.get("etag", "")).strip('"') == etag:
                plan.state, plan.reason, plan.etag = "failed", str(record.get("reason", "?")), etag
                plan.earlier = True
                return plan
        if same:
            plan.state, plan.etag = "pending", etag
            return plan
        content_type = mimetypes.guess_type(plan.path.name)[0] or "application/octet-stream"
        response = store.client.put_object(Bucket=target.bucket, Key=plan.key, Body=data, ContentType=content_type)
        plan.state, plan.etag = "uploaded", str(response.get("ETag", "")).strip('"')
        return plan

    counts: Counter[str] = Counter()
    with out.progress() as bar:
        task = bar.add_task("uploading", total=len(plans), info="")
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            for plan in (f.result() for f in as_completed([pool.submit(put, p) for p in plans])):
                counts[{"indexed": "already indexed", "failed": "failed before"}.get(plan.state, plan.state)] += 1
                bar.update(task, advance=1, info=_tally(counts))
        waiting = [p for p in plans if p.state in ("uploaded", "pending")]
        if waiting and args.wait > 0:
            _wait_for_index(index, waiting, args.wait, bar)
    failed = [{"key": p.key, "reason": p.reason, "earlier": p.earlier} for p in plans if p.reason]
    final = Counter(p.state for p in plans)
    summary = {
        "source": str(path),
        "destination": f"s3://{target.bucket}/{key_prefix}",
        "files": len(plans),
        "counts": dict(counts),
        "states": dict(final),
        "failed": failed,
        "files_detail": [{"path": str(p.path), "key": p.key, "id": p.sha, "state": p.state} for p in plans],
    }
    line = f"{len(plans)} images from {path} to s3://{target.bucket}/{key_prefix}: {_tally(counts)}"
    if waiting and args.wait > 0:
        line += f"; indexed now: {final['indexed']}"
    elif waiting:
        line += " (not waiting for the index: --wait 0)"
    return _finish(out, summary, line)


def _wait_for_index(index: Any, waiting: list[_Planned], timeout: float, bar: Progress) -> None:
    """Until every uploaded image is in the index (or recorded as failed), by listing the index, not per key."""
    task = bar.add_task("indexing", total=len(waiting), info="by the stack")
    deadline = time.monotonic() + timeout
    pending = list(waiting)
    while pending:
        listing = index.listing()
        still = []
        for plan in pending:
            if plan.sha in listing.ids:
                plan.state = "indexed"
            elif listing.has_failure(plan.key):
                record = index.failure(plan.key) or {}
                if str(record.get("etag", "")).strip('"') == plan.etag:
                    plan.state, plan.reason = "failed", str(record.get("reason", "?"))
                else:
                    still.append(plan)
            else:
                still.append(plan)
        bar.update(task, completed=len(waiting) - len(still))
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{len(pending)} uploaded image(s) not indexed after {timeout:g} s: is the stack's ingest running? "
                f"(`pictrace ingest s3://{index.store.bucket}/{index_prefix_of(pending)}` indexes them from here)"
            )
        time.sleep(0.5)


def index_prefix_of(plans: list[_Planned]) -> str:
    """The longest common key prefix of some planned uploads, up to a '/'."""
    common = plans[0].key
    for plan in plans[1:]:
        while not plan.key.startswith(common):
            common = common[:-1]
    return common[: common.rfind("/") + 1]


# --------------------------------------------------------------------------- delete
def cmd_delete(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Delete an image (by key, or every key of an id) from the bucket and drop it from the index."""
    from pictrace.ingest import Ingestor

    what: str = args.what
    if what.startswith("s3://"):
        bucket, _, what = what[len("s3://") :].partition("/")
        target.use_s3(bucket)
    else:
        target.use_s3()
    ingestor = Ingestor(_settings(target))
    images = ingestor.settings.images_prefix
    if is_id(what):
        try:
            entry, _ = ingestor.index.get_entry(what)
        except NotFound:
            raise NothingFound(f"no indexed image with id {what} in {target.where()}") from None
        keys = list(entry.keys)
    else:
        candidates = [what] if what.startswith(images) else [what, images + what]
        keys = [
            k
            for k in candidates
            if k.startswith(images) and (ingestor.store.size(k) is not None or ingestor.index.pointer(k))
        ][:1]
        if not keys:
            if not any(k.startswith(images) for k in candidates):
                raise UsageError(f"{what}: not under the images prefix {images!r}; only images can be deleted")
            raise NothingFound(f"no image {candidates[-1]!r} in {target.where()}")
    deleted: list[dict[str, Any]] = []
    for key in keys:
        entry_id = ingestor.index.pointer(key)
        others: list[str] = []
        if entry_id is not None:
            try:
                others = [k for k in ingestor.index.get_entry(entry_id)[0].keys if k != key]
            except NotFound:
                entry_id = None
        ingestor.store.delete(key)
        # what the stack does on the delete event (whichever of the two comes first, the index ends the same)
        ingestor.sync_key(key)
        deleted.append({"key": key, "id": entry_id, "entry": "kept" if others else "deleted", "other_keys": others})
        if entry_id is None:
            deleted[-1]["entry"] = "not indexed"
    if out.json:
        out.document({"deleted": deleted})
    else:
        for d in deleted:
            if d["entry"] == "not indexed":
                effect = "it was not indexed"
            elif d["entry"] == "deleted":
                effect = f"image {d['id'][:12]} left the index"
            else:
                effect = f"image {d['id'][:12]} stays indexed under {', '.join(d['other_keys'])}"
            out.out.print(f"deleted s3://{target.bucket}/{d['key']} ({effect})", markup=False)
    return EXIT_OK


# --------------------------------------------------------------------------- stats
def cmd_stats(args: argparse.Namespace, target: Target, out: Output) -> int:
    """The index's numbers from the bucket, and the weights the API runs with."""
    from pictrace.index.store import IndexStore
    from pictrace.storage import Store

    target.use_s3()
    settings = _settings(target)
    index = IndexStore(Store(target.bucket), settings.index_prefix)
    images = [key for key, _, _ in index.store.list(settings.images_prefix) if not key.endswith("/")]
    listing = index.listing()
    failures = []
    for key in images:
        if listing.has_failure(key):
            record = index.failure(key)
            if record:
                failures.append({"key": key, "reason": record.get("reason"), "at": record.get("at")})
    pending = [k for k in images if not listing.points(k) and not listing.has_failure(k)]
    error: CliError | None = None
    try:
        health: dict[str, Any] = api_call(target, "GET", "/health")
    except CliError as exc:
        health, error = {}, exc
    stats = {
        "bucket": target.bucket,
        "s3_endpoint": target.s3_endpoint,
        "images_prefix": settings.images_prefix,
        "objects": len(images),
        "indexed_images": len(listing.ids),
        "indexed_keys": len(listing.pointed),
        "failures": failures,
        "pending": len(pending),
        "api": target.api,
        "api_status": health.get("status", "unreachable"),
        "weights": health.get("weights"),
        "backend": health.get("backend"),
        "version": health.get("version"),
        "model_sha256": (health.get("model") or {}).get("sha256"),
    }
    if out.json:
        out.document(stats)
    else:
        _print_stats(out, stats, pending)
    if error is not None:
        raise ServiceError(f"the API's weights are unknown: {error}")
    return EXIT_OK


def _print_stats(out: Output, s: dict[str, Any], pending: list[str]) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("bucket", f"s3://{s['bucket']} at {s['s3_endpoint'] or 'AWS'}")
    table.add_row("images", f"{s['objects']} objects under {s['images_prefix']}")
    table.add_row("indexed", f"{s['indexed_images']} distinct images ({s['indexed_keys']} keys)")
    table.add_row("failures", str(len(s["failures"])))
    if s["pending"]:
        table.add_row("pending", f"{s['pending']} not indexed yet (`pictrace ingest s3://{s['bucket']}/` backfills)")
    if s["weights"]:
        table.add_row("weights", f"{s['weights']} ({s['backend']}, model {str(s['model_sha256'])[:12]})")
        table.add_row("api", f"{s['api']} {s['api_status']}, version {s['version']}")
    else:
        table.add_row("weights", f"unknown: the API at {s['api']} is unreachable")
    out.out.print(table)
    for f in s["failures"]:
        out.out.print(f"  [red]failed[/red] {f['key']}: {f['reason']}", highlight=False)
    for key in pending[:10]:
        out.out.print(f"  [yellow]pending[/yellow] {key}", highlight=False)
    if len(pending) > 10:
        out.out.print(f"  … and {len(pending) - 10} more pending")


def cmd_vectors_backfill(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Mirror every indexed image into the S3 Vectors index (a stack switched to IndexBackend=s3vectors)."""
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.store import IndexStore
    from pictrace.index.vectors import VectorIndex, backfill
    from pictrace.storage import Store

    target.use_s3()
    settings = _settings(target)
    bucket = args.vector_bucket or settings.vector_bucket
    name = args.vector_index or settings.vector_index
    if not (bucket or name.startswith("arn:")):
        raise UsageError("name the vector index: --vector-index ARN, or --vector-bucket NAME (the stack's outputs)")
    vectors = VectorIndex(bucket, name)
    index_store = IndexStore(Store(target.bucket), settings.index_prefix)
    result = backfill(vectors, index_store, SegmentedView(SegmentStore(index_store)), prune=not args.keep_stale)
    if out.json:
        out.document(result)
    else:
        out.out.print(
            f"{result['indexed']} indexed images mirrored to {name if name.startswith('arn:') else bucket + '/' + name}"
            f": {result['put']} put in {result['requests']} requests, {result['deleted']} stale vectors deleted,"
            f" {result['refused']} refused"
        )
    if result["refused"]:
        raise NothingFound(
            f"{result['refused']} vector(s) refused by S3 Vectors: see {index_store.layout.vector_failures_prefix}"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- the command line
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where (defaults: the local stack of `make run`)")
    where.add_argument("--api", help=f"PicTrace API URL (env PICTRACE_API_URL, default {DEFAULT_API})")
    where.add_argument(
        "--s3-endpoint",
        help=f"S3 endpoint; 'aws' for AWS's own (env AWS_ENDPOINT_URL_S3, default {DEFAULT_S3_ENDPOINT})",
    )
    where.add_argument("--bucket", help=f"the stack's bucket (env PICTRACE_BUCKET, default {DEFAULT_BUCKET})")
    where.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the API (default 60)")
    common.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")
    common.add_argument("-v", "--verbose", action="store_true", help="log what pictrace does (stderr)")

    parser = argparse.ArgumentParser(
        prog="pictrace",
        description="PicTrace from the terminal: index images, search, delete, look at the index.",
        epilog="exit codes: 0 done · 1 nothing found (no results, unknown id or key, images not indexed) · "
        "2 usage or configuration · 3 service error (API or S3 unreachable or failing, timeout)",
    )
    parser.add_argument("--version", action="version", version=f"pictrace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="upload a folder's images, or index objects already in a bucket",
        description="PATH (a folder, searched recursively, or one image): upload its images under the images "
        "prefix and wait until the stack has indexed them. s3://BUCKET/PREFIX: run the ingest code here on objects "
        "already there (e.g. put before the stack existed). Both resume: what is indexed is skipped.",
    )
    p.add_argument("source", metavar="PATH|s3://BUCKET/PREFIX")
    p.add_argument("--key-prefix", help="upload under this prefix (default: the images prefix, e.g. images/)")
    p.add_argument("--workers", type=int, default=4, help="parallel uploads or downloads (default 4)")
    p.add_argument(
        "--wait", type=float, default=300, help="seconds to wait for the stack to index uploads (0: do not wait)"
    )
    p.add_argument("--force", action="store_true", help="backfill: sync every object, even those already indexed")
    p.add_argument("--retry-failed", action="store_true", help="backfill: try again objects that failed before")
    p.add_argument("--model-dir", help="backfill: the model artifact (default PICTRACE_MODEL_DIR or the repo's)")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser(
        "search",
        parents=[common],
        help="the indexed images most similar to an image file, URL or id",
        description="Search through the HTTP API with an image file ('-' reads stdin), an http(s) URL (fetched by "
        "the service) or the id of an indexed image. Exits 1 when nothing is found.",
    )
    p.add_argument("query", metavar="IMAGE|URL|ID")
    p.add_argument("-k", "--top-k", type=int, help="results to show (API default 10, at most 100)")
    p.add_argument("--shortlist", type=int, help="cosine candidates to rerank (API default 50)")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="why an image matches one indexed image: matched keypoints, transform, region (and a picture)",
        description="Compare a query (an image file, '-' for stdin, an http(s) URL or an id) with one indexed image "
        "(its id, or a key: images/… or a name under it) through POST /compare: verdict, scores, the ORB matches "
        "that agree on one affine transform and where the query sits in the indexed image. --out writes the picture "
        "(PNG, or JPEG for .jpg/.jpeg): both images side by side, matches drawn, the region outlined.",
    )
    p.add_argument("query", metavar="IMAGE|URL|ID")
    p.add_argument("image", metavar="ID|KEY")
    p.add_argument("--out", metavar="FILE", help="write the picture here (e.g. compare.png)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser(
        "delete",
        parents=[common],
        help="delete an image by key (images/… or a name under it) or every copy of an id",
        description="Delete the object(s) from the bucket and drop them from the index now (the stack's own "
        "delete event then finds nothing left to do). Exits 1 when there is no such image.",
    )
    p.add_argument("what", metavar="KEY|ID")
    p.set_defaults(run=cmd_delete)

    p = sub.add_parser(
        "stats",
        parents=[common],
        help="indexed count, failures and the model weights in use",
        description="Counts from the bucket (objects, indexed images and keys, failures with their reasons, what "
        "is not indexed yet) and the weights the API runs with.",
    )
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser(
        "vectors-backfill",
        parents=[common],
        help="mirror every indexed image into the S3 Vectors index (after switching to IndexBackend=s3vectors)",
        description="Put every indexed image's vector (from the segments and the entries changed since) into the "
        "stack's S3 Vectors index, and delete vectors of images no longer indexed. Safe to run again. The vector "
        "index: --vector-index (an index ARN, env PICTRACE_VECTOR_INDEX) or --vector-bucket (env "
        "PICTRACE_VECTOR_BUCKET) with the index name; the endpoint: AWS_ENDPOINT_URL_S3VECTORS.",
    )
    p.add_argument("--vector-bucket", help="the S3 Vectors bucket (env PICTRACE_VECTOR_BUCKET)")
    p.add_argument("--vector-index", help="the index name or ARN (env PICTRACE_VECTOR_INDEX, default images)")
    p.add_argument("--keep-stale", action="store_true", help="do not delete vectors of images no longer indexed")
    p.set_defaults(run=cmd_vectors_backfill)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `pictrace` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 for --help/--version
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pictrace").setLevel(logging.INFO if args.verbose else logging.ERROR)
    out = Output(json=args.json, quiet=args.quiet)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        target = Target.from_args(args)
        code: int = args.run(args, target, out)
        return code
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except (ConfigError, ModelMismatch, WeightsUnavailable) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except PicTraceError as exc:  # NotFound from the bucket, conflicts, upstream failures
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_NOTHING if isinstance(exc, NotFound) else EXIT_SERVICE
    except KeyboardInterrupt:
        _error("interrupted; run the same command again to resume")
        return 130
    except (BotoCoreError, ClientError) as exc:  # S3: a service error, said in one line
        return _s3_failure(exc)
    except OSError as exc:
        _error(str(exc))
        return EXIT_SERVICE
    except Exception as exc:  # a bug: the traceback goes to stderr, and the exit code stays one scripts expect
        logger.exception("unexpected failure")
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_SERVICE


def _s3_failure(exc: Exception) -> int:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        _error("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return EXIT_USAGE
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        _error(f"S3 said {error.get('Code')}: {error.get('Message')} ({exc.operation_name})")
        return EXIT_SERVICE
    _error(f"S3: {exc}")
    return EXIT_SERVICE


def _error(message: str) -> None:
    sys.stderr.write(f"pictrace: error: {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
