"""`make invoke FN=<LogicalId> EVENT=<file>` (infra/invoke.py) for every function of the template, with the events in
events/ that its trigger sends: SQS messages for the function an SQS event source feeds, API Gateway HTTP API
requests for the function the API's integration calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.invoke import function_spec, invoke, load_template
from tests.conftest import ROOT, read

EVENTS = ROOT / "events"
#: the sample events each SQS queue of the template delivers
QUEUE_EVENTS = {"ImageEventsQueue": "sqs_s3_", "CopiesQueue": "sqs_copies_", "DetailsQueue": "sqs_details_"}


def events_by_function() -> dict[str, list[Path]]:
    """Function logical id -> the sample events of the kind its trigger in template.yaml delivers."""
    resources = load_template()["Resources"]
    out: dict[str, list[Path]] = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        triggers = res["Properties"].get("Events", {}).values()
        kinds = {e["Type"] for e in triggers}
        queues = [QUEUE_EVENTS[e["Properties"]["Queue"]["Fn::GetAtt"][0]] for e in triggers if e["Type"] == "SQS"]
        if any(
            r["Type"] == "AWS::ApiGatewayV2::Integration"
            and r["Properties"]["IntegrationUri"] in ({"Fn::GetAtt": [name, "Arn"]}, {"Ref": f"{name}.Alias"})
            for r in resources.values()
        ):
            kinds.add("HttpApi")
        prefixes = {"SQS": queues, "HttpApi": ["apigw_"], "Schedule": ["scheduled_"]}
        out[name] = sorted(p for kind in kinds for prefix in prefixes[kind] for p in EVENTS.glob(prefix + "*.json"))
    return out


CASES = [(fn, event.name) for fn, events in events_by_function().items() for event in events]


def test_every_function_and_every_lambda_event_is_covered() -> None:
    covered = events_by_function()
    assert sorted(covered) == sorted(f"{n}Function" for n in ("Compact", "Copies", "Details", "Ingest", "Search"))
    assert all(covered.values())
    lambda_events = {p.name for p in EVENTS.glob("*.json") if p.name.startswith(("sqs_", "apigw_", "scheduled_"))}
    assert {name for _, name in CASES} == lambda_events


@pytest.mark.parametrize(("function", "event"), CASES)
def test_make_invoke_runs_the_handler(function: str, event: str) -> None:
    """What `make invoke` runs, in a fresh process with its own local stack (AWS_ENDPOINT_URL_S3 unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PICTRACE_"))}
    # the key the events name holds the photo, except for the removal (ingest looks at what the key holds now)
    put = [] if "delete" in event else ["--put", f"images/astronaut.jpg={ROOT / 'tests/data/astronaut.jpg'}"]
    result = subprocess.run(
        [sys.executable, "-m", "infra.invoke", function, str(EVENTS / event), *put],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output: Any = json.loads(result.stdout.strip().splitlines()[-1])
    if function == "IngestFunction":
        assert output == {"batchItemFailures": []}
        action = "created" if "put" in event else "removed"
        assert f'"action":"{action}"' in result.stdout.replace(" ", ""), result.stdout[-2000:]
    elif function == "CopiesFunction":  # the image was put, not ingested: not indexed, so nothing to check
        assert output == {"batchItemFailures": []}
        assert '"action":"gone"' in result.stdout.replace(" ", ""), result.stdout[-2000:]
    elif function == "DetailsFunction":  # the image was put, not ingested: no entry, so no details
        assert output == {"batchItemFailures": []}
        assert '"action":"gone"' in result.stdout.replace(" ", ""), result.stdout[-2000:]
    elif function == "CompactFunction":  # the first compaction of an empty index: a manifest with no segments
        assert output == {"folded": 0, "segments": 0, "merged": 0}, output
    else:
        expected = {"apigw_health.json": 200, "apigw_search_id.json": 404}[event]
        assert output["statusCode"] == expected, output
        if event == "apigw_health.json":
            assert json.loads(output["body"])["status"] == "ok"


def test_invoke_uses_the_given_endpoint_and_template_environment(stack: Any) -> None:
    """With AWS_ENDPOINT_URL_S3 set (here: the test's stack) invoke uses it and PICTRACE_BUCKET."""
    from tests.functional.helpers import sqs_s3_event

    spec = function_spec(load_template(), "IngestFunction", stack.bucket)
    assert spec.environment["PICTRACE_BUCKET"] == stack.bucket
    assert spec.environment["PICTRACE_MODEL_DIR"] == str(ROOT / "layers/model/model")
    assert "PICTRACE_MODEL_LAYER" not in spec.environment
    assert spec.environment["PICTRACE_INDEX_PREFIX"] == "index/" and spec.environment["LOG_LEVEL"] == "INFO"
    assert spec.timeout == 300 and spec.memory == 2048
    assert spec.paths[0] == ROOT / "functions/ingest" and ROOT / "layers/pictrace" in spec.paths
    assert spec.layers == ["PictraceLayer", "CoreDepsLayer", "ModelLayer"]  # arm64, the default: the model attached
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in spec.environment  # only where the model is fetched (AWS::NoValue here)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/coffee.png", Body=read("coffee.png"))
    assert invoke("IngestFunction", sqs_s3_event(stack.bucket, ["images/coffee.png"])) == {"batchItemFailures": []}
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket, Prefix="index/entries/").get("Contents", [])
    assert len(listed) == 1


def test_a_function_that_fetches_the_model_gets_the_prefetch_wrapper() -> None:
    """On x86_64 the model is fetched: the template's exec wrapper is in the environment, the model layer is not
    attached."""
    template = load_template()
    template["Parameters"]["Architecture"]["Default"] = "x86_64"
    spec = function_spec(template, "SearchFunction", "b")
    assert spec.environment["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bin/pictrace-prefetch-model"
    assert "ModelLayer" not in spec.layers


def test_unknown_function_is_explained() -> None:
    with pytest.raises(SystemExit, match="IngestFunction"):
        function_spec(load_template(), "NoSuchFunction", "b")
