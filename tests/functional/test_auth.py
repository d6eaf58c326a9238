"""Closed by default (issue 26): the page and the CLI learn how to sign in from GET /auth/config, and `pictrace login`
signs in to a user pool (moto's cognito-idp) and sends its token on every later call, to an API that refuses calls
without one as the stack's JWT authorizer does."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tests.functional.live import index_photos, serve

EXE = Path(sys.executable).parent / "pictrace"
PUBLIC = ("/", "/static/", "/auth/config", "/health")  # what the template leaves without the authorizer
USER, TEMPORARY, CHOSEN = "ana@example.org", "Temporary#Pass1", "Chosen#Password42"


class Authorizer:
    """An ASGI wrapper standing in for API Gateway's JWT authorizer: outside the public routes, a call needs a
    bearer access token the user pool accepts (moto's GetUser checks it)."""

    def __init__(self, app: Any, cognito: Any) -> None:
        self.app, self.cognito = app, cognito

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and not (path in PUBLIC or path.startswith("/static/")):
            headers = dict(scope.get("headers") or [])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            try:
                self.cognito.get_user(AccessToken=token)
            except Exception:  # noqa: BLE001 - any refusal of the token is a 401, as API Gateway answers
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": b'{"message":"Unauthorized"}'})
                return
        await self.app(scope, receive, send)


@pytest.fixture
def pool(stack: Any) -> dict[str, str]:
    """A user pool as the stack makes it (admin-created users, the CLI's password flow) with one user."""
    cognito = stack.client("cognito-idp")
    pool_id = cognito.create_user_pool(
        PoolName="pictrace-users", AdminCreateUserConfig={"AllowAdminCreateUserOnly": True}
    )["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="pictrace",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool_id, Username=USER, TemporaryPassword=TEMPORARY)
    return {"pool_id": pool_id, "client_id": client_id}


@pytest.fixture
def signed_api(stack: Any, pool: dict[str, str]) -> Iterator[str]:
    from pictrace.api import create_app
    from pictrace.settings import Settings

    settings = Settings.from_env(
        auth_mode="cognito", auth_domain="https://pictrace-test.auth.example", auth_client_id=pool["client_id"],
        auth_region="us-east-1",
    )  # fmt: skip
    worker = index_photos(stack, ["astronaut.jpg"])
    try:
        with serve(Authorizer(create_app(settings), stack.client("cognito-idp"))) as api:
            yield api
    finally:
        worker.stop()


def cli(api: str, stack: Any, home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PICTRACE_API_URL": api,
        "XDG_CONFIG_HOME": str(home),
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": stack.endpoint,
    }
    return subprocess.run(
        [str(EXE), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def test_the_local_api_asks_for_no_sign_in(stack: Any) -> None:
    from pictrace.api import create_app

    assert TestClient(create_app()).get("/auth/config").json() == {"mode": "none"}


def test_a_cognito_stack_tells_the_page_where_to_sign_in(stack: Any) -> None:
    from pictrace.api import create_app
    from pictrace.errors import ConfigError
    from pictrace.settings import Settings

    settings = Settings.from_env(auth_mode="cognito", auth_domain="https://d", auth_client_id="c", auth_region="r")
    config = TestClient(create_app(settings)).get("/auth/config").json()
    assert config == {"mode": "cognito", "domain": "https://d", "client_id": "c", "region": "r"}
    with pytest.raises(ConfigError, match="PICTRACE_AUTH_DOMAIN"):
        Settings.from_env(auth_mode="cognito")


def test_pictrace_login_signs_in_and_every_later_call_sends_the_token(
    stack: Any, signed_api: str, tmp_path: Path
) -> None:
    photo = str(ROOT / "tests/data/astronaut.jpg")
    refused = cli(signed_api, stack, tmp_path, "search", photo)
    assert refused.returncode == 2 and "pictrace login" in refused.stderr, refused.stderr
    # an administrator-created user signs in with the temporary password and chooses a new one
    login = cli(
        signed_api, stack, tmp_path, "login", "--username", USER, "--password-stdin", stdin=f"{TEMPORARY}\n{CHOSEN}\n"
    )
    assert login.returncode == 0, login.stderr
    kept = tmp_path / "pictrace" / "tokens.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and signed_api in kept.read_text()
    found = cli(signed_api, stack, tmp_path, "search", photo, "--json")
    assert found.returncode == 0, found.stderr
    assert '"match": true' in found.stdout.replace('"match":true', '"match": true')
    again = cli(signed_api, stack, tmp_path, "login", "--username", USER, "--password-stdin", stdin=f"{CHOSEN}\n")
    assert again.returncode == 0, again.stderr
    wrong = cli(
        signed_api, stack, tmp_path, "login", "--username", USER, "--password-stdin", stdin="Not#ThePassword9\n"
    )
    assert wrong.returncode == 2 and "refused" in wrong.stderr
    assert cli(signed_api, stack, tmp_path, "login", "--logout").returncode == 0
    assert cli(signed_api, stack, tmp_path, "search", photo).returncode == 2
