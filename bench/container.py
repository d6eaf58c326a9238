"""`python -m bench.container FUNCTION PATH SPAWNED_AT ARG`: one cold start of the search or ingest function in this
fresh process, on the bench's local stack, with what the layers do not ship hidden (bench.layersonly). PATH: new (init
step by step), lambda (as Lambda runs it) or restore (SnapStart); ARG: the query image or a new image's key. Prints
one JSON object of milliseconds from SPAWNED_AT (interpreter, import, acquire, model, index, first, second, cpu);
docs/benchmarks.md says what each is.
"""

from __future__ import annotations

import sys
import time

SPAWN_SEEN = time.time()

from bench.layersonly import hide  # noqa: E402

hide()  # what the layers do not ship fails to import, as in Lambda

import base64  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote_plus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Context:
    """Enough of Lambda's context object for Powertools."""

    def __init__(self, function_name: str) -> None:
        self.function_name, self.memory_limit_in_mb, self.aws_request_id = function_name, 2048, str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_app(function: str) -> ModuleType:
    """functions/<function>/app.py imported as Lambda's runtime imports a handler module."""
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{function}_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def search_event(query: bytes) -> dict[str, Any]:
    """An HTTP API (payload 2.0) POST /search event carrying the image as image_base64, from the committed sample."""
    sample: dict[str, Any] = json.loads((ROOT / "events/apigw_search_id.json").read_text())
    raw = json.dumps({"image_base64": base64.b64encode(query).decode(), "top_k": 10})
    headers = {**sample["headers"], "content-length": str(len(raw))}
    return {**sample, "headers": headers, "body": raw, "isBase64Encoded": False}


def ingest_event(key: str) -> dict[str, Any]:
    """An SQS batch of one message carrying the S3 notification of a new object, from the committed sample."""
    sample: dict[str, Any] = json.loads((ROOT / "events/sqs_s3_put.json").read_text())
    bucket = os.environ["PICTRACE_BUCKET"]
    body = json.loads((record := sample["Records"][0])["body"])
    body["Records"][0]["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    body["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe="/")
    return {"Records": [{**record, "body": json.dumps(body), "messageId": str(uuid.uuid4())}]}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timed(out: dict[str, Any], key: str, step: Callable[[], Any]) -> Any:
    """step(), its milliseconds in out[key]."""
    t = time.perf_counter()
    result = step()
    out[key] = ms(time.perf_counter() - t)
    return result


def fetch_record(f: Any) -> dict[str, Any]:
    """A model fetch's figures (pictrace.modelfetch.Fetched) as the output reports them."""
    times = {f"{k}_ms": ms(getattr(f, f"{k}_s")) for k in ("lookup", "download", "extract")}
    return {"archive_bytes": f.archive_bytes, **times}


def new_container(function: str, arg: str) -> dict[str, Any]:
    """A new container without SnapStart: init step by step, then the first request (and, search, a second)."""
    out: dict[str, Any] = {}
    app = timed(out, "import_ms", lambda: load_app(function))
    from pictrace.modelfetch import acquire_model
    from pictrace.settings import get_settings

    acquired = timed(out, "acquire_ms", lambda: acquire_model(get_settings()))
    out["model_source"] = acquired.source
    if acquired.fetched is not None:
        out["fetch"] = fetch_record(acquired.fetched)
    # the service the function's handler runs: what its first request loads the model (and index) into
    service = (
        app.app.state.service() if function == "search" else importlib.import_module("pictrace.ingest").get_ingestor()
    )
    timed(out, "model_ms", lambda: service.embedder)  # as the function loads it (ingest: single-threaded inferences)
    timed(out, "index_ms", lambda: function == "search" and service.backend.refresh(force=True))
    out.update(requests(app, function, arg))
    out["cpu_ms"] = ms(out.pop("cpu_done"))
    return out


def as_lambda_runs(function: str, arg: str) -> dict[str, Any]:
    """A new container without SnapStart as Lambda runs it: the import, the first request and (search) a second."""
    out: dict[str, Any] = {}
    app = timed(out, "import_ms", lambda: load_app(function))
    out.update(requests(app, function, arg))
    out["cpu_ms"] = ms(out.pop("cpu_done"))
    from pictrace.modelfetch import acquired_here

    acquired = acquired_here()  # None: the model was there (attached, or fetched by the prefetch in time)
    if acquired is not None and acquired.fetched is not None:  # the first request fetched the model
        out["fetch"] = fetch_record(acquired.fetched)
    if prefetch_cpu := children_cpu_s():  # started through the exec wrapper: its prefetch ran beside the import
        out["prefetch_cpu_ms"] = ms(prefetch_cpu)
        out["acquire_wait_ms"] = ms(acquired.waited_s if acquired is not None else 0.0)
    return out


def children_cpu_s() -> float:
    """CPU seconds of this process's ended children: the exec wrapper's prefetch (the wrapper became this process)."""
    import contextlib
    import resource

    with contextlib.suppress(ChildProcessError):
        while True:
            os.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def restored(function: str, arg: str) -> dict[str, Any]:
    """SnapStart: init and the before-snapshot hooks, then the restore path: after-restore hooks, first request."""
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    out: dict[str, Any] = {}
    app = timed(out, "import_ms", lambda: load_app(function))  # registers the hooks (pictrace.snapstart.register)
    timed(out, "snapshot_hooks_ms", lambda: [f(*args, **kwargs) for f, args, kwargs in reversed(get_before_snapshot())])
    restore_started, cpu = time.time(), time.process_time()
    timed(out, "restore_hooks_ms", lambda: [f(*args, **kwargs) for f, args, kwargs in get_after_restore()])
    out.update(requests(app, function, arg))
    out["restore_path_ms"] = ms(out.pop("first_done") - restore_started)
    out["cpu_ms"] = ms(out.pop("cpu_done") - cpu)
    return out


def requests(app: ModuleType, function: str, arg: str) -> dict[str, Any]:
    """The first request through the real handler (and for search a second, warm); first_done: time.time()."""
    out: dict[str, Any] = {}
    event = search_event(Path(arg).read_bytes()) if function == "search" else ingest_event(arg)
    first = timed(out, "first_ms", lambda: app.lambda_handler(event, Context(f"{function.capitalize()}Function")))
    out["first_done"] = time.time()
    out["cpu_done"] = time.process_time()
    if function == "search":
        body = json.loads(first["body"])
        out["status"] = first["statusCode"]
        out["first_stages"] = body.get("timings_ms", {})
        out["indexed"] = body.get("indexed")
        second = timed(out, "second_ms", lambda: app.lambda_handler(event, Context("SearchFunction")))
        out["second_status"] = second["statusCode"]
    else:
        out["status"] = 200 if first == {"batchItemFailures": []} else 500
        if out["status"] == 200 and not indexed(arg):  # a refused image (recorded, acknowledged) is not an ingest
            raise SystemExit(f"the first request did not index {arg}: this cold start measured no ingest")
    return out


def indexed(key: str) -> bool:
    """Whether the index has an entry for the image key (after the timed request)."""
    from pictrace.index.store import IndexStore
    from pictrace.settings import get_settings
    from pictrace.storage import Store

    settings = get_settings()
    return IndexStore(Store(settings.bucket), settings.index_prefix).pointer(key) is not None


def main(argv: list[str]) -> int:
    function, path, spawned_at, arg = argv[0], argv[1], float(argv[2]), argv[3]
    paths = {"new": new_container, "lambda": as_lambda_runs, "restore": restored}
    if function not in ("search", "ingest") or path not in paths:
        raise SystemExit(__doc__)
    out: dict[str, Any] = {"function": function, "path": path, "interpreter_ms": ms(SPAWN_SEEN - spawned_at)}
    out.update(paths[path](function, arg))
    if "first_done" in out:
        out["total_ms"] = ms(out.pop("first_done") - spawned_at)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
