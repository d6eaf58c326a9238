"""`python -m bench.coldstart SPAWNED_AT QUERY_FILE`: one cold start of the search Lambda, in this fresh process.

Run by bench.run with the environment pointing at the bench's local stack. Measures, from the moment the parent
spawned this process (SPAWNED_AT, time.time()):
    interpreter  until this module runs (Python start-up, site-packages)
    import       importing functions/search/app.py (FastAPI app, Mangum, pictrace) as Lambda's init phase does
    model        loading the ONNX model (the app loads it on first use; done here first to time it apart)
    first        the first request through the real handler: POST /search with the query as image_base64
                 (its own stages in the response: the first refresh loads the whole index from S3)
    second       the same request again, warm
Prints one JSON object.
"""

from __future__ import annotations

import time

SPAWN_SEEN = time.time()

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def event(body: dict[str, object]) -> dict[str, object]:
    """An HTTP API (payload 2.0) POST /search event, from the committed sample."""
    sample: dict[str, object] = json.loads((ROOT / "events/apigw_search_id.json").read_text())
    raw = json.dumps(body)
    headers = dict(sample["headers"])  # type: ignore[call-overload]
    headers["content-length"] = str(len(raw))
    return {**sample, "headers": headers, "body": raw, "isBase64Encoded": False}


def main(argv: list[str]) -> int:
    spawned_at = float(argv[0])
    query = Path(argv[1]).read_bytes()
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    from infra.local import LambdaContext, load_handler

    handler = load_handler(ROOT / "functions/search/app.py")
    t1 = time.perf_counter()
    from pictrace.embedding import get_embedder

    get_embedder(os.environ["PICTRACE_MODEL_DIR"], os.environ.get("PICTRACE_WEIGHTS", ""))
    t2 = time.perf_counter()
    request = event({"image_base64": base64.b64encode(query).decode(), "top_k": 10})
    first = handler(request, LambdaContext(function_name="SearchFunction"))
    t3 = time.perf_counter()
    first_done = time.time()
    second = handler(request, LambdaContext(function_name="SearchFunction"))
    t4 = time.perf_counter()
    body1 = json.loads(first["body"])
    body2 = json.loads(second["body"])
    print(
        json.dumps(
            {
                "interpreter_ms": (SPAWN_SEEN - spawned_at) * 1000,
                "import_ms": (t1 - t0) * 1000,
                "model_ms": (t2 - t1) * 1000,
                "first_request_ms": (t3 - t2) * 1000,
                "total_ms": (first_done - spawned_at) * 1000,
                "second_request_ms": (t4 - t3) * 1000,
                "status": [first["statusCode"], second["statusCode"]],
                "first_stages": body1.get("timings_ms", {}),
                "second_stages": body2.get("timings_ms", {}),
                "indexed": body1.get("indexed"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
