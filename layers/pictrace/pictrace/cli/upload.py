"""`pictrace ingest PATH`: upload a folder's images under the images prefix and wait for the stack to index them."""

from __future__ import annotations

import argparse
import hashlib
import logging
import mimetypes
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pictrace.cli.common import (
    IMAGE_SUFFIXES,
    NothingFound,
    ServiceError,
    Target,
    UsageError,
    settings_for,
    tally,
)
from pictrace.cli.render import Output, finish

if TYPE_CHECKING:
    from rich.progress import Progress


logger = logging.getLogger(__name__)


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

    settings = settings_for(target, args.model_dir)
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
    store = target.store()
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
                bar.update(task, advance=1, info=tally(counts))
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
    line = f"{len(plans)} images from {path} to s3://{target.bucket}/{key_prefix}: {tally(counts)}"
    if waiting and args.wait > 0:
        line += f"; indexed now: {final['indexed']}"
    elif waiting:
        line += " (not waiting for the index: --wait 0)"
    return finish(out, summary, line)


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
