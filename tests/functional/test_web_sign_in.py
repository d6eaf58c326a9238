"""The page on a stack deployed with ApiAuth=COGNITO, in headless Chromium: it signs in through the pool's hosted UI
(authorization code + PKCE; a stand-in serves the hosted UI's endpoints), sends the access token on every API call
(the JWT authorizer's stand-in refuses calls without it), refreshes it, signs in again when the API refuses it, and
signs out."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI, Form, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse

from tests.functional.authorizer import Authorizer
from tests.functional.live import index_photos, serve
from tests.functional.test_web_page import browser_page, sha, wait_for_results  # noqa: F401 - the fixture

CLIENT = "pictrace-app-client"
TOKENS = "JSON.parse(sessionStorage.getItem('pictrace.tokens'))"


class HostedUi:
    """The user pool's hosted UI and token endpoint as the page uses them: /oauth2/authorize signs the user in at
    once and sends them back with a code, /oauth2/token exchanges it (checking the PKCE verifier) or a refresh token,
    /logout sends them back; `valid` holds the access tokens the authorizer accepts."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, str]] = {}  # code -> (challenge, redirect_uri)
        self.valid: set[str] = set()
        self.grants: list[str] = []
        self.logouts = 0
        self._codes, self._tokens = itertools.count(1), itertools.count(1)

    def app(self) -> FastAPI:
        ui = FastAPI()
        ui.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])

        @ui.get("/oauth2/authorize")
        def authorize(
            response_type: str, client_id: str, redirect_uri: str, scope: str, code_challenge: str,
            code_challenge_method: str,
        ) -> RedirectResponse:  # fmt: skip
            if (response_type, client_id, code_challenge_method) != ("code", CLIENT, "S256") or "openid" not in scope:
                raise HTTPException(400, "invalid_request")
            code = f"code-{next(self._codes)}"
            self.pending[code] = (code_challenge, redirect_uri)
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code})}", status_code=302)

        @ui.post("/oauth2/token")
        def token(
            grant_type: str = Form(), client_id: str = Form(), code: str = Form(""), redirect_uri: str = Form(""),
            code_verifier: str = Form(""), refresh_token: str = Form(""),
        ) -> dict[str, Any]:  # fmt: skip
            if client_id != CLIENT:
                raise HTTPException(400, "invalid_client")
            if grant_type == "authorization_code":
                challenge, expected_uri = self.pending.pop(code, ("", ""))
                digest = hashlib.sha256(code_verifier.encode()).digest()
                if redirect_uri != expected_uri or base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                    raise HTTPException(400, "invalid_grant")
            elif grant_type != "refresh_token" or not refresh_token.startswith("refresh-"):
                raise HTTPException(400, "invalid_grant")
            self.grants.append(grant_type)
            access = f"access-{next(self._tokens)}"
            self.valid.add(access)
            answer = {"access_token": access, "id_token": "id", "expires_in": 3600, "token_type": "Bearer"}
            return answer | ({"refresh_token": f"refresh-{access}"} if grant_type == "authorization_code" else {})

        @ui.get("/logout")
        def logout(client_id: str, logout_uri: str) -> RedirectResponse:
            self.logouts += 1
            return RedirectResponse(logout_uri, status_code=302)

        return ui


@pytest.fixture
def cognito_site(stack: Any) -> Iterator[tuple[str, HostedUi, Authorizer]]:
    """The app as a Cognito stack serves it (its /auth/config names the hosted UI), behind the authorizer's
    stand-in, with a JPEG and a TIFF (whose thumbnail the API serves) indexed."""
    from pictrace.api import create_app
    from pictrace.settings import Settings

    ui = HostedUi()
    worker = index_photos(stack, ["astronaut.jpg", "camera.tiff"])
    try:
        with serve(ui.app()) as domain:
            settings = Settings.from_env(
                auth_mode="cognito", auth_domain=domain, auth_client_id=CLIENT, auth_region="us-east-1"
            )
            authorizer = Authorizer(create_app(settings), lambda token: token in ui.valid)
            with serve(authorizer) as base:
                yield base, ui, authorizer
    finally:
        worker.stop()


def search_by_id(page: Any, name: str) -> None:
    page.fill("#url", sha(name))
    page.press("#url", "Enter")
    wait_for_results(page, sha(name))
    assert page.locator("#error").is_hidden()


def signed_in(page: Any, nth: int) -> dict[str, Any]:
    """Once the page holds the nth access token the hosted UI issued and says it is signed in: its tokens."""
    page.wait_for_function(f"() => {TOKENS} && {TOKENS}.access === 'access-{nth}'")
    page.wait_for_function("() => document.getElementById('auth').textContent.includes('signed in')")
    tokens: dict[str, Any] = page.evaluate(TOKENS)
    return tokens


def test_the_page_signs_in_sends_the_token_refreshes_it_and_signs_out(
    cognito_site: tuple[str, HostedUi, Authorizer],
    browser_page: Any,  # noqa: F811 - the fixture
) -> None:
    base, ui, authorizer = cognito_site
    page = browser_page
    # the first visit goes to the hosted UI and back with a code, which the page exchanges (its PKCE verifier
    # checked) and then drops from the address
    page.goto(base + "/")
    tokens = signed_in(page, 1)
    assert ui.grants == ["authorization_code"] and page.url == base + "/"
    assert tokens["access"] in ui.valid and tokens["refresh"]

    # every call to the API carries the access token; the TIFF's thumbnail (the API's) is fetched with it
    search_by_id(page, "astronaut.jpg")
    assert authorizer.tokens and set(authorizer.tokens) == {tokens["access"]}
    tiff = page.locator(f"#results .card[data-id='{sha('camera.tiff')}'] img")
    page.wait_for_function(
        "id => { const i = document.querySelector(`#results .card[data-id='${id}'] img`);"
        " return i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0 }",
        arg=sha("camera.tiff"),
    )
    assert tiff.count() == 1

    # an access token about to expire is refreshed before the call
    page.evaluate(f"() => sessionStorage.setItem('pictrace.tokens', JSON.stringify({{...{TOKENS}, expires: 0}}))")
    search_by_id(page, "camera.tiff")
    assert ui.grants == ["authorization_code", "refresh_token"]
    refreshed = page.evaluate(TOKENS)
    assert refreshed["access"] != tokens["access"] and authorizer.tokens[-1] == refreshed["access"]

    # a token the API refuses although the clock says it is good (revoked): refreshed, and the call made again
    ui.valid.discard(refreshed["access"])
    search_by_id(page, "astronaut.jpg")
    assert ui.grants[-1] == "refresh_token" and authorizer.tokens[-1] == page.evaluate(TOKENS)["access"]

    # sign out: the tokens are dropped and the hosted UI's logout sends the page back, which signs in afresh
    page.click("#auth button")
    signed_in(page, 4)
    assert ui.logouts == 1 and ui.grants[-1] == "authorization_code"


def test_a_deployed_stack_without_sign_in_says_what_it_exposes(
    stack: Any,
    browser_page: Any,  # noqa: F811 - the fixture
) -> None:
    """ApiAuth=NONE, reached by its deployed name rather than loopback's: the page says anyone with the URL can
    search (the browser's requests to that name are answered by the app on 127.0.0.1)."""
    from pictrace.api import create_app

    deployed = "https://abc123.execute-api.us-east-1.amazonaws.com"
    with serve(create_app()) as base:
        browser_page.route(f"{deployed}/**", lambda route: route.fulfill(response=route.fetch(
            url=route.request.url.replace(deployed, base))))  # fmt: skip
        browser_page.goto(deployed + "/")
        browser_page.wait_for_function("() => document.getElementById('auth').textContent !== ''")
        assert browser_page.inner_text("#auth") == "no sign-in (ApiAuth=NONE): anyone with this URL can search"
