"""`pictrace vectors-backfill`: every indexed image mirrored into the S3 Vectors index."""

from __future__ import annotations

import argparse
import logging

from pictrace.cli.common import (
    EXIT_OK,
    NothingFound,
    Target,
    UsageError,
    settings_for,
)
from pictrace.cli.render import Output

logger = logging.getLogger(__name__)


def cmd_vectors_backfill(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Mirror every indexed image into the S3 Vectors index (a stack switched to IndexBackend=s3vectors); what is
    pruned is what the index no longer holds when the put phase is over, so it may run while ingest does."""
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.store import IndexStore
    from pictrace.index.vectors import VectorIndex, backfill

    settings = settings_for(target)
    bucket = args.vector_bucket or settings.vector_bucket
    name = args.vector_index or settings.vector_index
    if not (bucket or name.startswith("arn:")):
        raise UsageError("name the vector index: --vector-index ARN, or --vector-bucket NAME (the stack's outputs)")
    vectors = VectorIndex(bucket, name)
    index_store = IndexStore(target.store(), settings.index_prefix)
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
