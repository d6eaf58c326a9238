"""SnapStart's restore path, run locally as Lambda's runtime runs it (pictrace.snapstart.restore_locally): the
before-snapshot hooks load the model, the index and the indexed images' features, the after-restore hooks renew the
clients and the index's refresh clock, and the first request after a restore is answered from the index already in
memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from unittest import mock

from infra.local import SqsWorker, load_handler
from tests.conftest import ROOT, read

SCRIPT = r"""
import hashlib, json, sys
from infra.local import LambdaContext, load_handler
from tests.functional.helpers import load_event, sqs_s3_event
from pictrace.snapstart import restore_locally
from pictrace.storage import s3_client

bucket, new_image = sys.argv[1], sys.argv[2]
search = load_handler("functions/search/app.py")  # registers the search function's hooks
service = sys.modules["lambda_search_app"].app.state.service()
before = s3_client()
# the snapshot: hooks run, then (while it waits to be restored) a new photo is indexed by the ingest function
for func, args, kwargs in reversed(__import__("snapshot_restore_py").get_before_snapshot()):
    func(*args, **kwargs)
entries = [key for key, _, _ in service.store.list(service.layout.entries_prefix)]
warmed = {"model_loaded": service._embedder is not None, "indexed": service.backend.count(),
          "features_cached": sum(key in service.fetcher for key in entries)}
body = open(new_image, "rb").read()
before.put_object(Bucket=bucket, Key="images/new.png", Body=body)
ingest = load_handler("functions/ingest/app.py")
assert ingest(sqs_s3_event(bucket, ["images/new.png"]), LambdaContext()) == {"batchItemFailures": []}
# the restore
after_hooks = __import__("snapshot_restore_py").get_after_restore()
for func, args, kwargs in after_hooks:
    func(*args, **kwargs)
gets = []  # GETs sent (presigning the links the features are fetched through sends nothing)
s3_client().meta.events.register("before-send.s3.GetObject", lambda request, **kw: gets.append(request.url))
event = load_event("apigw_search_id.json")
event["body"] = json.dumps({"id": hashlib.sha256(body).hexdigest(), "top_k": 3})
response = search(event, LambdaContext())
print(json.dumps({"warmed": warmed, "renewed_client": s3_client() is not before, "status": response["statusCode"],
                  "body": json.loads(response["body"]), "gets": gets}))
"""


def test_the_restore_path_answers_from_the_index_loaded_before_the_snapshot(stack: Any) -> None:
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    for name in ("astronaut.jpg", "chelsea.webp", "rocket.bmp"):
        stack.client("s3").put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    worker.drain()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PICTRACE_REFRESH_SECONDS": "3600",
    }  # only expire() refreshes
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, stack.bucket, str(ROOT / "tests/data/coffee.png")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # loaded before the snapshot, not on request: the model, the index, the indexed images' features
    assert out["warmed"] == {"model_loaded": True, "indexed": 3, "features_cached": 3}
    assert out["renewed_client"]  # a restored copy does not reuse the snapshot's client (connections, credentials)
    assert out["status"] == 200, out["body"]
    top = out["body"]["results"][0]
    assert top["keys"] == ["images/new.png"] and top["match"] is not False  # indexed after the snapshot, found
    # the first request after the restore read what changed since the snapshot, not the whole index again
    entries = [url for url in out["gets"] if "/index/entries/" in url]
    assert len(entries) == 1, out["gets"]


def test_the_ingest_warm_up_creates_the_s3_client_a_restored_copy_renews(stack: Any) -> None:
    """Ingest's before-snapshot warm-up creates the S3 client (botocore reads its S3 service model then, not on a
    restored copy's first request); the after-restore hooks drop it, and the next use creates a new one."""
    from pictrace.ingest import get_ingestor
    from pictrace.snapstart import renew_clients
    from pictrace.storage import s3_client

    s3_client.cache_clear()
    ingestor = get_ingestor()
    timings = ingestor.warm()
    assert set(timings) == {"model", "client"} and s3_client.held() == 1
    # the index's model record was checked (or claimed) before the snapshot: the first ingest reads it no more
    record = ingestor.index.model_record()
    assert record is not None and record["weights"] == ingestor.embedder.weights
    with mock.patch.object(ingestor.store, "get", side_effect=AssertionError("read the model record again")):
        ingestor.index.check_model(ingestor.embedder, claim=True)
    before = s3_client()
    renew_clients()
    assert s3_client.held() == 0 and s3_client() is not before
