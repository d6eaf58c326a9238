"""Worker processes of the bench, started with the environment of its local stack:

moto HOST PORT               moto's server alone in this process (bench.stack.ProcessMotoServer)
ingest|copies|details QUEUE_URL  the project's SqsWorker calling that function's real handler until terminated,
                             then printing the messages processed and failed, the seconds in the handler, its CPU
search CASES.json OUT.json   the quality queries through a SearchService of its own (one ONNX thread)
index KEYS.json MODELS.json  the side models' index entries, each image decoded and described once
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def serve(function: str, queue_url: str) -> int:
    """The project's SqsWorker calling functions/<function>/app.py's handler until terminated; prints processed,
    failed, the seconds in the handler and the process's CPU seconds."""
    from infra.local import LocalStack, SqsWorker, load_handler

    handler, function_name = load_handler(ROOT / f"functions/{function}/app.py"), f"{function.capitalize()}Function"
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    port = int(os.environ["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1])
    stack = LocalStack(bucket=os.environ["PICTRACE_BUCKET"], port=port)
    spent = 0.0

    def timed(event: dict[str, Any], context: Any) -> Any:
        nonlocal spent
        started = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            spent += time.perf_counter() - started

    worker = SqsWorker(stack, timed, queue_url=queue_url, function_name=function_name)
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's EMF metrics (Powertools prints them)
        while not stop:
            worker.poll_once()
    report = {"processed": worker.processed, "failed": worker.failed, "handler_s": round(spent, 3)}
    print(json.dumps(report | {"cpu_s": round(time.process_time(), 2)}))
    return 0


def search(cases_path: str, out_path: str) -> int:
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.backend import MemoryBackend
    from pictrace.search import SearchService
    from pictrace.settings import Settings
    from pictrace.storage import Store
    from pictrace.verdict import model_key
    from pictrace.wiring import wire

    from bench.searching import QueryCase, RankProbe, run_searches

    # the index does not change during the quality pass: one refresh, not a LIST of the bucket every 2 s
    settings = Settings.from_env(refresh_seconds=86400.0)
    store = Store(settings.bucket)
    memory = wire(settings, store).backend
    if not isinstance(memory, MemoryBackend):
        raise SystemExit(f"the quality pass ranks over the in-memory index, not {memory.name}")
    probe = RankProbe(memory)
    embedder = OnnxEmbedder(settings.model_dir, num_threads=1)
    probe.refresh(force=True)
    scoring = settings.scoring(embedder.weights, embedder.preprocess)
    if not scoring.centre:  # no calibration yet: centred on this index's mean, which `make fit-fusion` then keeps
        scoring = replace(scoring, centre=tuple(float(x) for x in memory.index.matrix.mean(axis=0)))
    service = SearchService(settings, store, embedder, backend=probe, scoring=scoring)
    cases = [QueryCase(**c) for c in json.loads(Path(cases_path).read_text())]
    loop = asyncio.new_event_loop()
    started = time.perf_counter()
    records = run_searches(service, cases, loop, rank_probe=probe)
    loop.close()
    model = model_key(embedder.weights, embedder.preprocess)
    out = {"records": records, "seconds": time.perf_counter() - started, "model": model, "centre": scoring.centre}
    Path(out_path).write_text(json.dumps(out))
    return 0


def index(keys_path: str, models_path: str) -> int:
    """Index the keys for each side model: one pass of the image pipeline, then each model's embedding."""
    from pictrace.embedding import OnnxEmbedder
    from pictrace.index.layout import Entry, now_iso
    from pictrace.index.store import IndexStore
    from pictrace.pipeline import embed_content, prepare
    from pictrace.settings import Settings
    from pictrace.storage import Store

    settings = Settings.from_env()
    store = Store(settings.bucket)
    models = [
        (OnnxEmbedder(model_dir, num_threads=1), IndexStore(store, prefix))
        for model_dir, prefix in json.loads(Path(models_path).read_text())
    ]
    for embedder, index_store in models:
        index_store.check_model(embedder, claim=True)
    if not models:
        print(json.dumps({"written": 0}))
        return 0
    written, first = 0, models[0][0]
    for key in json.loads(Path(keys_path).read_text()):
        body = store.get(key).body
        prepared = prepare(body, lambda: first, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels)
        for embedder, index_store in models:
            meta = {**prepared.described(), "created": now_iso(), "content_box": prepared.content_box()}
            meta.update(weights=embedder.weights, preprocess=embedder.preprocess)
            embedding, features = prepared.embedding, prepared.features
            if embedder is not first:  # its own embeddings: the content's and its framed photo's (pictrace.frames)
                embedding, inner = embed_content(embedder, prepared.content)
                features = replace(features, inner=inner)
            entry = Entry(hashlib.sha256(body).hexdigest(), (key,), embedding, features, meta)
            index_store.create_or_add_key(entry, key)
            written += 1
    print(json.dumps({"written": written}))
    return 0


def moto(host: str, port: str) -> int:
    from infra.motoserver import moto_server

    parent = os.getppid()
    server = moto_server(host, int(port))
    server.start()
    while os.getppid() == parent:  # the bench died without stopping us: do not outlive it
        time.sleep(1)
    server.stop()
    return 0


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    commands: dict[str, Callable[..., int]] = {"search": search, "index": index, "moto": moto}
    commands.update({f: partial(serve, f) for f in ("ingest", "copies", "details")})
    if not argv or argv[0] not in commands:
        raise SystemExit(__doc__)
    return commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
