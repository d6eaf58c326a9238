"""A stand-in for the HTTP API's JWT authorizer, for tests that serve the app over HTTP: the routes template.yaml
leaves public (with the default ApiAuth) pass, every other call needs a bearer token the test's identity provider
accepts, and is otherwise answered 401 as API Gateway answers it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from infra.invoke import load_template

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def public_routes() -> list[tuple[str, re.Pattern[str]]]:
    """(method, path pattern) of every route of the template that has no authorization when ApiAuth is COGNITO."""
    template = load_template()
    assert template["Parameters"]["ApiAuth"]["Default"] == "COGNITO"
    found = []
    for resource in template["Resources"].values():
        props = resource["Properties"]
        if resource["Type"] != "AWS::ApiGatewayV2::Route" or props["AuthorizationType"] != "NONE":
            continue
        assert resource.get("Condition") == "AuthAny", props["RouteKey"]  # present with COGNITO
        method, path = props["RouteKey"].split(" ", 1)
        # {proxy+}: one or more path segments; {name}: one
        pattern = re.escape(path).replace(r"\{proxy\+\}", ".+")
        found.append((method, re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern) + "$")))
    return found


class Authorizer:
    """An ASGI wrapper: outside the public routes, a call needs `Authorization: Bearer <token>` with a token that
    `accepts`; `tokens` lists the tokens of the calls let through."""

    def __init__(self, app: Any, accepts: Callable[[str], bool]) -> None:
        self.app, self.accepts = app, accepts
        self.public = public_routes()
        self.tokens: list[str] = []

    def is_public(self, method: str, path: str) -> bool:
        return any(m == method and p.match(path) for m, p in self.public)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.is_public(scope["method"], scope["path"]):
            headers = dict(scope.get("headers") or [])
            auth = headers.get(b"authorization", b"").decode()
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
            if not token or not self.accepts(token):
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": b'{"message":"Unauthorized"}'})
                return
            self.tokens.append(token)
        await self.app(scope, receive, send)
