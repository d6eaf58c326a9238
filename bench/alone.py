"""One phase alone, with its section and goal as the report renders them:

python -m bench.alone ingest [--images N]     the large-ingest phase, for the default model, on a stack of its own
python -m bench.alone capacity [--n N ...] [--dim D] [--work DIR] [--out build/capacity.json]   (make capacity)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from bench.models import run_configs
from bench.profile import FULL
from bench.report.page import render_tables
from bench.results import ModelResult, Results
from bench.run import ENVIRONMENT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    phases = parser.add_subparsers(dest="phase", required=True)
    ingest = phases.add_parser("ingest", help="the large-ingest phase (the default model)")
    ingest.add_argument("--images", type=int, default=FULL.large_images, help="large JPEGs (default: the full run's)")
    cap = phases.add_parser("capacity", help="the segmented index at large N (synthetic vectors)")
    cap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    cap.add_argument("--dim", type=int, default=512)
    cap.add_argument("--work", type=Path, default=None, help="where the segments are written (default: /tmp)")
    cap.add_argument("--out", type=Path, default=Path("build/capacity.json"))
    args = parser.parse_args(argv)
    os.environ.update({name: value for name, value in ENVIRONMENT.items() if name not in os.environ})
    r = Results(profile=replace(FULL, large_images=getattr(args, "images", FULL.large_images)))
    if args.phase == "ingest":
        from pictrace.storage import ProcessClients

        from bench.phases.large_ingest import NoLargeImages, large_ingest
        from bench.stack import start_stack

        config = run_configs()[0]
        os.environ.setdefault("PICTRACE_MODEL_DIR", str(config.model_dir))
        stack = start_stack()
        ProcessClients.clear_all()
        try:
            r.models[config.label] = ModelResult(config, "", ingest_large=large_ingest(r.profile, stack, config))
        finally:
            stack.stop()
        if isinstance(none := r.models[config.label].ingest_large, NoLargeImages):
            print(none.error)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    else:
        from bench.phases.capacity import capacity

        r.capacity = capacity(args.n, args.work, args.dim)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r.capacity, indent=1) + "\n")
        print(f"wrote {args.out}")
    print(render_tables(r))
    return 0 if r.ingest_large or (r.capacity and not r.capacity["failures"]) else 1


if __name__ == "__main__":
    sys.exit(main())
