"""The real app served over HTTP by uvicorn on 127.0.0.1 (a free port), with a local stack holding indexed photos.

Shared by the browser test and the CLI tests: they talk to the service the way people do, over real sockets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from infra.local import SqsWorker, free_port, load_handler
from tests.conftest import PHOTOS, ROOT, read


def index_photos(stack: Any, names: list[str] | None = None, prefix: str = "images/") -> SqsWorker:
    """Upload the test photos and index them through the queue and the real ingest handler."""
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    s3 = stack.client("s3")
    names = PHOTOS if names is None else names
    for name in names:
        s3.put_object(Bucket=stack.bucket, Key=f"{prefix}{name}", Body=read(name))
    worker.drain()
    assert worker.processed >= len(names) and worker.failed == 0
    return worker


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a background thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
