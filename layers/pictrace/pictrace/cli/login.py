"""`pictrace login`: sign in to a stack's user pool (ApiAuth=COGNITO) with a user name and password; the tokens are
kept for that API (pictrace.cli.tokens) and every later command sends them."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from pictrace.cli.common import EXIT_OK, ServiceError, Target, UsageError, api_call
from pictrace.cli.render import Output
from pictrace.cli.tokens import forget, from_result, save
from pictrace.storage import new_client


def _secret(args: argparse.Namespace, prompt: str) -> str:
    """A password: the next line of standard input with --password-stdin, else asked for without echo."""
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise UsageError(f"--password-stdin: standard input has no line for the {prompt.lower().rstrip(': ')}")
        return line
    return getpass.getpass(prompt)


def _app_client(args: argparse.Namespace, target: Target) -> tuple[str, str] | None:
    """The user pool app client to sign in with and its region: as given (--user-pool-client-id, --region, or the
    environment), else as the API's GET /auth/config names them; None where the API asks for no sign-in."""
    client_id = args.user_pool_client_id or os.environ.get("PICTRACE_USER_POOL_CLIENT_ID")
    if client_id:
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise UsageError("--user-pool-client-id needs the pool's region: --region or AWS_REGION")
        return client_id, region
    config = api_call(target, "GET", "/auth/config")
    mode = config.get("mode")
    if mode == "none":
        return None
    if mode != "cognito" or not config.get("client_id") or not config.get("region"):
        raise UsageError(
            f"{target.api} is signed in to with {mode}, not the stack's user pool: give the app client of your own "
            "pool with --user-pool-client-id and --region, or sign requests another way"
        )
    return str(config["client_id"]), str(config["region"])


def cmd_login(args: argparse.Namespace, target: Target, out: Output) -> int:
    """Sign in to the API's user pool and keep the tokens; --logout forgets them."""
    if args.logout:
        forget(target.api)
        out.note(f"signed out of {target.api}")
        return EXIT_OK
    pool = _app_client(args, target)
    if pool is None:
        out.note(f"{target.api} asks for no sign-in")
        return EXIT_OK
    client_id, region = pool
    username = args.username or input("user (email): ").strip()
    cognito = new_client("cognito-idp", region_name=region)
    try:
        answer = cognito.initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH",
            ClientId=client_id,
            AuthParameters={"USERNAME": username, "PASSWORD": _secret(args, "Password: ")},
        )
        if answer.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":  # a user the administrator created
            answer = cognito.respond_to_auth_challenge(
                ClientId=client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=answer["Session"],
                ChallengeResponses={"USERNAME": username, "NEW_PASSWORD": _secret(args, "New password: ")},
            )
    except ClientError as exc:
        raise UsageError(f"sign-in refused: {exc.response.get('Error', {}).get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise ServiceError(f"cannot reach the user pool in {region}: {exc}") from None
    if "AuthenticationResult" not in answer:
        raise UsageError(f"the user pool asks for {answer.get('ChallengeName')}, which `pictrace login` does not do")
    path = save(target.api, from_result(answer["AuthenticationResult"], client_id, region))
    out.note(f"signed in to {target.api} as {username} (tokens in {path}, readable by you only)")
    return EXIT_OK
