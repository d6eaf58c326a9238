"""`pictrace delete`: an image removed from the bucket and dropped from the index at once."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pictrace.cli.common import (
    EXIT_OK,
    NothingFound,
    Target,
    UsageError,
    settings_for,
)
from pictrace.cli.render import Output
from pictrace.errors import NotFound
from pictrace.limits import is_entry_id

logger = logging.getLogger(__name__)


def cmd_delete(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Delete an image (by key, or every key of an id) from the bucket and drop it from the index."""
    from pictrace.ingest import Ingestor

    what: str = args.what
    if what.startswith("s3://"):
        bucket, _, what = what[len("s3://") :].partition("/")
        target.at(bucket)
    ingestor = Ingestor(settings_for(target), store=target.store())
    images = ingestor.settings.images_prefix
    if is_entry_id(what):
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
