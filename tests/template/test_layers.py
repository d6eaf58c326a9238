"""What runs in Lambda agrees with what the tests run: the dependency layers, built by the same Makefile and trimmed
by the same rules but for this machine's interpreter, run PicTrace in a Python that sees nothing else.

The development interpreter is CPython 3.12, Lambda's, so on x86_64 these are the very wheels `sam build` ships; this
checks the trims (ONNX Runtime, numpy, OpenCV data, botocore models) and the split of the two layers, creates every
AWS client a function can use, and compares decode, ORB and embeddings with the development virtualenv's.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import DATA, MODEL_DIR, PHOTOS
from tests.template.test_template import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]

PROBE = r"""
import json, sys
paths = json.loads(sys.argv[1])
sys.path[:0] = paths
import numpy as np, cv2, boto3
from pictrace.images import decode_image
from pictrace.rerank import compute_features
from pictrace.embedding import OnnxEmbedder
out = {"modules": {m.__name__: m.__file__ for m in (np, cv2, boto3)}, "images": {}}
embedder = OnnxEmbedder(sys.argv[2])
for name in json.loads(sys.argv[3]):
    image = decode_image(open(sys.argv[4] + "/" + name, "rb").read(), max_bytes=10**8, max_pixels=10**8)
    features = compute_features(image.bgr)
    out["images"][name] = {"shape": list(image.bgr.shape), "keypoints": len(features.keypoints),
                           "embedding": embedder.embed([image.bgr])[0].tolist()}
s3 = boto3.client("s3", region_name="us-east-1")
members = s3.meta.service_model.operation_model("PutObject").input_shape.members
out["put_if_match"] = "IfMatch" in members and "IfNoneMatch" in members
out["clients"] = sorted(boto3.client(n, region_name="us-east-1").meta.service_model.service_name
                        for n in ("s3", "s3vectors", "lambda", "sts", "sqs", "events"))
if len(paths) > 2:
    import os
    os.environ["PICTRACE_BUCKET"] = "probe"
    from pictrace.api import create_app
    import mangum, aiohttp, multipart
    out["routes"] = sorted(create_app().openapi()["paths"])  # routers are included lazily: no .path on them
print(json.dumps(out))
"""


def build(target: str, out: Path) -> Path:
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    result = subprocess.run(
        [
            "make",
            "--makefile",
            str(ROOT / "layers/deps/Makefile"),
            target,
            f"ARTIFACTS_DIR={out}",
            f"ARCH={arch}",
            f"PYTHON={sys.executable}",
            f"PYTHON_VERSION={version}",
        ],
        cwd=out.parent,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "python"


def isolated(script: str, paths: list[Path], *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run script in a Python that sees only `paths` (and the standard library); the JSON its last line prints."""
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, json.dumps([str(p) for p in paths]), *args],  # -S: no site-packages
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def probe(paths: list[Path]) -> dict[str, Any]:
    return isolated(PROBE, paths, str(MODEL_DIR), json.dumps(PHOTOS), str(DATA))


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layers")
    return {"core": build("build-CoreDepsLayer", base / "core"), "api": build("build-ApiDepsLayer", base / "api")}


def test_trimmed_core_layer_decodes_describes_and_embeds_like_the_venv(layers: dict[str, Path]) -> None:
    from pictrace.embedding import OnnxEmbedder
    from pictrace.images import decode_image
    from pictrace.rerank import compute_features

    pictrace = ROOT / "layers" / "pictrace"
    got = probe([pictrace, layers["core"]])
    for module, path in got["modules"].items():
        assert path.startswith(str(layers["core"])), f"{module} came from {path}, not the layer"
    assert got["put_if_match"]
    # every client a function creates, any backend (service names: events is EventBridge's)
    assert got["clients"] == ["events", "lambda", "s3", "s3vectors", "sqs", "sts"]
    assert not list((layers["core"] / "onnxruntime" / "capi").glob("libonnxruntime.so*"))  # the trims ran
    assert not list((layers["core"] / "numpy").rglob("tests"))
    reference = OnnxEmbedder(MODEL_DIR)
    for name in PHOTOS:
        image = decode_image((DATA / name).read_bytes(), max_bytes=10**8, max_pixels=10**8)
        features = compute_features(image.bgr)
        layer = got["images"][name]
        assert layer["shape"] == list(image.bgr.shape), name
        assert abs(layer["keypoints"] - len(features.keypoints)) <= max(2, len(features.keypoints) // 50), name
        cosine = float(np.dot(np.asarray(layer["embedding"], dtype=np.float32), reference.embed([image.bgr])[0]))
        assert cosine >= 0.9999, (name, cosine)


def test_api_layer_completes_the_core_layer_for_search(layers: dict[str, Path]) -> None:
    core = {p.name for p in layers["core"].iterdir()}
    api = {p.name for p in layers["api"].iterdir()}
    assert not core & api
    got = probe([ROOT / "layers" / "pictrace", layers["core"], layers["api"]])
    assert {"/health", "/search"} <= set(got["routes"])


HANDLER = r"""
import importlib.util, json, os, sys
paths = json.loads(sys.argv[1])
sys.path[:0] = paths
app_path, event_path = sys.argv[2], sys.argv[3]


class Context:  # what Powertools reads of Lambda's context object
    function_name = "probe"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:probe"
    aws_request_id = "probe"


spec = importlib.util.spec_from_file_location("app", app_path)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
result = app.lambda_handler(json.load(open(event_path)), Context())
loaded = {n: getattr(sys.modules.get(n), "__file__", None) for n in ("boto3", "botocore", "numpy", "cv2", "onnxruntime",
                                                                     "fastapi", "mangum", "aiohttp", "pictrace")}
print(json.dumps({"result": result, "modules": {k: v for k, v in loaded.items() if v}}))
"""

FUNCTION_LAYERS = {
    "ingest": ["core"],
    "compact": ["core"],
    "search": ["core", "api"],
    "copies": ["core", "api"],
    "details": ["core"],
}


def run_handler(function: str, event: Path, layers: dict[str, Path], env: dict[str, str]) -> dict[str, Any]:
    """The function's handler in a Python that sees only its code and its layers, as Lambda runs it."""
    paths = [ROOT / "functions" / function, ROOT / "layers" / "pictrace"] + [
        layers[name] for name in FUNCTION_LAYERS[function]
    ]
    data = isolated(HANDLER, paths, str(paths[0] / "app.py"), str(event), env=env)
    for module, path in data["modules"].items():
        allowed = [str(p) for p in paths]
        assert any(path.startswith(a) for a in allowed), f"{function}: {module} came from {path}, not its layers"
    return data


@pytest.mark.parametrize("backend", ["segments", "s3vectors"])
def test_each_handler_runs_on_its_built_layers_against_the_local_stack(
    layers: dict[str, Path], stack: Any, backend: str, tmp_path: Path
) -> None:
    """Issue 16: the artifact, not the source tree. Ingest, compaction and search each run once on the trimmed layers
    (their own boto3, botocore models, ONNX Runtime), under each index backend."""
    import hashlib
    import uuid

    import boto3
    from pictrace.index.vectors import VectorIndex

    from tests.functional.helpers import load_event, sqs_s3_event

    env = {**stack.env(), "PICTRACE_MODEL_DIR": str(MODEL_DIR), "PICTRACE_REFRESH_SECONDS": "0"}
    env.update(POWERTOOLS_SERVICE_NAME="probe", POWERTOOLS_METRICS_NAMESPACE="Probe", POWERTOOLS_DEV="false")
    vectors = None
    if backend == "s3vectors":
        bucket = f"probe-vectors-{uuid.uuid4().hex[:8]}"
        client = boto3.client("s3vectors", endpoint_url=stack.endpoint, region_name="us-east-1")
        vectors = VectorIndex(bucket, "images", client)
        vectors.create(512)
        env.update(
            PICTRACE_INDEX_BACKEND="s3vectors",
            PICTRACE_VECTOR_BUCKET=bucket,
            PICTRACE_VECTOR_INDEX="images",
            AWS_ENDPOINT_URL_S3VECTORS=stack.endpoint,
        )
    data = (DATA / "astronaut.jpg").read_bytes()
    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/astronaut.jpg", Body=data)
    events = tmp_path / "events"
    events.mkdir()
    (events / "sqs.json").write_text(json.dumps(sqs_s3_event(stack.bucket, ["images/astronaut.jpg"])))
    (events / "compact.json").write_text(json.dumps(load_event("scheduled_compact.json")))
    (events / "health.json").write_text(json.dumps(load_event("apigw_health.json")))

    ingested = run_handler("ingest", events / "sqs.json", layers, env)
    assert ingested["result"] == {"batchItemFailures": []}
    assert "onnxruntime" in ingested["modules"] and "fastapi" not in ingested["modules"]
    entry_id = hashlib.sha256(data).hexdigest()
    stack.client("s3").head_object(Bucket=stack.bucket, Key=f"index/entries/{entry_id}.npz")
    if vectors is not None:
        assert list(vectors.ids()) == [entry_id]  # mirrored through the layer's s3vectors client
    compacted = run_handler("compact", events / "compact.json", layers, env)
    assert compacted["result"]["folded"] == 1
    health = run_handler("search", events / "health.json", layers, env)
    assert health["result"]["statusCode"] == 200, health["result"]
    body = json.loads(health["result"]["body"])
    assert body["weights"] == "sscd" and body["backend"] == "onnxruntime"
