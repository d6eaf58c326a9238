"""The stack's part in finding copies within the collection (issue 28): the copies queue and its DLQ, CopiesFunction
(search's code, layers and model), the event bus CopyEvents turns on and off, each role's least privilege over the
keys pictrace.index.layout names, the outputs; and the copies handler running on the built layers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from pictrace.index.layout import Layout

from tests.template.test_template import (
    MODEL_LAYER,
    PREFETCH_WRAPPER,
    ROOT,
    _as_list,
    _attached,
    _grants,
    evaluate,
    function_properties,
    sub_text,
)

INDEX = Layout("${IndexPrefix}")  # key names as the template writes them


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from tests.template.test_template import load_template

    return load_template()


def granted(template: dict[str, Any], role: str, params: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Action -> the resources (as text) the role grants it on, for these parameters."""
    policies = evaluate(template, template["Resources"][role]["Properties"]["Policies"], params)
    out: dict[str, set[str]] = {}
    for policy in policies:
        for st in _as_list(policy["PolicyDocument"]["Statement"]):
            for action in _as_list(st["Action"]):
                out.setdefault(action, set()).update(sub_text(r) or json.dumps(r) for r in _as_list(st["Resource"]))
    return out


def test_ingest_queues_each_new_image_on_the_copies_queue_and_may_send_nowhere_else(template: dict[str, Any]) -> None:
    variables = function_properties(template, "IngestFunction")["Environment"]["Variables"]
    assert variables["PICTRACE_COPIES_QUEUE_URL"] == {"Ref": "CopiesQueue"}
    sends = [(a, r) for a, r, _ in _grants(template, "IngestFunctionRole") if "sqs:SendMessage" in a]
    details = (
        {"sqs:SendMessage"},
        ["{'Fn::GetAtt': ['DetailsQueue', 'Arn']}"],
    )  # tests/template/test_details_template.py
    assert sends == [({"sqs:SendMessage"}, ["{'Fn::GetAtt': ['CopiesQueue', 'Arn']}"]), details]
    for name in ("SearchFunction", "CompactFunction", "CopiesFunction", "DetailsFunction"):  # only ingest queues checks
        assert "PICTRACE_COPIES_QUEUE_URL" not in function_properties(template, name)["Environment"]["Variables"]


def check_queue_consumer(template: dict[str, Any], name: str, concurrency: str) -> None:
    """<name>Function takes batches from <name>Queue (with <name>DLQ and its alarm), at most the concurrency
    parameter's default at once, from functions/<name lower-cased>/ with a log group of its own."""
    res, params = template["Resources"], template["Parameters"]
    props = evaluate(template, function_properties(template, f"{name}Function"))
    (event,) = props["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::GetAtt": [f"{name}Queue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # a bad message fails alone
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == str(params[concurrency]["Default"])
    assert params[concurrency]["MinValue"] >= 2  # SQS's least MaximumConcurrency
    queue = res[f"{name}Queue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * props["Timeout"]  # AWS's guidance for SQS event sources
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{name}DLQ", "Arn"]}
    assert queue["SqsManagedSseEnabled"] and res[f"{name}DLQ"]["Properties"]["SqsManagedSseEnabled"]
    alarm = res[f"{name}DLQAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [f"{name}DLQ", "QueueName"]}}]
    assert props["Handler"] == "app.lambda_handler" and props["CodeUri"] == f"functions/{name.lower()}/"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": f"{name}FunctionLogGroup"}


def test_the_copies_function_checks_batches_from_its_queue_with_a_dlq(template: dict[str, Any]) -> None:
    check_queue_consumer(template, "Copies", "CopiesMaxConcurrency")


def check_runs_like(template: dict[str, Any], function: str, like: str, params: dict[str, str]) -> None:
    """The function has the layers, model and memory of another (like): the model attached exactly where that one
    attaches it, fetched elsewhere (the exec wrapper, and the role's GetLayerVersion)."""
    attached = _attached(template, like, params)
    assert _attached(template, function, params) == attached
    mine = evaluate(template, function_properties(template, function), params)
    theirs = evaluate(template, function_properties(template, like), params)
    assert mine["Layers"] == theirs["Layers"] and mine["MemorySize"] == theirs["MemorySize"]
    assert mine["Environment"]["Variables"].get("AWS_LAMBDA_EXEC_WRAPPER") == (None if attached else PREFETCH_WRAPPER)
    fetch = granted(template, f"{function}Role", params).get("lambda:GetLayerVersion")
    assert fetch == (None if attached else {json.dumps({"Ref": "ModelLayer"})})


@pytest.mark.parametrize("weights", sorted(MODEL_LAYER))
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_copies_function_runs_search_with_its_layers_and_model(
    template: dict[str, Any], arch: str, weights: str
) -> None:
    """Search's code on search's layers: the model attached exactly where search attaches it, fetched elsewhere."""
    check_runs_like(template, "CopiesFunction", "SearchFunction", {"Architecture": arch, "Weights": weights})


def test_events_are_a_parameter_on_a_bus_the_stack_creates(template: dict[str, Any]) -> None:
    params, res = template["Parameters"], template["Resources"]
    assert params["CopyEvents"]["Default"] == "Enabled" and params["CopyEvents"]["AllowedValues"] == [
        "Enabled",
        "Disabled",
    ]
    assert (
        res["CopyEventBus"]["Type"] == "AWS::Events::EventBus" and res["CopyEventBus"]["Condition"] == "AnnounceCopies"
    )
    for setting, on in (("Enabled", True), ("Disabled", False)):
        given = {"CopyEvents": setting}
        assert evaluate(template, template["Conditions"]["AnnounceCopies"], given) is on
        variables = evaluate(template, function_properties(template, "CopiesFunction"), given)["Environment"]
        assert variables["Variables"]["PICTRACE_EVENT_BUS"] == ({"Ref": "CopyEventBus"} if on else "")
        puts = granted(template, "CopiesFunctionRole", given).get("events:PutEvents")
        assert puts == ({json.dumps({"Fn::GetAtt": ["CopyEventBus", "Arn"]})} if on else None)
    for role in ("IngestFunctionRole", "SearchFunctionRole", "CompactFunctionRole"):
        assert "events:PutEvents" not in granted(template, role)
    outputs = template["Outputs"]
    assert outputs["EventBusName"] == {**outputs["EventBusName"], "Condition": "AnnounceCopies"}
    assert outputs["EventBusName"]["Value"] == {"Ref": "CopyEventBus"}
    assert outputs["CopiesQueueUrl"]["Value"] == {"Ref": "CopiesQueue"}


def test_the_copies_function_writes_copy_links_only_and_search_dismissed_pairs_only(template: dict[str, Any]) -> None:
    """The checker reads the index and writes its links; search marks pairs not a copy; both where
    pictrace.index.layout puts them, and nothing else of the index or the images."""
    links = f"arn:${{AWS::Partition}}:s3:::${{ImagesBucket}}/{INDEX.copies_prefix}*"
    dismissed = f"arn:${{AWS::Partition}}:s3:::${{ImagesBucket}}/{INDEX.dismissed_prefix}*"
    index = "arn:${AWS::Partition}:s3:::${ImagesBucket}/${IndexPrefix}*"
    copies = granted(template, "CopiesFunctionRole", {"IndexBackend": "s3vectors", "KmsKeyArn": "arn:aws:kms:x"})
    assert copies["s3:PutObject"] == copies["s3:DeleteObject"] == {links}
    assert copies["s3:GetObject"] == {index}
    assert set(copies) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "events:PutEvents",
        "s3vectors:QueryVectors",
        "s3vectors:GetVectors",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    (listing,) = [c for a, _, c in _grants(template, "CopiesFunctionRole") if "s3:ListBucket" in a]
    assert [sub_text(p) for p in _as_list(listing["StringLike"]["s3:prefix"])] == ["${IndexPrefix}*"]
    search = granted(template, "SearchFunctionRole")
    assert dismissed in search["s3:PutObject"] and "s3:DeleteObject" not in search
    assert search["s3:PutObject"] - {dismissed} == {"arn:${AWS::Partition}:s3:::${ImagesBucket}/${QueriesPrefix}*"}


def test_the_core_layer_keeps_the_sqs_and_eventbridge_models() -> None:
    """Ingest queues checks (SQS) and the checker puts events (EventBridge) with the layer's own boto3."""
    spec = importlib.util.spec_from_file_location("layer", ROOT / "layers" / "deps" / "layer.py")
    assert spec and spec.loader
    layer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layer)
    assert {"s3", "sqs", "events"} <= layer.BOTOCORE_SERVICES


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory, model_dir: str) -> dict[str, Path]:
    """The dependency layers, built as tests/template/test_layers.py builds them."""
    from tests.template.test_layers import build

    base = tmp_path_factory.mktemp("layers")
    return {"core": build("build-CoreDepsLayer", base / "core"), "api": build("build-ApiDepsLayer", base / "api")}


@pytest.mark.slow
def test_the_copies_handler_runs_on_its_built_layers_against_the_local_stack(
    layers: dict[str, Path], stack: Any, tmp_path: Path
) -> None:
    """The artifact: ingest (core layer) queues the new images' checks over SQS, and the copies handler (core and API
    layers) finds the copy, records its links and puts its event, each with the layers' own boto3."""
    import cv2
    import numpy as np

    from infra.local import lambda_record
    from tests.conftest import DATA, MODEL_DIR
    from tests.functional.helpers import sqs_s3_event
    from tests.template.test_layers import run_handler

    env = {**stack.env(), "PICTRACE_MODEL_DIR": str(MODEL_DIR), "PICTRACE_REFRESH_SECONDS": "0"}
    env.update(POWERTOOLS_SERVICE_NAME="probe", POWERTOOLS_METRICS_NAMESPACE="Probe", POWERTOOLS_DEV="false")
    original = (DATA / "astronaut.jpg").read_bytes()
    bgr = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
    crop = bytes(cv2.imencode(".jpg", bgr[40:280, 60:300])[1])
    s3, sqs = stack.client("s3"), stack.client("sqs")
    for key, body in (("images/a.jpg", original), ("images/b.jpg", crop)):
        s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    (tmp_path / "ingest.json").write_text(json.dumps(sqs_s3_event(stack.bucket, ["images/a.jpg", "images/b.jpg"])))
    assert run_handler("ingest", tmp_path / "ingest.json", layers, env)["result"] == {"batchItemFailures": []}
    got = sqs.receive_message(QueueUrl=stack.copies_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    records = [lambda_record(m, stack.arn(stack.copies_url)) for m in got]
    (tmp_path / "copies.json").write_text(json.dumps({"Records": records}))
    checked = run_handler("copies", tmp_path / "copies.json", layers, env)
    assert checked["result"] == {"batchItemFailures": []}
    assert "fastapi" in checked["modules"] or "aiohttp" in checked["modules"]
    ids = sorted(hashlib.sha256(b).hexdigest() for b in (original, crop))
    layout = Layout("index/")
    for a, b in (ids, ids[::-1]):
        s3.head_object(Bucket=stack.bucket, Key=layout.copy_key(a, b))
    (event,) = sqs.receive_message(QueueUrl=stack.events_url, WaitTimeSeconds=1)["Messages"]
    assert sorted(json.loads(event["Body"])["detail"]["pair"].split("-")) == ids
