"""The tokens `pictrace login` obtained, per API: kept in a file only the user can read (~/.config/pictrace, or
$XDG_CONFIG_HOME/pictrace), refreshed with the refresh token when the access token is about to expire, and sent
by every call to that API as a bearer token."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: an access token closer than this to its expiry is refreshed first
REFRESH_MARGIN_S = 60


def tokens_file() -> Path:
    """Where the tokens are kept."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pictrace" / "tokens.json"


def _load() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(tokens_file().read_text())
        return data
    except (OSError, ValueError):
        return {}


def save(api: str, signed_in: dict[str, Any]) -> Path:
    """Keep an API's tokens (access, refresh, expires, client_id, region), readable by the user only."""
    return _write({**_load(), api: signed_in})


def _write(everything: dict[str, Any]) -> Path:
    path = tokens_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(everything, out)
    os.chmod(path, 0o600)  # also when the file was there with wider modes
    return path


def forget(api: str) -> None:
    """Drop an API's tokens."""
    everything = _load()
    if everything.pop(api, None) is not None:
        _write(everything)


def from_result(result: dict[str, Any], client_id: str, region: str, refresh: str | None = None) -> dict[str, Any]:
    """What is kept of a Cognito AuthenticationResult."""
    return {
        "access": result["AccessToken"],
        "refresh": result.get("RefreshToken") or refresh,
        "expires": time.time() + int(result.get("ExpiresIn", 3600)),
        "client_id": client_id,
        "region": region,
    }


def bearer(api: str) -> dict[str, str]:
    """The Authorization header for an API signed in to (refreshed if need be), else no header."""
    signed_in = _load().get(api)
    if not signed_in:
        return {}
    if signed_in["expires"] - time.time() < REFRESH_MARGIN_S:
        if not signed_in.get("refresh"):
            return {}
        from botocore.exceptions import BotoCoreError, ClientError  # only a refresh needs the SDK

        from pictrace.storage import new_client

        try:
            client = new_client("cognito-idp", region_name=signed_in["region"])
            answer = client.initiate_auth(
                AuthFlow="REFRESH_TOKEN_AUTH",
                ClientId=signed_in["client_id"],
                AuthParameters={"REFRESH_TOKEN": signed_in["refresh"]},
            )
        except (BotoCoreError, ClientError) as exc:
            logger.info("could not refresh the sign-in to %s: %s", api, exc)
            return {}
        signed_in = from_result(
            answer["AuthenticationResult"], signed_in["client_id"], signed_in["region"], signed_in["refresh"]
        )
        save(api, signed_in)
    return {"authorization": f"Bearer {signed_in['access']}"}
