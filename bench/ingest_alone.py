"""`python -m bench.ingest_alone [--images N]`: the large-ingest phase (bench.phases.large_ingest) alone, for the
default model, on a local stack of its own, with its goal and section as the report renders them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace

from bench.phases.large_ingest import NoLargeImages, large_ingest
from bench.profile import FULL


def main(argv: list[str] | None = None) -> int:
    """The large-ingest phase alone, for the default model, on a local stack of its own."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=FULL.large_images, help="large JPEGs (default: the full run's)")
    args = parser.parse_args(argv)
    for name, value in {
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "pictrace-bench",
        "POWERTOOLS_METRICS_NAMESPACE": "PicTraceBench",
    }.items():
        os.environ.setdefault(name, value)
    from pictrace.storage import s3_client

    from bench.models import run_configs
    from bench.report import ingest_goal, ingest_section
    from bench.stack import start_stack

    config = run_configs()[0]
    os.environ.setdefault("PICTRACE_MODEL_DIR", str(config.model_dir))
    stack = start_stack()
    s3_client.cache_clear()
    try:
        result = large_ingest(replace(FULL, large_images=args.images), stack, config)
    finally:
        stack.stop()
    print(json.dumps(asdict(result), indent=1))
    if isinstance(result, NoLargeImages):
        return 1
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(ingest_goal({"ingest_large": asdict(result)}))
    print("\n".join(ingest_section({"ingest_large": asdict(result)})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
