"""Worker processes of the bench (one per core), started by bench.run with the environment of its local stack.

`python -m bench.worker ingest QUEUE_URL`
    One "ingest Lambda container": the project's SqsWorker polling the stack's queue and calling the real ingest
    handler (functions/ingest/app.py), until terminated. Two of them play Lambda's concurrent invocations.
`python -m bench.worker search CASES.json OUT.json`
    Runs the quality queries of CASES.json through its own SearchService (LiteRT on one thread, as two workers
    share the two cores) and writes one record per query. Timings from here are not reported: the latency passes
    run alone, in the main process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def ingest(queue_url: str) -> int:
    from bench.stack import ingest_handler
    from infra.local import LocalStack, SqsWorker

    stop = False

    def terminate(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, terminate)
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    stack = LocalStack(bucket=os.environ["PICTRACE_BUCKET"], port=int(endpoint.rsplit(":", 1)[1]))
    stack.queue_url = queue_url
    worker = SqsWorker(stack, ingest_handler())
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF metrics (Powertools prints them)
        while not stop:
            worker.poll_once()
    print(json.dumps({"processed": worker.processed, "failed": worker.failed}))
    return 0


def search(cases_path: str, out_path: str) -> int:
    from pictrace.embedding import LiteRTEmbedder
    from pictrace.search import SearchService
    from pictrace.settings import Settings

    from bench.run import QueryCase, run_searches

    # the index does not change during the quality pass: one refresh, not a LIST of the bucket every 2 s
    settings = Settings.from_env(refresh_seconds=86400.0)
    service = SearchService(settings, embedder=LiteRTEmbedder(settings.model_dir, num_threads=1))
    service.index.refresh(force=True)
    cases = [QueryCase(**c) for c in json.loads(Path(cases_path).read_text())]
    loop = asyncio.new_event_loop()
    started = time.perf_counter()
    records = run_searches(service, cases, loop)
    loop.close()
    Path(out_path).write_text(json.dumps({"records": records, "seconds": time.perf_counter() - started}))
    return 0


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    if argv[0] == "ingest":
        return ingest(argv[1])
    if argv[0] == "search":
        return search(argv[1], argv[2])
    raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
