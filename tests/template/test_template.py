"""Static checks of template.yaml and the build files it points at.

Nothing here deploys, imports function code or needs AWS credentials: the template is read with a
YAML loader that understands CloudFormation's short tags, handlers are checked with `ast`, and
Makefiles are parsed with `make -n` when make is available. The last test runs
`sam validate --lint` when the SAM CLI is installed.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import invoke

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# --------------------------------------------------------------------------- loading


def load_template() -> dict[str, Any]:
    return invoke.load_template(TEMPLATE)  # the same CloudFormation-aware SafeLoader make invoke uses


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources_of(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] in types}


def function_properties(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's properties with the Globals.Function section merged under them: shallow, but for the
    environment's variables, which SAM merges key by key."""
    glob = template.get("Globals", {}).get("Function", {})
    own = template["Resources"][name]["Properties"]
    merged = {**glob, **own}
    if "Environment" in glob and "Environment" in own:
        variables = {**glob["Environment"]["Variables"], **own["Environment"]["Variables"]}
        merged["Environment"] = {"Variables": variables}
    return merged


def evaluate(template: dict[str, Any], value: Any, params: dict[str, str] | None = None) -> Any:
    """A value as CloudFormation resolves it for the parameters given (defaults for the others): Fn::If, the
    condition functions and Refs to parameters are resolved, AWS::NoValue is dropped from lists and maps."""
    given = {k: str(p.get("Default", "")) for k, p in template["Parameters"].items()} | (params or {})

    def resolve(v: Any) -> Any:
        if isinstance(v, list):
            return [r for r in (resolve(x) for x in v) if r is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if v == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if set(v) == {"Ref"} and v["Ref"] in given:
            return given[v["Ref"]]
        if set(v) in ({"Condition"}, {"Fn::Condition"}):  # !Condition, as infra.invoke's loader reads it
            return resolve(template["Conditions"][next(iter(v.values()))])
        if set(v) == {"Fn::If"}:
            name, yes, no = v["Fn::If"]
            return resolve(yes if resolve(template["Conditions"][name]) else no)
        if set(v) == {"Fn::Equals"}:
            a, b = (resolve(x) for x in v["Fn::Equals"])
            return str(a) == str(b)
        if set(v) == {"Fn::And"}:
            return all(resolve(x) for x in v["Fn::And"])
        if set(v) == {"Fn::Or"}:
            return any(resolve(x) for x in v["Fn::Or"])
        if set(v) == {"Fn::Not"}:
            return not resolve(v["Fn::Not"][0])
        return {k: r for k, r in ((k, resolve(x)) for k, x in v.items()) if r is not NO_VALUE}

    return resolve(value)


NO_VALUE = object()


def _walk_if(value: Any) -> Iterator[Any]:
    """Every concrete alternative of a value that may be wrapped in Fn::If (AWS::NoValue dropped)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _condition, yes, no = value["Fn::If"]
        yield from _walk_if(yes)
        yield from _walk_if(no)
    elif isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str | None:
    """The literal text of a string or !Sub string (None for other intrinsics)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def makefile_targets(makefile: Path) -> set[str]:
    text = makefile.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


# --------------------------------------------------------------------------- functions

FUNCTIONS = ["IngestFunction", "SearchFunction", "CompactFunction", "CopiesFunction", "DetailsFunction"]
#: AWS_LAMBDA_EXEC_WRAPPER where the model is fetched rather than attached (PictraceLayer's bin/)
PREFETCH_WRAPPER = "/opt/bin/pictrace-prefetch-model"
LAYERS = ["PictraceLayer", "CoreDepsLayer", "ApiDepsLayer", "ModelLayer"]
#: what each function attaches besides ModelLayer (attached where it fits: test_model_layer_is_attached_iff_it_fits)
FUNCTION_LAYERS = {
    "IngestFunction": ["PictraceLayer", "CoreDepsLayer"],
    "SearchFunction": ["PictraceLayer", "CoreDepsLayer", "ApiDepsLayer"],
    "CompactFunction": ["PictraceLayer", "CoreDepsLayer"],
    "CopiesFunction": ["PictraceLayer", "CoreDepsLayer", "ApiDepsLayer"],  # search's code: search's layers
    "DetailsFunction": ["PictraceLayer", "CoreDepsLayer"],  # the model's work of ingest: ingest's layers
}
#: `make sizes` (tests/template/test_sizes.py): bytes, extracted, of each function with its other layers, and of
#: ModelLayer per Weights; Lambda's limit for a function and all its layers, extracted
MEASURED = {
    ("IngestFunction", "x86_64"): 232_691_890,
    ("IngestFunction", "arm64"): 162_439_193,
    ("SearchFunction", "x86_64"): 259_452_996,
    ("SearchFunction", "arm64"): 189_957_956,
}
MODEL_LAYER = {"sscd": 31_773_945, "sscd-mobile": 31_773_945, "imagenet": 93_853_883, "random:0": 93_853_883}
LIMIT_UNZIPPED = 262_144_000


def test_expected_functions_and_layers_exist(template: dict[str, Any]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert sorted(functions) == sorted(FUNCTIONS)
    assert sorted(layers) == sorted(LAYERS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_code_and_handler(template: dict[str, Any], name: str) -> None:
    props = function_properties(template, name)
    code_dir = ROOT / props["CodeUri"]
    assert code_dir.is_dir(), f"{name}: CodeUri {props['CodeUri']} is not a directory"

    module, _, func = props["Handler"].rpartition(".")
    assert module and func, f"{name}: Handler {props['Handler']!r} is not module.function"
    source = code_dir / (module.replace(".", "/") + ".py")
    assert source.is_file(), f"{name}: handler module {source.relative_to(ROOT)} does not exist"

    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    assert func in defined, f"{name}: {source.relative_to(ROOT)} defines no top-level {func!r}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_runtime_layers_and_build(template: dict[str, Any], name: str) -> None:
    props = function_properties(template, name)
    resource = template["Resources"][name]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    for arch in ("x86_64", "arm64"):
        layers = [layer["Ref"] for layer in evaluate(template, props["Layers"], {"Architecture": arch})]
        assert [n for n in layers if n != "ModelLayer"] == FUNCTION_LAYERS[name]
        assert layers.index("ModelLayer") == len(layers) - 1 if "ModelLayer" in layers else True
    assert resource.get("Metadata", {}).get("BuildMethod") == "makefile"
    makefile = ROOT / props["CodeUri"] / "Makefile"
    assert makefile.is_file(), f"{name}: no Makefile in {props['CodeUri']}"
    assert f"build-{name}" in makefile_targets(makefile)


def test_function_environment(template: dict[str, Any]) -> None:
    expected = {
        "POWERTOOLS_SERVICE_NAME": "pictrace",
        "POWERTOOLS_METRICS_NAMESPACE": "PicTrace",
        "LOG_LEVEL": {"Ref": "LogLevel"},
        "PICTRACE_BUCKET": {"Ref": "ImagesBucket"},
        "PICTRACE_IMAGES_PREFIX": {"Ref": "ImagesPrefix"},
        "PICTRACE_INDEX_PREFIX": {"Ref": "IndexPrefix"},
        "PICTRACE_QUERIES_PREFIX": {"Ref": "QueriesPrefix"},
        "PICTRACE_MODEL_DIR": "/tmp/pictrace-model",
        "PICTRACE_MODEL_LAYER": {"Ref": "ModelLayer"},
        "PICTRACE_WEIGHTS": {"Ref": "Weights"},
        "PICTRACE_MAX_BYTES": {"Ref": "MaxBytes"},
        "PICTRACE_MAX_PIXELS": {"Ref": "MaxPixels"},
        "PICTRACE_SHORTLIST": {"Ref": "Shortlist"},
        "PICTRACE_PRESIGN_SECONDS": {"Ref": "PresignSeconds"},
    }
    for name in FUNCTIONS:
        variables = function_properties(template, name)["Environment"]["Variables"]
        for key, value in expected.items():
            assert variables.get(key) == value, f"{name}: {key}"

    params = template["Parameters"]
    defaults = {
        "ImagesPrefix": "images/",
        "IndexPrefix": "index/",
        "QueriesPrefix": "queries/",
        "Weights": "sscd",
        "MaxBytes": 20000000,
        "MaxPixels": 50000000,
        "Shortlist": 10,
        "PresignSeconds": 900,
    }
    for key, value in defaults.items():
        assert str(params[key]["Default"]) == str(value), key
    from pictrace.settings import Settings

    assert Settings(bucket="b").shortlist == params["Shortlist"]["Default"]  # the stack deploys the library's default
    weights = re.compile(params["Weights"]["AllowedPattern"])
    assert weights.fullmatch("imagenet") and weights.fullmatch("random:0") and weights.fullmatch("random:42")
    assert weights.fullmatch("sscd") and weights.fullmatch("sscd-mobile")
    assert not weights.fullmatch("random:") and not weights.fullmatch("resnet") and not weights.fullmatch("sscd2")


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("name", LAYERS)
def test_layer_content_and_makefile(template: dict[str, Any], name: str) -> None:
    resource = template["Resources"][name]
    props = resource["Properties"]
    content = ROOT / props["ContentUri"]
    assert content.is_dir(), f"{name}: ContentUri {props['ContentUri']} is not a directory"
    assert resource.get("Metadata", {}).get("BuildMethod") == "makefile"
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props.get("CompatibleArchitectures"), f"{name}: no CompatibleArchitectures"
    makefile = content / "Makefile"
    assert makefile.is_file(), f"{name}: no Makefile in {props['ContentUri']}"
    assert f"build-{name}" in makefile_targets(makefile)


def _requirement_names(name: str) -> set[str]:
    requirements = (ROOT / "layers" / "deps" / name).read_text(encoding="utf-8")
    return {
        re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
        for line in requirements.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    }


def test_deps_layers_follow_architecture(template: dict[str, Any]) -> None:
    for layer in ("CoreDepsLayer", "ApiDepsLayer"):
        props = template["Resources"][layer]["Properties"]
        assert props["CompatibleArchitectures"] == [{"Ref": "Architecture"}], layer
    core, api = _requirement_names("requirements-core.txt"), _requirement_names("requirements-api.txt")
    assert {"numpy", "opencv-python-headless", "onnxruntime", "aws-lambda-powertools", "boto3"} <= core
    assert {"fastapi", "mangum", "aiohttp", "python-multipart"} <= api
    everything = core | api
    assert {
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "fastapi",
        "mangum",
        "aiohttp",
        "python-multipart",
        "aws-lambda-powertools",
    } <= everything
    included = (ROOT / "layers" / "deps" / "requirements.txt").read_text(encoding="utf-8")
    assert "-r requirements-core.txt" in included and "-r requirements-api.txt" in included
    pinned = _requirement_names("constraints.txt")
    assert everything <= pinned


MAKE = shutil.which("make")


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("makefile", "target"),
    [
        ("layers/pictrace/Makefile", "build-PictraceLayer"),
        ("layers/deps/Makefile", "build-CoreDepsLayer"),
        ("layers/deps/Makefile", "build-ApiDepsLayer"),
        ("layers/model/Makefile", "build-ModelLayer"),
        ("functions/ingest/Makefile", "build-IngestFunction"),
        ("functions/search/Makefile", "build-SearchFunction"),
    ],
)
def test_makefile_parses(makefile: str, target: str, tmp_path: Path) -> None:
    """`make -n` parses the Makefile and expands the target without running it, from another cwd."""
    result = subprocess.run(
        [MAKE, "-n", "--makefile", str(ROOT / makefile), target, f"ARTIFACTS_DIR={tmp_path}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_deps_makefile_rejects_unknown_arch(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            MAKE,
            "--makefile",
            str(ROOT / "layers/deps/Makefile"),
            "build-CoreDepsLayer",
            f"ARTIFACTS_DIR={tmp_path}",
            "ARCH=sparc",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ARCH" in result.stderr


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_deps_makefile_maps_arm64_to_aarch64_wheels(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            MAKE,
            "-n",
            "--makefile",
            str(ROOT / "layers/deps/Makefile"),
            "build-CoreDepsLayer",
            f"ARTIFACTS_DIR={tmp_path}",
            "ARCH=arm64",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--platform manylinux_2_28_aarch64" in result.stdout
    assert "manylinux_2_28_x86_64" not in result.stdout


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_model_makefile_explains_missing_model(tmp_path: Path) -> None:
    """Run against a copy of the Makefile in an empty directory: no model there, so it must say `make model`."""
    shutil.copy(ROOT / "layers/model/Makefile", tmp_path / "Makefile")
    artifacts = tmp_path / "artifacts"
    result = subprocess.run(
        [MAKE, "--makefile", str(tmp_path / "Makefile"), "build-ModelLayer", f"ARTIFACTS_DIR={artifacts}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "make model" in result.stderr


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_model_makefile_copies_model_to_opt_model_layout(tmp_path: Path) -> None:
    shutil.copy(ROOT / "layers/model/Makefile", tmp_path / "Makefile")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "site" / "pkg").mkdir(parents=True)
    (tmp_path / "model" / "site" / "pkg" / "m.onnx").write_bytes(b"\0")
    (tmp_path / "model" / "model.json").write_text('{"file": "site/pkg/m.onnx"}')
    artifacts = tmp_path / "artifacts"
    scratch = tmp_path / "scratch"  # sam build runs make in a scratch copy, not next to the Makefile
    scratch.mkdir()
    result = subprocess.run(
        [MAKE, "--makefile", str(tmp_path / "Makefile"), "build-ModelLayer", f"ARTIFACTS_DIR={artifacts}"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (artifacts / "model" / "site" / "pkg" / "m.onnx").is_file()
    assert (artifacts / "model" / "model.json").is_file()


# --------------------------------------------------------------------------- IAM


def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, props["PolicyDocument"]
        elif res["Type"] == "AWS::Serverless::Function":
            for policy in _as_list(props.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield f"{name}/Policies", policy


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, document in _policy_documents(template):
        for raw in _as_list(document["Statement"]):
            for statement in _walk_if(raw):
                yield where, statement


def test_iam_has_no_wildcard_actions_or_resources(template: dict[str, Any]) -> None:
    statements = list(_statements(template))
    assert statements, "no IAM policy statements found"
    for where, statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement, where
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{where}: wildcard action {action!r}"
        for resource in _as_list(statement["Resource"]):
            assert resource != "*", f"{where}: bare '*' resource"
            text = sub_text(resource)
            if text is not None:
                assert text.strip() not in ("*", "arn:*", "arn:aws:*"), f"{where}: wildcard resource {text!r}"
                assert not re.search(r":s3:::\*|:s3:::\$\{[^}]+\}/\*$", text), (
                    f"{where}: whole-bucket resource {text!r}"
                )


def test_roles_attach_no_managed_policies(template: dict[str, Any]) -> None:
    """AWS managed execution policies (basic, SQS) grant on "*": roles must carry only the inline policies."""
    for name, res in resources_of(template, "AWS::IAM::Role").items():
        assert not res["Properties"].get("ManagedPolicyArns"), name
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        assert "Role" in props, f"{name}: SAM would generate a role with managed policies"
        assert "Policies" not in props, f"{name}: Policies is ignored when Role is set"


def _grants(template: dict[str, Any], role: str) -> list[tuple[set[str], list[str], dict[str, Any]]]:
    out = []
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for raw in _as_list(policy["PolicyDocument"]["Statement"]):
            for st in _walk_if(raw):
                if st["Effect"] != "Allow":
                    continue
                resources = [sub_text(r) or str(r) for r in _as_list(st["Resource"])]
                out.append((set(_as_list(st["Action"])), resources, st.get("Condition", {})))
    return out


def _can(grants: list[tuple[set[str], list[str], dict[str, Any]]], action: str, prefix_param: str) -> bool:
    return any(
        action in actions and any(f"/${{{prefix_param}}}*" in r for r in resources) for actions, resources, _ in grants
    )


def test_ingest_role_least_privilege(template: dict[str, Any]) -> None:
    grants = _grants(template, "IngestFunctionRole")
    assert _can(grants, "s3:GetObject", "ImagesPrefix")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert _can(grants, action, "IndexPrefix"), action
    assert not _can(grants, "s3:GetObject", "QueriesPrefix"), "ingest has no business with query uploads"
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not _can(grants, action, "ImagesPrefix"), f"ingest must not {action} images"
        assert not _can(grants, action, "QueriesPrefix"), f"ingest must not {action} queries"
    lists = [(r, c) for a, r, c in grants if "s3:ListBucket" in a]
    assert lists, "ingest needs s3:ListBucket (HEAD of a missing key must be 404, not 403)"
    for _resources, condition in lists:
        assert "s3:prefix" in condition.get("StringLike", {}), "ListBucket without an s3:prefix condition"
    sqs = {a for actions, _, _ in grants for a in actions if a.startswith("sqs:")}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= sqs


def test_search_role_least_privilege(template: dict[str, Any]) -> None:
    grants = _grants(template, "SearchFunctionRole")
    assert _can(grants, "s3:GetObject", "IndexPrefix")
    assert _can(grants, "s3:GetObject", "ImagesPrefix")
    assert _can(grants, "s3:PutObject", "QueriesPrefix")  # signs the presigned uploads
    assert _can(grants, "s3:GetObject", "QueriesPrefix")  # reads them back for POST /search {"key": ...}
    assert not any("s3:DeleteObject" in actions for actions, _, _ in grants), "search deletes nothing"
    for prefix in ("ImagesPrefix", "IndexPrefix"):
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert not _can(grants, action, prefix), f"search must not {action} under {prefix}"
    lists = [(r, c) for a, r, c in grants if "s3:ListBucket" in a]
    assert lists
    for _resources, condition in lists:
        prefixes = _as_list(condition["StringLike"]["s3:prefix"])
        assert [sub_text(p) for p in prefixes] == ["${IndexPrefix}*", "${QueriesPrefix}*"]
    assert not any(a.startswith("sqs:") for actions, _, _ in grants for a in actions)


def test_compact_role_least_privilege(template: dict[str, Any]) -> None:
    grants = _grants(template, "CompactFunctionRole")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert _can(grants, action, "IndexPrefix"), action
    for prefix in ("ImagesPrefix", "QueriesPrefix"):
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert not _can(grants, action, prefix), f"compaction must not {action} under {prefix}"
    for _resources, condition in [(r, c) for a, r, c in grants if "s3:ListBucket" in a]:
        assert [sub_text(p) for p in _as_list(condition["StringLike"]["s3:prefix"])] == ["${IndexPrefix}*"]
    assert not any(a.startswith(("sqs:", "lambda:")) for actions, _, _ in grants for a in actions)


def test_compaction_is_scheduled(template: dict[str, Any]) -> None:
    events = template["Resources"]["CompactFunction"]["Properties"]["Events"]
    assert [e["Type"] for e in events.values()] == ["Schedule"]
    assert next(iter(events.values()))["Properties"]["Schedule"] == {"Ref": "CompactionSchedule"}
    assert template["Parameters"]["CompactionSchedule"]["Default"] == "rate(5 minutes)"
    assert template["Parameters"]["SegmentDtype"]["AllowedValues"] == ["float32", "float16"]


def test_s3_vectors_backend_is_a_parameter_with_least_privilege(template: dict[str, Any]) -> None:
    params, res = template["Parameters"], template["Resources"]
    assert params["IndexBackend"]["AllowedValues"] == ["segments", "s3vectors"]
    assert params["IndexBackend"]["Default"] == "segments"
    assert res["VectorBucket"]["Condition"] == res["VectorIndex"]["Condition"] == "UseS3Vectors"
    index = res["VectorIndex"]["Properties"]
    assert (index["DataType"], index["DistanceMetric"]) == ("float32", "cosine")
    # the vector index is as wide as the model: SSCD's 512, Keras' ResNet50's 2048
    assert index["Dimension"] == {"Fn::If": ["SscdWeights", 512, 2048]}
    sscd = template["Conditions"]["SscdWeights"]["Fn::Or"]
    assert sscd == [{"Fn::Equals": [{"Ref": "Weights"}, "sscd"]}, {"Fn::Equals": [{"Ref": "Weights"}, "sscd-mobile"]}]
    assert index["MetadataConfiguration"]["NonFilterableMetadataKeys"] == ["keys"]  # folders stay filterable
    expected = {
        "IngestFunctionRole": {"s3vectors:PutVectors", "s3vectors:DeleteVectors"},
        "CompactFunctionRole": {"s3vectors:PutVectors", "s3vectors:DeleteVectors"},
        "SearchFunctionRole": {"s3vectors:QueryVectors", "s3vectors:GetVectors"},
    }
    for role, actions in expected.items():
        granted = [(a, r) for a, r, _ in _grants(template, role) if any(x.startswith("s3vectors:") for x in a)]
        assert [a for a, _ in granted] == [actions], role
        assert granted[0][1] == [str({"Fn::GetAtt": ["VectorIndex", "IndexArn"]})], role
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PICTRACE_INDEX_BACKEND"] == {"Ref": "IndexBackend"}


# --------------------------------------------------------------------------- bucket, queue, API


def test_notifications_only_for_images_prefix(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ImagesBucket"]["Properties"]
    configs = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert {c["Event"] for c in configs} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    for config in configs:
        assert config["Queue"] == {"Fn::GetAtt": ["ImageEventsQueue", "Arn"]}
        rules = config["Filter"]["S3Key"]["Rules"]
        assert {"Name": "prefix", "Value": {"Ref": "ImagesPrefix"}} in [
            {"Name": r["Name"].lower(), "Value": r["Value"]} for r in rules
        ]
    assert set(bucket) >= {"NotificationConfiguration"}
    assert not bucket.get("NotificationConfiguration", {}).get("LambdaConfigurations")
    assert not bucket.get("NotificationConfiguration", {}).get("TopicConfigurations")


def test_prefixes_cannot_overlap(template: dict[str, Any]) -> None:
    """Index (and query) writes must never fall under the images prefix, or ingest would trigger itself."""
    params = template["Parameters"]
    names = ["ImagesPrefix", "IndexPrefix", "QueriesPrefix"]
    for name in names:
        pattern = re.compile(params[name]["AllowedPattern"])
        assert pattern.fullmatch(params[name]["Default"])
        assert not pattern.fullmatch("a/b/"), f"{name}: multi-segment prefixes could nest"
        assert not pattern.fullmatch("images"), f"{name}: prefix without '/' could match images-2/..."
    defaults = [params[n]["Default"] for n in names]
    for a in defaults:
        for b in defaults:
            if a != b:
                assert not a.startswith(b)
    asserted = {
        tuple(sorted(ref["Ref"] for ref in rule["Assert"]["Fn::Not"][0]["Fn::Equals"]))
        for rule in template["Rules"]["PrefixesAreDistinct"]["Assertions"]
    }
    assert asserted == {
        ("ImagesPrefix", "IndexPrefix"),
        ("ImagesPrefix", "QueriesPrefix"),
        ("IndexPrefix", "QueriesPrefix"),
    }


def test_bucket_hardening(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ImagesBucket"]
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for raw in sse for rule in _walk_if(raw)}
    assert algorithms == {"AES256", "aws:kms"}
    rules = props["LifecycleConfiguration"]["Rules"]
    queries = [r for r in rules if r.get("Prefix") == {"Ref": "QueriesPrefix"}]
    assert queries and queries[0]["ExpirationInDays"] == 1 and queries[0]["Status"] == "Enabled"

    policies = [
        res["Properties"]
        for res in resources_of(template, "AWS::S3::BucketPolicy").values()
        if res["Properties"]["Bucket"] == {"Ref": "ImagesBucket"}
    ]
    assert len(policies) == 1
    tls = [
        st
        for st in policies[0]["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert tls, "no TLS-only statement in the bucket policy"


def test_queue_policy_matches_bucket_name(template: dict[str, Any]) -> None:
    """The queue policy names the bucket without a Ref (that would be circular): the two strings must agree."""
    bucket = template["Resources"]["ImagesBucket"]
    bucket_name = sub_text(bucket["Properties"]["BucketName"])
    assert bucket_name and "${AWS::AccountId}" in bucket_name and "${AWS::StackName}" in bucket_name
    assert "ImageEventsQueuePolicy" in _as_list(bucket.get("DependsOn", []))

    policy = template["Resources"]["ImageEventsQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "ImageEventsQueue"}]
    statements = [st for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert len(statements) == 1
    st = statements[0]
    assert st["Principal"] == {"Service": "s3.amazonaws.com"}
    assert _as_list(st["Action"]) == ["sqs:SendMessage"]
    source_arn = sub_text(st["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert source_arn == f"arn:${{AWS::Partition}}:s3:::{bucket_name}"
    assert st["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_queue_redrive_and_visibility(template: dict[str, Any]) -> None:
    queue = template["Resources"]["ImageEventsQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ImageEventsDLQ", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "IngestMaxReceiveCount"}
    assert template["Resources"]["ImageEventsDLQ"]["Type"] == "AWS::SQS::Queue"
    dlq_retention = template["Resources"]["ImageEventsDLQ"]["Properties"]["MessageRetentionPeriod"]
    assert dlq_retention > queue.get("MessageRetentionPeriod", 345600)

    # visibility timeout >= 6 x function timeout, for every timeout the parameter allows
    ingest = template["Resources"]["IngestFunction"]["Properties"]
    assert ingest["Timeout"] == {"Ref": "IngestTimeout"}
    assert queue["VisibilityTimeout"] == {
        "Fn::FindInMap": ["IngestTimeouts", {"Ref": "IngestTimeout"}, "VisibilityTimeout"]
    }
    mapping = template["Mappings"]["IngestTimeouts"]
    allowed = template["Parameters"]["IngestTimeout"]["AllowedValues"]
    assert template["Parameters"]["IngestTimeout"]["Default"] in allowed
    for timeout in allowed:
        visibility = mapping[str(timeout)]["VisibilityTimeout"]
        assert visibility >= 6 * int(timeout), timeout
        assert visibility <= 43200


def test_ingest_event_source(template: dict[str, Any]) -> None:
    events = template["Resources"]["IngestFunction"]["Properties"]["Events"]
    sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert len(sqs) == 1 and len(events) == 1
    props = sqs[0]
    assert props["Queue"] == {"Fn::GetAtt": ["ImageEventsQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "IngestBatchSize"}
    assert template["Parameters"]["IngestBatchSize"]["MaxValue"] <= 10  # no batching window configured


def test_search_http_api(template: dict[str, Any]) -> None:
    res = template["Resources"]
    assert "Events" not in res["SearchFunction"]["Properties"]  # the API's resources below call it
    api = res["PicTraceApi"]
    assert api["Type"] == "AWS::ApiGatewayV2::Api" and api["Properties"]["ProtocolType"] == "HTTP"
    integration = res["PicTraceApiIntegration"]["Properties"]
    assert integration["IntegrationUri"] == {"Ref": "SearchFunction.Alias"}  # the published version
    assert integration["IntegrationType"] == "AWS_PROXY" and integration["PayloadFormatVersion"] == "2.0"
    route = res["PicTraceApiDefaultRoute"]["Properties"]
    assert route["RouteKey"] == "$default" and route["Target"] == {"Fn::Sub": "integrations/${PicTraceApiIntegration}"}
    stage = res["PicTraceApiStage"]["Properties"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert stage["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    permission = res["SearchFunctionApiPermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com" and permission["FunctionName"] == {
        "Ref": "SearchFunction.Alias"
    }
    assert "${PicTraceApi}/" in permission["SourceArn"]["Fn::Sub"]
    assert res["SearchFunction"]["Properties"]["Timeout"] <= 30


def test_snapstart_is_a_parameter_on_by_default_with_the_alias_it_needs(template: dict[str, Any]) -> None:
    params, res, conditions = template["Parameters"], template["Resources"], template["Conditions"]
    assert params["SnapStart"]["Default"] == "Enabled" and params["SnapStart"]["AllowedValues"] == [
        "Enabled",
        "Disabled",
    ]
    assert conditions["UseSnapStart"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "Enabled"]}
    for name in ("IngestFunction", "SearchFunction"):
        props = res[name]["Properties"]
        # SnapStart applies to published versions only: every trigger must invoke the alias SAM publishes
        assert props["AutoPublishAlias"] == "live", name
        # Disabled turns it off ("None" is the API's value for no SnapStart)
        assert props["SnapStart"] == {"ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}}, name
        assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512  # SnapStart's limit
        assert "ProvisionedConcurrencyConfig" not in props and "FileSystemConfigs" not in props
    assert "SnapStart" not in res["CompactFunction"]["Properties"]  # scheduled: no one waits for its cold start
    # the SQS trigger goes to the alias when AutoPublishAlias is set (SAM); the API's integration says so itself
    assert res["PicTraceApiIntegration"]["Properties"]["IntegrationUri"] == {"Ref": "SearchFunction.Alias"}


@pytest.mark.parametrize(
    ("name", "getter"), [("ingest", "register(get_ingestor)"), ("search", "register(app.state.service)")]
)
def test_handlers_register_their_snapstart_hooks(name: str, getter: str) -> None:
    """The runtime only runs hooks registered while the handler's module is imported."""
    source = (ROOT / "functions" / name / "app.py").read_text()
    assert "from pictrace.snapstart import register" in source and f"\n{getter}" in source


#: public with any ApiAuth but NONE: the page and its files, where to sign in, liveness, the API's description
PUBLIC_ROUTES = {"GET /", "GET /static/{proxy+}", "GET /auth/config", "GET /health", "GET /docs", "GET /openapi.json"}


def routes(template: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Route key -> the route's resolved properties, of the routes that exist with these parameters."""
    found = {}
    for res in resources_of(template, "AWS::ApiGatewayV2::Route").values():
        if "Condition" in res and not evaluate(template, template["Conditions"][res["Condition"]], params):
            continue
        props = evaluate(template, res["Properties"], params)
        found[props["RouteKey"]] = props
    return found


def test_the_api_is_closed_to_strangers_by_default(template: dict[str, Any]) -> None:
    """Issue 26: without a parameter set, only users of the stack's own Cognito pool reach anything but the page."""
    params, res = template["Parameters"], template["Resources"]
    assert params["ApiAuth"]["Default"] != "NONE" and params["ApiAuth"]["Default"] == "COGNITO"
    assert params["ApiAuth"]["AllowedValues"] == ["COGNITO", "IAM", "JWT", "NONE"]
    assert "anyone with the URL" in params["ApiAuth"]["Description"]  # NONE says what it exposes
    by_key = routes(template)
    default = by_key.pop("$default")
    assert default["AuthorizationType"] == "JWT" and default["AuthorizerId"] == {"Ref": "PicTraceApiJwtAuthorizer"}
    public = {k for k, r in by_key.items() if r["AuthorizationType"] == "NONE"}
    assert public == PUBLIC_ROUTES | {"OPTIONS /{proxy+}"}  # and browsers' preflight (answered by API Gateway)
    jwt = evaluate(template, res["PicTraceApiJwtAuthorizer"]["Properties"])
    assert jwt["AuthorizerType"] == "JWT"
    assert jwt["JwtConfiguration"]["Issuer"] == {
        "Fn::Sub": "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}"
    }
    assert jwt["JwtConfiguration"]["Audience"] == [{"Ref": "UserPoolClient"}]


def test_the_user_pool_takes_no_strangers_and_the_page_and_cli_can_sign_in(template: dict[str, Any]) -> None:
    res = template["Resources"]
    for name in ("UserPool", "UserPoolClient", "UserPoolDomain"):
        assert res[name]["Condition"] == "AuthCognito", name
    pool = res["UserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True  # no self sign-up
    client = res["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False  # a public client: nothing secret ships in the page or the CLI
    assert client["AllowedOAuthFlows"] == ["code"] and client["AllowedOAuthFlowsUserPoolClient"] is True
    assert "ALLOW_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"]  # pictrace login
    assert "ALLOW_REFRESH_TOKEN_AUTH" in client["ExplicitAuthFlows"]
    assert all("${PicTraceApi}" in url["Fn::Sub"] for url in client["CallbackURLs"])  # back to the page
    env = function_properties(template, "SearchFunction")["Environment"]["Variables"]
    assert evaluate(template, env["PICTRACE_AUTH_MODE"]) == "cognito"
    assert evaluate(template, env["PICTRACE_AUTH_CLIENT_ID"]) == {"Ref": "UserPoolClient"}
    assert "${UserPoolDomain}" in evaluate(template, env["PICTRACE_AUTH_DOMAIN"])["Fn::Sub"]
    assert {"UserPoolId", "UserPoolClientId", "SignInUrl"} <= set(template["Outputs"])


@pytest.mark.parametrize(("auth", "default_type"), [("IAM", "AWS_IAM"), ("JWT", "JWT"), ("NONE", "NONE")])
def test_the_other_api_auth_modes(template: dict[str, Any], auth: str, default_type: str) -> None:
    params = {"ApiAuth": auth, "JwtIssuer": "https://issuer.example", "JwtAudience": "app"}
    by_key = routes(template, params)
    assert by_key["$default"]["AuthorizationType"] == default_type
    if auth == "NONE":  # the explicit opt-in: one route, open
        assert set(by_key) == {"$default"}
    else:
        assert PUBLIC_ROUTES <= set(by_key)
    assert not evaluate(template, template["Conditions"]["AuthCognito"], params)
    jwt = template["Resources"]["PicTraceApiJwtAuthorizer"]
    if auth == "JWT":
        config = evaluate(template, jwt["Properties"]["JwtConfiguration"], params)
        assert config == {"Issuer": "https://issuer.example", "Audience": "app"}
    rule = template["Rules"]["JwtAuthNeedsIssuerAndAudience"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]} and len(rule["Assertions"]) == 2


def test_every_alarm_notifies_a_topic(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    assert {"ImageEventsDLQAlarm", "CompactionErrorsAlarm", "IngestErrorsAlarm", "SearchThrottlesAlarm"} <= set(alarms)
    for name, alarm in alarms.items():
        for given in ("", "arn:aws:sns:us-east-1:123456789012:ops"):
            actions = evaluate(template, alarm["Properties"]["AlarmActions"], {"AlarmTopicArn": given})
            expected = [{"Ref": "AlarmTopic"}] if not given else [given]
            assert actions == expected, (name, given)
    assert template["Resources"]["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "SubscribeAlarmEmail"


def test_search_cannot_starve_ingest(template: dict[str, Any]) -> None:
    """By default each function has concurrency reserved for it: a burst of searches cannot take what ingest needs
    (nor the account's other functions); ReserveConcurrency=Disabled, for accounts whose quota is too small to
    reserve anything, leaves both unreserved."""
    ingest = evaluate(template, function_properties(template, "IngestFunction"))
    search = evaluate(template, function_properties(template, "SearchFunction"))
    params = template["Parameters"]
    assert params["ReserveConcurrency"]["Default"] == "Enabled"
    assert search["ReservedConcurrentExecutions"] == str(params["SearchMaxConcurrency"]["Default"]) == "20"
    assert ingest["ReservedConcurrentExecutions"] == str(params["IngestMaxConcurrency"]["Default"]) == "5"
    # the queue starts no more ingests than ingest has reserved (more would be throttled and retried)
    scaling = ingest["Events"]["ImageEvents"]["Properties"]["ScalingConfig"]
    assert scaling["MaximumConcurrency"] == ingest["ReservedConcurrentExecutions"]
    assert params["IngestMaxConcurrency"]["MinValue"] >= 2  # SQS's least MaximumConcurrency
    for name in ("IngestFunction", "SearchFunction"):
        unreserved = evaluate(template, function_properties(template, name), {"ReserveConcurrency": "Disabled"})
        assert "ReservedConcurrentExecutions" not in unreserved, name
    disabled = evaluate(template, function_properties(template, "IngestFunction"), {"ReserveConcurrency": "Disabled"})
    assert disabled["Events"]["ImageEvents"]["Properties"]["ScalingConfig"]["MaximumConcurrency"] == "5"


def test_the_alarm_topic_takes_cloudwatch_alarms(template: dict[str, Any]) -> None:
    """The topic the stack creates is not encrypted with the AWS managed key: that key's policy lets no CloudWatch
    alarm publish, so every alarm action would fail."""
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic.get("KmsMasterKeyId") in (None, "")


def test_cors_is_a_parameter_on_the_api_and_the_bucket(template: dict[str, Any]) -> None:
    res = template["Resources"]
    assert template["Conditions"]["HasCors"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "CorsAllowOrigins"}]}, ""]}]
    }
    api_cors = res["PicTraceApi"]["Properties"]["CorsConfiguration"]["Fn::If"]
    assert api_cors[0] == "HasCors" and api_cors[1]["AllowOrigins"] == {"Ref": "CorsAllowOrigins"}
    assert api_cors[2] == {"Ref": "AWS::NoValue"}
    bucket_cors = res["ImagesBucket"]["Properties"]["CorsConfiguration"]["Fn::If"]
    assert bucket_cors[0] == "HasCors" and bucket_cors[2] == {"Ref": "AWS::NoValue"}
    (rule,) = bucket_cors[1]["CorsRules"]
    # browsers upload query images with a presigned POST (POST /uploads) and read results with presigned GETs
    assert rule["AllowedOrigins"] == {"Ref": "CorsAllowOrigins"} and {"GET", "POST"} <= set(rule["AllowedMethods"])


def test_functions_may_fetch_only_the_model_layer(template: dict[str, Any]) -> None:
    for role in ("IngestFunctionRole", "SearchFunctionRole"):
        grants = [(a, r) for a, r, _ in _grants(template, role) if any(x.startswith("lambda:") for x in a)]
        assert grants == [({"lambda:GetLayerVersion"}, ["{'Ref': 'ModelLayer'}"])], role


def _attached(template: dict[str, Any], function: str, params: dict[str, str]) -> bool:
    props = function_properties(template, function)
    return {"Ref": "ModelLayer"} in evaluate(template, props["Layers"], params)


@pytest.mark.parametrize("weights", sorted(MODEL_LAYER))
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_model_layer_is_attached_iff_it_fits(template: dict[str, Any], arch: str, weights: str) -> None:
    """Attached where the function, its layers and the model stay within 250 MB; a function that does not attach
    it may fetch it (lambda:GetLayerVersion on ModelLayer, and nothing else), one that attaches it may not."""
    params = {"Architecture": arch, "Weights": weights}
    for function in ("IngestFunction", "SearchFunction"):
        fits = MEASURED[function, arch] + MODEL_LAYER[weights] <= LIMIT_UNZIPPED
        assert _attached(template, function, params) == fits, (function, arch, weights)
        role = template["Resources"][f"{function}Role"]["Properties"]["Policies"]
        statements = [st for p in evaluate(template, role, params) for st in p["PolicyDocument"]["Statement"]]
        fetch = [st for st in statements if "lambda:GetLayerVersion" in _as_list(st["Action"])]
        assert fetch == ([] if fits else [fetch[0]]) and all(st["Resource"] == {"Ref": "ModelLayer"} for st in fetch)
        variables = evaluate(template, function_properties(template, function)["Environment"]["Variables"], params)
        assert variables.get("AWS_LAMBDA_EXEC_WRAPPER") == (None if fits else PREFETCH_WRAPPER), (function, arch)
    assert not _attached(template, "CompactFunction", params)  # it runs no model


def test_the_prefetch_wrapper_is_built_into_the_pictrace_layer(tmp_path: Path) -> None:
    """The exec wrapper of a function that fetches the model is an executable of PictraceLayer at the path the
    template names (layers are extracted under /opt)."""
    built = tmp_path / "artifacts"
    done = subprocess.run(
        ["make", "-f", "layers/pictrace/Makefile", "build-PictraceLayer", f"ARTIFACTS_DIR={built}", "PYTHON_VERSION=0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    wrapper = built / PREFETCH_WRAPPER.removeprefix("/opt/")
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)
    assert (built / "python" / "pictrace" / "modelfetch.py").is_file()


def test_arm64_is_the_default_architecture(template: dict[str, Any]) -> None:
    """arm64 by default: both functions attach the model there (no download at cold start); make build and the
    deps layers' Makefile default to the same architecture."""
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert _attached(template, "SearchFunction", {}) and _attached(template, "IngestFunction", {})
    for makefile in (ROOT / "Makefile", ROOT / "layers/deps/Makefile"):
        assert re.search(r"^ARCH \?= arm64$", makefile.read_text(), flags=re.MULTILINE), makefile


def test_outputs(template: dict[str, Any]) -> None:
    assert {"ApiUrl", "BucketName", "QueueUrl", "DLQUrl"} <= set(template["Outputs"])
    assert template["Outputs"]["QueueUrl"]["Value"] == {"Ref": "ImageEventsQueue"}
    assert template["Outputs"]["DLQUrl"]["Value"] == {"Ref": "ImageEventsDLQ"}
    assert template["Outputs"]["BucketName"]["Value"] == {"Ref": "ImagesBucket"}


def test_samconfig_defaults() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        pytest.skip("tomllib needs Python 3.11+")
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["default"]["global"]["parameters"]["stack_name"] == "pictrace"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True


# --------------------------------------------------------------------------- sam validate


def _sam_executable() -> str | None:
    venv_sam = ROOT / ".venv" / "bin" / "sam"
    if venv_sam.is_file() and os.access(venv_sam, os.X_OK):
        return str(venv_sam)
    return shutil.which("sam")


def test_sam_validate_lint() -> None:
    sam = _sam_executable()
    if sam is None:
        pytest.skip("SAM CLI not found: neither `sam` on PATH nor .venv/bin/sam")
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # lint needs no account; a region avoids a prompt
    result = subprocess.run(
        [sam, "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is a valid SAM Template" in output, output


@pytest.mark.parametrize("name", FUNCTIONS)
def test_handlers_are_thin(template: dict[str, Any], name: str) -> None:
    """A handler wires Powertools to pictrace and nothing more: under 20 lines of code (docstrings excluded)."""
    props = function_properties(template, name)
    source = ROOT / props["CodeUri"] / (props["Handler"].rpartition(".")[0] + ".py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    docstrings = {
        line
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and ast.get_docstring(node) is not None
        for line in range(node.body[0].lineno, (node.body[0].end_lineno or node.body[0].lineno) + 1)
    }
    code = [
        n
        for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and n not in docstrings
    ]
    assert len(code) < 20, f"{source.relative_to(ROOT)}: {len(code)} lines of code"
