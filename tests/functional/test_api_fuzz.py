"""Schemathesis against the app's own OpenAPI schema (bounded), plus hypothesis on the JSON request parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from infra.local import SqsWorker, load_handler
from tests.conftest import PHOTOS, ROOT, read

INTERNALS = ("Traceback", "/work/", "site-packages", 'File "', '.py"')


@pytest.fixture
def app(stack: Any) -> Any:
    from pictrace.api import create_app

    s3 = stack.client("s3")
    for name in PHOTOS[:3]:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
    SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py")).drain()
    return create_app()


def test_no_5xx_and_responses_match_the_schema(app: Any) -> None:
    """Every operation of /openapi.json, with bodies, parameters and content types generated from it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/health", "/images/{image_id}"}
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.method, case.path, response.text)
            # positive_data_acceptance is left out: a schema cannot say which bytes are a decodable photo or which
            # URL answers, so schema-valid requests are rightly refused with 4xx; every other check applies
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            assert not any(marker in response.text for marker in INTERNALS)

        check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "url": st.text(max_size=80) | st.sampled_from(["http://", "https://[::1]/", "http://0/", "file:///etc"]),
            "image_base64": st.text(max_size=80),
            "id": st.text(alphabet="0123456789abcdefg", min_size=0, max_size=70),
            "top_k": json_values,
            "shortlist": json_values,
        },
    ),
    json_values,
)


def test_json_request_parsing_never_fails_with_a_5xx(app: Any) -> None:
    client = TestClient(app, raise_server_exceptions=False)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body: Any) -> None:
        response = client.post("/search", content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code in (200, 400, 404, 413, 422), response.text
        assert isinstance(response.json()["detail"], str) if response.status_code != 200 else True
        assert not any(marker in response.text for marker in INTERNALS)

    check()
