"""The stack's details stage (issue 27, off ingest's path): the details queue ingest fills and its DLQ, DetailsFunction
(ingest's layers, model and memory), its role's least privilege (it writes only the keys pictrace.index.layout names
for details, and change markers), and the details handler running on its built layer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pictrace.index.layout import Layout

from tests.template.test_duplicates_template import (  # layers: a fixture
    check_queue_consumer,
    check_runs_like,
    granted,
    layers,  # noqa: F401
)
from tests.template.test_template import (
    MODEL_LAYER,
    _grants,
    function_properties,
)

INDEX = "arn:${AWS::Partition}:s3:::${ImagesBucket}/${IndexPrefix}"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from tests.template.test_template import load_template

    return load_template()


def test_ingest_queues_each_new_image_on_the_details_queue_and_only_ingest_does(template: dict[str, Any]) -> None:
    assert function_properties(template, "IngestFunction")["Environment"]["Variables"][
        "PICTRACE_DETAILS_QUEUE_URL"
    ] == {"Ref": "DetailsQueue"}
    sends = [r for a, r, _ in _grants(template, "IngestFunctionRole") if "sqs:SendMessage" in a]
    assert ["{'Fn::GetAtt': ['DetailsQueue', 'Arn']}"] in sends
    for name in ("SearchFunction", "CompactFunction", "CopiesFunction", "DetailsFunction"):
        assert "PICTRACE_DETAILS_QUEUE_URL" not in function_properties(template, name)["Environment"]["Variables"]
        assert "sqs:SendMessage" not in granted(template, f"{name}Role")


def test_the_details_function_takes_batches_from_its_queue_with_a_dlq(template: dict[str, Any]) -> None:
    check_queue_consumer(template, "Details", "IngestMaxConcurrency")


@pytest.mark.parametrize("weights", sorted(MODEL_LAYER))
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_the_details_function_runs_on_ingests_layers_and_model(
    template: dict[str, Any], arch: str, weights: str
) -> None:
    """Ingest's layers and memory: the model attached exactly where ingest attaches it, fetched elsewhere."""
    check_runs_like(template, "DetailsFunction", "IngestFunction", {"Architecture": arch, "Weights": weights})


def test_the_details_function_reads_images_and_the_index_and_writes_details_and_change_markers_only(
    template: dict[str, Any],
) -> None:
    details = f"arn:${{AWS::Partition}}:s3:::${{ImagesBucket}}/{Layout('${IndexPrefix}').details_prefix}*"
    role = granted(template, "DetailsFunctionRole", {"KmsKeyArn": "arn:aws:kms:x"})
    changes = f"arn:${{AWS::Partition}}:s3:::${{ImagesBucket}}/{Layout('${IndexPrefix}').changes_prefix}*"
    assert role["s3:DeleteObject"] == {details}
    assert role["s3:PutObject"] == {details, changes}  # and the change marker that brings them into the index's rows
    assert role["s3:GetObject"] == {f"{INDEX}*", "arn:${AWS::Partition}:s3:::${ImagesBucket}/${ImagesPrefix}*"}
    assert set(role) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }
    assert f"{INDEX}*" in granted(template, "IngestFunctionRole")["s3:DeleteObject"]  # an entry's details go with it


@pytest.mark.slow
def test_the_details_handler_runs_on_its_built_layer_against_the_local_stack(
    layers: dict[str, Path],  # noqa: F811
    stack: Any,
    tmp_path: Path,
) -> None:
    """The artifact: ingest (core layer) queues the new image's details over SQS, and the details handler (core layer
    only, as DetailsFunction) writes them beside its entry."""
    from infra.local import lambda_record
    from tests.conftest import DATA, MODEL_DIR
    from tests.functional.helpers import sqs_s3_event
    from tests.template.test_layers import run_handler

    env = {**stack.env(), "PICTRACE_MODEL_DIR": str(MODEL_DIR), "PICTRACE_REFRESH_SECONDS": "0"}
    env.update(POWERTOOLS_SERVICE_NAME="probe", POWERTOOLS_METRICS_NAMESPACE="Probe", POWERTOOLS_DEV="false")
    original = (DATA / "astronaut.jpg").read_bytes()
    s3, sqs = stack.client("s3"), stack.client("sqs")
    s3.put_object(Bucket=stack.bucket, Key="images/a.jpg", Body=original)
    (tmp_path / "ingest.json").write_text(json.dumps(sqs_s3_event(stack.bucket, ["images/a.jpg"])))
    assert run_handler("ingest", tmp_path / "ingest.json", layers, env)["result"] == {"batchItemFailures": []}
    got = sqs.receive_message(QueueUrl=stack.details_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    records = [lambda_record(m, stack.arn(stack.details_url)) for m in got]
    (tmp_path / "details.json").write_text(json.dumps({"Records": records}))
    made = run_handler("details", tmp_path / "details.json", layers, env)
    assert made["result"] == {"batchItemFailures": []}
    s3.head_object(Bucket=stack.bucket, Key=Layout("index/").details_key(hashlib.sha256(original).hexdigest()))
