"""`pictrace ingest`: a folder uploaded (pictrace.cli.upload), or objects already in a bucket indexed from here with
the ingest function's own code (the backfill)."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pictrace.cli.common import (
    CliError,
    NothingFound,
    Target,
    UsageError,
    api_call,
    settings_for,
    tally,
)
from pictrace.cli.render import Output, finish
from pictrace.cli.upload import upload

if TYPE_CHECKING:
    from pictrace.ingest import Ingestor, Outcome

logger = logging.getLogger(__name__)


def cmd_ingest(args: argparse.Namespace, target: Target, out: Output) -> int:
    source: str = args.source
    if source.startswith("s3://"):
        bucket, _, prefix = source[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"{source}: give s3://BUCKET/PREFIX")
        target.at(bucket)
        return backfill(args, target, out, prefix)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source}: no such file or folder (give a folder, an image, or s3://BUCKET/PREFIX)")
    return upload(args, target, out, path)


def _check_weights(ingestor: Ingestor, target: Target, out: Output) -> None:
    """Refuse to index with another model (weights, width, preprocessing) than the index or the API uses: their
    embeddings do not mix."""
    local, preprocess = ingestor.embedder.weights, ingestor.embedder.preprocess
    try:
        health = api_call(target, "GET", "/health")
    except CliError as exc:
        out.note(f"[yellow]note:[/yellow] could not ask the API which weights it uses ({exc})")
        health = {}
    served, served_preprocess = health.get("weights"), (health.get("model") or {}).get("preprocess")
    if (served and served != local) or (served_preprocess and served_preprocess != preprocess):
        raise UsageError(
            f"the model in {ingestor.settings.model_dir} holds weights {local!r} ({preprocess} preprocessing) but "
            f"the API at {target.api} uses {served!r} ({served_preprocess} preprocessing): build the same "
            f"(`make model WEIGHTS={served} PREPROCESS={served_preprocess}`) or pass --model-dir"
        )
    ingestor.index.check_model(ingestor.embedder)  # ModelMismatch: the index's record (or first entry) differs


def backfill(args: argparse.Namespace, target: Target, out: Output, prefix: str) -> int:
    """Run the ingest code on objects already in the bucket (e.g. put there before the stack existed)."""
    from pictrace.ingest import Ingestor

    settings = settings_for(target, args.model_dir)
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
    ingestor = Ingestor(settings, store=target.store())
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
            bar.update(task, advance=1, info=tally(Counter(o.action for o in outcomes)))
    summary = {
        "source": f"s3://{target.bucket}/{listed}",
        "objects": len(objects),
        "counts": dict(counts),
        "failed": failed,
        "outcomes": [{"key": o.key, "action": o.action, "id": o.id} for o in outcomes],
    }
    line = f"{len(objects)} objects under s3://{target.bucket}/{listed}: {tally(counts)}"
    return finish(out, summary, line, "; `--retry-failed` tries them again" if counts["failed before"] else "")


def _run(fn: Callable[[str], Outcome], keys: list[str], workers: int) -> Iterable[Outcome]:
    """fn over the keys on a few threads (downloads overlap; the embedder runs one image at a time)."""
    if not keys:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(fn, key) for key in keys]
        for future in as_completed(futures):
            yield future.result()
