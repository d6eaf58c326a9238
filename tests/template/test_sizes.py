"""Size budget: `sam build` for each architecture (into a temporary build dir), then every function plus the layers
it attaches must fit Lambda's limits.

Lambda counts a function's code and all its layers, extracted, against 262,144,000 bytes (250 MB). The zips that
`sam deploy` uploads go through S3 (samconfig.toml: resolve_s3), so the 50 MB limit of direct uploads does not
apply; each zip must still extract within the 250 MB. Run with `-s` to see the table.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.invoke import CfnLoader
from tests.template.test_template import PREFETCH_WRAPPER, ROOT, _as_list, evaluate

LIMIT_UNZIPPED = 262_144_000
ARCHES = ["x86_64", "arm64"]
ELF_MACHINE = {"x86_64": 0x3E, "arm64": 0xB7}
SAM = ROOT / ".venv" / "bin" / "sam"

pytestmark = pytest.mark.slow


def file_bytes(path: Path) -> int:
    """Bytes of the regular files under path: what the extracted zip occupies."""
    total = 0
    for base, _dirs, files in os.walk(path):
        total += sum((Path(base) / f).lstat().st_size for f in files)
    return total


def zip_dir(path: Path, out: Path) -> tuple[int, int]:
    """Zip a build artifact as sam does (deflate); (zip bytes, bytes once extracted)."""
    unzipped = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for base, _dirs, files in os.walk(path):
            for f in sorted(files):
                full = Path(base) / f
                zf.write(full, full.relative_to(path))
                unzipped += full.stat().st_size
    return out.stat().st_size, unzipped


@pytest.fixture(scope="module", params=ARCHES)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    arch: str = request.param
    if not SAM.is_file():
        pytest.fail(f"{SAM} not found: `make setup` installs the SAM CLI")
    build_dir = tmp_path_factory.mktemp(f"sam-build-{arch}")
    # not MAKEFLAGS: variables given to an outer make (make test ARCH=...) would override ARCH in the layer builds
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # the layers' pip: the virtualenv's (pinned by make setup) rather than whichever python3 is on PATH
    env.update(ARCH=arch, PYTHON=sys.executable, SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run(
        [str(SAM), "build", "--build-dir", str(build_dir), "--parameter-overrides", f"Architecture={arch}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    template = yaml.load((build_dir / "template.yaml").read_text(), Loader=CfnLoader)
    yield {"arch": arch, "dir": build_dir, "template": template, "zips": tmp_path_factory.mktemp(f"zips-{arch}")}


def artifacts(built: dict[str, Any]) -> dict[str, Path]:
    """Logical id -> built artifact directory, for every function and layer of the built template."""
    out = {}
    for name, res in built["template"]["Resources"].items():
        uri = res.get("Properties", {}).get("CodeUri") or res.get("Properties", {}).get("ContentUri")
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion") and uri:
            out[name] = (built["dir"] / uri).resolve()
    return out


def function_layers(built: dict[str, Any]) -> dict[str, list[str]]:
    """Function -> the logical ids of the layers it attaches on the built architecture (Globals merged)."""
    template = built["template"]
    glob = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    out = {}
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function":
            layers = _as_list(glob) + _as_list(res["Properties"].get("Layers", []))
            resolved = evaluate(template, layers, {"Architecture": built["arch"]})
            out[name] = [layer["Ref"] for layer in resolved]
    return out


def test_each_function_with_its_layers_fits_250_mb(built: dict[str, Any]) -> None:
    dirs = artifacts(built)
    sizes = {name: file_bytes(path) for name, path in dirs.items()}
    rows = []
    for function, layers in sorted(function_layers(built).items()):
        total = sizes[function] + sum(sizes[layer] for layer in layers)
        parts = " + ".join(f"{n} {sizes[n]:,}" for n in [function, *layers])
        rows.append(f"{built['arch']:7} {function:15} {total:>12,} bytes = {parts}")
        assert total <= LIMIT_UNZIPPED, f"{function} on {built['arch']}: {total:,} > {LIMIT_UNZIPPED:,} ({parts})"
    sys.stdout.write("\n" + "\n".join(rows) + "\n")


def test_each_zip_is_within_lambda_limits(built: dict[str, Any]) -> None:
    rows = []
    for name, path in sorted(artifacts(built).items()):
        zipped, unzipped = zip_dir(path, built["zips"] / f"{name}.zip")
        rows.append(f"{built['arch']:7} {name:15} zip {zipped:>12,}  extracted {unzipped:>12,}")
        assert unzipped <= LIMIT_UNZIPPED and zipped <= LIMIT_UNZIPPED, rows[-1]
    sys.stdout.write("\n" + "\n".join(rows) + "\n")
    import tomllib

    deploy = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]
    assert deploy.get("resolve_s3") is True or deploy.get("s3_bucket"), "zips over 50 MB must be deployed through S3"


def test_ingest_does_not_carry_the_api_dependencies(built: dict[str, Any]) -> None:
    dirs = artifacts(built)
    layers = function_layers(built)
    core = {p.name for p in (dirs["CoreDepsLayer"] / "python").iterdir()}
    api = {p.name for p in (dirs["ApiDepsLayer"] / "python").iterdir()}
    assert {"numpy", "cv2", "onnxruntime", "aws_lambda_powertools", "boto3", "botocore"} <= core
    assert {"fastapi", "mangum", "aiohttp", "multipart", "pydantic"} <= api
    assert not core & api, f"in both dependency layers: {sorted(core & api)}"
    assert "ApiDepsLayer" not in layers["IngestFunction"]
    assert "ApiDepsLayer" in layers["SearchFunction"]
    assert "ModelLayer" not in layers["CompactFunction"]
    for name in ("CoreDepsLayer", "ApiDepsLayer", "PictraceLayer"):
        files = list((dirs[name] / "python").rglob("*"))
        junk = [p for p in files if p.name == "tests" or (p.suffix == ".pyc" and not _lambda_pyc(p))]
        assert not junk, f"{name}: {junk[:5]}"
        # byte-compiled for Lambda's Python (its /opt is read-only: nothing is compiled there), checked by hash
        sources = [p for p in files if p.suffix == ".py"]
        compiled = [p for p in sources if (p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc").is_file()]
        assert len(compiled) == len(sources), f"{name}: {len(sources) - len(compiled)} modules without a .pyc"
        assert not (dirs[name] / "python" / "bin").exists()


def test_the_model_layer_is_attached_iff_it_fits(built: dict[str, Any]) -> None:
    """Where the function, its other layers and the model fit in 250 MB, the model is attached (no download at cold
    start); elsewhere it is fetched from the layer's archive."""
    sizes = {name: file_bytes(path) for name, path in artifacts(built).items()}
    for function, layers in function_layers(built).items():
        if function == "CompactFunction":
            continue
        others = sizes[function] + sum(sizes[layer] for layer in layers if layer != "ModelLayer")
        fits = others + sizes["ModelLayer"] <= LIMIT_UNZIPPED
        assert ("ModelLayer" in layers) == fits, f"{function} on {built['arch']}: {others:,} + {sizes['ModelLayer']:,}"
    # a function that fetches the model starts through this executable of PictraceLayer (AWS_LAMBDA_EXEC_WRAPPER)
    wrapper = artifacts(built)["PictraceLayer"] / PREFETCH_WRAPPER.removeprefix("/opt/")
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)


def _lambda_pyc(path: Path) -> bool:
    """A .pyc for CPython 3.12 in __pycache__, validated by hash (flags 0b01: unchecked) rather than by mtime."""
    head = path.read_bytes()[:8]
    magic = importlib.util.MAGIC_NUMBER
    return path.parent.name == "__pycache__" and path.name.endswith(".cpython-312.pyc") and head == magic + b"\1\0\0\0"


def test_binaries_match_the_architecture(built: dict[str, Any]) -> None:
    """ARCH (for make) and Architecture (for the template) must agree: every shared object is for that machine."""
    dirs = artifacts(built)
    wanted = ELF_MACHINE[built["arch"]]
    checked = 0
    for name in ("CoreDepsLayer", "ApiDepsLayer"):
        for path in (dirs[name] / "python").rglob("*.so*"):
            head = path.read_bytes()[:20] if path.is_file() else b""
            if head[:4] == b"\x7fELF":
                machine = int.from_bytes(head[18:20], "little")
                assert machine == wanted, f"{path}: ELF machine {machine:#x}, expected {wanted:#x}"
                checked += 1
    assert checked > 20


def test_shipped_sdk_has_what_pictrace_calls(built: dict[str, Any]) -> None:
    """boto3 is shipped (not the runtime's) for S3 conditional writes; the trimmed botocore keeps S3 and Lambda."""
    data = artifacts(built)["CoreDepsLayer"] / "python" / "botocore" / "data"

    def model(service: str) -> dict[str, Any]:
        path = sorted((data / service).glob("*/service-2.json.gz"))[-1]  # the newest API version
        loaded: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
        return loaded

    s3 = model("s3")["shapes"]
    assert {"IfMatch", "IfNoneMatch"} <= set(s3["PutObjectRequest"]["members"])
    assert "IfMatch" in s3["DeleteObjectRequest"]["members"]
    assert "GetLayerVersionByArn" in model("lambda")["operations"]
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == ["events", "lambda", "s3", "s3vectors", "sqs", "sts"]
    assert "QueryVectors" in model("s3vectors")["operations"]
