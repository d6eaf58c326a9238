"""What runs in Lambda agrees with what the tests run: the dependency layers, built by the same Makefile and trimmed
by the same rules but for this machine's interpreter, run PicTrace in a Python that sees nothing else.

The Lambda build itself (CPython 3.12) cannot be imported here (the interpreter is 3.11); the wheels differ only in
their CPython tag, so this checks the trims (LiteRT, numpy, OpenCV data, botocore models) and the split of the two
layers, and compares decode, ORB and embeddings with the development virtualenv's.
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
from pictrace.embedding import LiteRTEmbedder
out = {"modules": {m.__name__: m.__file__ for m in (np, cv2, boto3)}, "images": {}}
embedder = LiteRTEmbedder(sys.argv[2])
for name in json.loads(sys.argv[3]):
    image = decode_image(open(sys.argv[4] + "/" + name, "rb").read(), max_bytes=10**8, max_pixels=10**8)
    features = compute_features(image.bgr)
    out["images"][name] = {"shape": list(image.bgr.shape), "keypoints": len(features.keypoints),
                           "embedding": embedder.embed([image.bgr])[0].tolist()}
s3 = boto3.client("s3", region_name="us-east-1")
members = s3.meta.service_model.operation_model("PutObject").input_shape.members
out["put_if_match"] = "IfMatch" in members and "IfNoneMatch" in members
if len(paths) > 2:
    import os
    os.environ["PICTRACE_BUCKET"] = "probe"
    from pictrace.api import create_app
    import mangum, aiohttp, multipart
    out["routes"] = sorted(r.path for r in create_app().routes)
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


def probe(paths: list[Path]) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-S",  # no site-packages: only the layers (and the standard library)
            "-c",
            PROBE,
            json.dumps([str(p) for p in paths]),
            str(MODEL_DIR),
            json.dumps(PHOTOS),
            str(DATA),
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layers")
    return {"core": build("build-CoreDepsLayer", base / "core"), "api": build("build-ApiDepsLayer", base / "api")}


def test_trimmed_core_layer_decodes_describes_and_embeds_like_the_venv(layers: dict[str, Path]) -> None:
    from pictrace.embedding import LiteRTEmbedder
    from pictrace.images import decode_image
    from pictrace.rerank import compute_features

    pictrace = ROOT / "layers" / "pictrace"
    got = probe([pictrace, layers["core"]])
    for module, path in got["modules"].items():
        assert path.startswith(str(layers["core"])), f"{module} came from {path}, not the layer"
    assert got["put_if_match"]
    assert not (layers["core"] / "ai_edge_litert" / "libLiteRtWebGpuAccelerator.so").exists()  # the trims ran
    assert not list((layers["core"] / "numpy").rglob("tests"))
    reference = LiteRTEmbedder(MODEL_DIR)
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
