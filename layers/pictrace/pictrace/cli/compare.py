"""`pictrace compare`: why a query matches one indexed image (the API's /compare), as numbers or a picture."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pictrace.cli.common import (
    EXIT_OK,
    NothingFound,
    Target,
    api_bytes,
    api_call,
    query_request,
    settings_for,
)
from pictrace.cli.render import Output, print_comparison
from pictrace.limits import is_entry_id

logger = logging.getLogger(__name__)


def cmd_compare(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Compare a query with one indexed image (POST /compare): the evidence, and the picture with --out."""
    request = query_request(args.query)
    image_id = args.image if is_entry_id(args.image) else _id_of_key(target, args.image)
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
    print_comparison(out, body)
    if saved:
        out.out.print(f"picture {saved['path']} ({kind.upper()}, {saved['bytes']} bytes)", markup=False)
    return EXIT_OK


def _id_of_key(target: Target, key: str) -> str:
    """The id of the image an image key (images/… or a name under it) holds, from the index in the bucket."""
    from pictrace.index.store import IndexStore

    if key.startswith("s3://"):
        bucket, _, key = key[len("s3://") :].partition("/")
        target.at(bucket)
    settings = settings_for(target)
    index = IndexStore(target.store(), settings.index_prefix)
    images = settings.images_prefix
    for candidate in [key] if key.startswith(images) else [key, images + key]:
        found = index.pointer(candidate)
        if found:
            return found
    raise NothingFound(f"no indexed image under the key {key!r} in {target.where()} (give a key or an image id)")
