"""`pictrace stats`: what is indexed and what failed (from the index package's listings), and the API's weights."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from pictrace.cli.common import (
    EXIT_OK,
    CliError,
    ServiceError,
    Target,
    api_call,
    settings_for,
)
from pictrace.cli.render import Output, print_stats

logger = logging.getLogger(__name__)


def cmd_stats(args: argparse.Namespace, target: Target, out: Output) -> int:
    """The index's numbers from the bucket, and the weights the API runs with."""
    from pictrace.index.store import IndexStore

    settings = settings_for(target)
    index = IndexStore(target.store(), settings.index_prefix)
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
        print_stats(out, stats, pending)
    if error is not None:
        raise ServiceError(f"the API's weights are unknown: {error}")
    return EXIT_OK
