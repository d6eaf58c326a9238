"""bench.layersonly: the bench's fresh processes import only what the Lambda layers ship."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.common import ROOT
from bench.layersonly import ENV, hidden_env, lacking

CHILD = """
import json, sys
from bench.layersonly import hide
hide()
import aws_lambda_powertools, mangum, pictrace.api, pictrace.ingest, pictrace.search, pictrace.index.compaction
hidden = sys.argv[1].split(",")
print(json.dumps({"loaded": sorted(m for m in hidden if sys.modules.get(m) is not None)}))
"""


def test_what_the_layers_ship_is_not_hidden_and_the_test_tools_are() -> None:
    hidden = set(lacking())
    assert {"pytest", "moto"} <= hidden  # development tools the layers leave out
    assert not {"numpy", "cv2", "boto3", "botocore", "fastapi", "aiohttp", "onnxruntime", "pictrace"} & hidden
    assert hidden_env() == {ENV: ",".join(sorted(hidden))}


def test_the_handlers_library_imports_without_anything_the_layers_lack() -> None:
    env = {**os.environ, **hidden_env()}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, env[ENV]], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"loaded": []}


def test_every_python_started_with_lambda_site_on_its_path_hides_them() -> None:
    """bench/lambda_site (on the cold starts' PYTHONPATH) hides them in every Python those processes start, such as
    the exec wrapper's prefetch, which runs no bench code of its own."""
    env = {**os.environ, ENV: "fractions", "PYTHONPATH": os.pathsep.join([str(ROOT / "bench/lambda_site"), str(ROOT)])}
    code = "import sys\ntry:\n    import fractions\nexcept ImportError:\n    sys.exit(3)"
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    env.pop("PYTHONPATH")
    assert subprocess.run([sys.executable, "-c", code], cwd="/", env=env, check=False).returncode == 0
