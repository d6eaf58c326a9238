"""Closed by default (issue 26): the page and the CLI learn how to sign in from GET /auth/config, and `pictrace login`
signs in to a user pool (moto's cognito-idp) and sends its token on every later call, to an API that refuses calls
without one as the stack's JWT authorizer does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tests.functional.authorizer import Authorizer
from tests.functional.live import index_photos, serve

EXE = Path(sys.executable).parent / "pictrace"
USER, TEMPORARY, CHOSEN = "ana@example.org", "Temporary#Pass1", "Chosen#Password42"


def accepted_by(cognito: Any) -> Callable[[str], bool]:
    """Whether the user pool takes an access token (moto's GetUser checks it)."""

    def accepts(token: str) -> bool:
        try:
            cognito.get_user(AccessToken=token)
        except Exception:  # noqa: BLE001 - any refusal of the token is a 401, as API Gateway answers
            return False
        return True

    return accepts


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


def closed_api(stack: Any, **auth: str) -> Iterator[str]:
    """The app with these auth settings behind the authorizer's stand-in, one photo indexed; yields its URL."""
    from pictrace.api import create_app
    from pictrace.settings import Settings

    worker = index_photos(stack, ["astronaut.jpg"])
    try:
        app = create_app(Settings.from_env(**auth))
        with serve(Authorizer(app, accepted_by(stack.client("cognito-idp")))) as api:
            yield api
    finally:
        worker.stop()


@pytest.fixture
def signed_api(stack: Any, pool: dict[str, str]) -> Iterator[str]:
    """A stack deployed with ApiAuth=COGNITO: /auth/config names the pool's app client."""
    yield from closed_api(
        stack, auth_mode="cognito", auth_domain="https://pictrace-test.auth.example", auth_client_id=pool["client_id"],
        auth_region="us-east-1",
    )  # fmt: skip


@pytest.fixture
def jwt_api(stack: Any, pool: dict[str, str]) -> Iterator[str]:
    """A stack deployed with ApiAuth=JWT and a user pool of the deployer's own: /auth/config names no pool."""
    yield from closed_api(stack, auth_mode="jwt")


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


def login(api: str, stack: Any, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pictrace login` as the administrator-created user, choosing a new password on the first sign-in."""
    return cli(
        api, stack, home, "login", "--username", USER, "--password-stdin", *args, stdin=f"{TEMPORARY}\n{CHOSEN}\n"
    )


def test_an_expired_sign_in_is_refreshed_with_the_refresh_token(stack: Any, signed_api: str, tmp_path: Path) -> None:
    assert login(signed_api, stack, tmp_path).returncode == 0
    kept = tmp_path / "pictrace" / "tokens.json"
    signed_in = json.loads(kept.read_text())
    signed_in[signed_api]["expires"] = 0  # the access token expired long ago
    kept.write_text(json.dumps(signed_in))
    photo = str(ROOT / "tests/data/astronaut.jpg")
    found = cli(signed_api, stack, tmp_path, "search", photo, "--json")
    assert found.returncode == 0, found.stderr
    refreshed = json.loads(kept.read_text())[signed_api]
    assert refreshed["expires"] > time.time() + 600 and refreshed["refresh"] == signed_in[signed_api]["refresh"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # without a refresh token, an expired sign-in is no sign-in: the API refuses, and the CLI says to log in
    kept.write_text(json.dumps({signed_api: {**refreshed, "expires": 0, "refresh": None}}))
    refused = cli(signed_api, stack, tmp_path, "search", photo)
    assert refused.returncode == 2 and "pictrace login" in refused.stderr, refused.stderr


def test_login_to_a_pool_the_api_does_not_name(stack: Any, pool: dict[str, str], jwt_api: str, tmp_path: Path) -> None:
    """ApiAuth=JWT with the deployer's own user pool: /auth/config names none, so the app client is given."""
    unnamed = login(jwt_api, stack, tmp_path)
    assert unnamed.returncode == 2 and "--user-pool-client-id" in unnamed.stderr, unnamed.stderr
    given = login(jwt_api, stack, tmp_path, "--user-pool-client-id", pool["client_id"], "--region", "us-east-1")
    assert given.returncode == 0, given.stderr
    found = cli(jwt_api, stack, tmp_path, "search", str(ROOT / "tests/data/astronaut.jpg"), "--json")
    assert found.returncode == 0, found.stderr
