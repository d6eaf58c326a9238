"""Query-by-URL against a real HTTP server on loopback: SSRF defences, redirects, limits, types, timeouts.

The server listens on 127.0.0.2; the tests let only that address through the address check (everything else,
including 127.0.0.1, keeps the real rules), so each refusal below is the production code's.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pictrace.fetch as fetch
import pytest
from aiohttp import web
from pictrace.errors import FetchError, ImageTooLarge

from tests.conftest import read
from tests.unit.test_fetch import FakeNetwork, urls

SERVER_IP = "127.0.0.2"
LIMIT = 100_000


def _header(value: str) -> str:
    """A Location as given (non-ASCII is sent as UTF-8), but for what a header cannot hold (control characters,
    lone surrogates): percent-encoded."""
    return "".join(
        f"%{ord(c):02X}" if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F or 0xD800 <= ord(c) < 0xE000 else c
        for c in value
    )


def _app() -> web.Application:
    async def img(_: web.Request) -> web.Response:
        return web.Response(body=read("astronaut.jpg"), content_type="image/jpeg")

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>hi</html>", content_type="text/html")

    async def fake(_: web.Request) -> web.Response:
        return web.Response(body=b"<script>alert(1)</script>" * 10, content_type="image/jpeg")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"\xff\xd8\xff" + b"\0" * 1000)
        for _ in range(200):
            await response.write(b"\0" * 1000)
        return response

    async def declared(request: web.Request) -> web.StreamResponse:
        # declares more than the limit, sends a few bytes, then stalls: only the Content-Length check can refuse
        # it before the client's timeout (reading the body would wait for bytes that do not come)
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = LIMIT + 10
        await response.prepare(request)
        await response.write(b"\xff\xd8\xff")
        await asyncio.sleep(4)
        return response

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=read("astronaut.jpg"), content_type="image/jpeg")

    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/img.jpg" if n == 0 else f"/hop/{n - 1}")

    async def to(request: web.Request) -> web.Response:
        # any Location, malformed and non-ASCII ones included (sent as UTF-8), as given; only what cannot be in a
        # header (control characters, lone surrogates) is percent-encoded
        return web.Response(status=302, headers={"Location": _header(request.query["url"])})

    async def location(request: web.Request) -> web.Response:  # LOCATIONS[i], as written
        return web.Response(status=302, headers={"Location": _header(LOCATIONS[int(request.match_info["i"])])})

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application()
    app.add_routes(
        [
            web.get("/img.jpg", img),
            web.get("/html", html),
            web.get("/fake.jpg", fake),
            web.get("/big", big),
            web.get("/declared", declared),
            web.get("/slow", slow),
            web.get("/hop/{n}", hop),
            web.get("/to", to),
            web.get("/location/{i}", location),
            web.get("/missing", missing),
        ]
    )
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app())
    with socket.socket() as s:
        s.bind((SERVER_IP, 0))
        port = s.getsockname()[1]
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, SERVER_IP, port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://{SERVER_IP}:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(autouse=True)
def only_the_test_server_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fetch.address_refused
    monkeypatch.setattr(fetch, "address_refused", lambda a: None if a == SERVER_IP else real(a))


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    """No lookup or connection leaves the machine but to the test server (names resolve by a table)."""
    return FakeNetwork(monkeypatch, passthrough={SERVER_IP})


def get(url: str, timeout: float = 3.0) -> bytes:
    return asyncio.run(fetch.fetch_url(url, max_bytes=LIMIT, timeout=timeout))


def test_an_image_url_is_fetched(server: str) -> None:
    assert get(f"{server}/img.jpg") == read("astronaut.jpg")


def test_three_redirects_are_followed_a_fourth_is_refused(server: str) -> None:
    assert get(f"{server}/hop/2") == read("astronaut.jpg")  # 3 redirects
    with pytest.raises(FetchError, match="redirected more than 3"):
        get(f"{server}/hop/3")


@pytest.mark.parametrize(
    "target,words",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "private"),
        ("http://127.0.0.1:9/", "loopback"),
        ("http://[::ffff:127.0.0.1]:9/", "IPv4-mapped"),
        ("http://[::1]:9/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://localhost:9/", "loopback"),  # a name: refused after resolving it
    ],
)
def test_every_redirect_is_checked_again(server: str, target: str, words: str) -> None:
    with pytest.raises(FetchError, match=words):
        get(target)
    with pytest.raises(FetchError, match=words):
        get(f"{server}/to?url={target}")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x/", "ftp://example.com/a.jpg", "/relative.jpg"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(FetchError, match="http"):
        get(url)


def test_content_type_and_magic_bytes_are_both_checked(server: str) -> None:
    with pytest.raises(FetchError, match="not an image"):
        get(f"{server}/html")
    with pytest.raises(FetchError, match="not a JPEG, PNG"):
        get(f"{server}/fake.jpg")


def test_byte_limit_holds_while_streaming(server: str) -> None:
    """No Content-Length (chunked): the limit is enforced on the bytes as they arrive."""
    with pytest.raises(ImageTooLarge, match=f"over the limit of {LIMIT} bytes"):
        get(f"{server}/big")


def test_a_declared_content_length_over_the_limit_is_refused_before_the_body_is_read(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ImageTooLarge, match=f"is {LIMIT + 10} bytes; the limit is {LIMIT} bytes"):
        get(f"{server}/declared", timeout=2.0)
    assert time.monotonic() - started < 1.5  # not after waiting for the body


def test_slow_servers_time_out(server: str) -> None:
    with pytest.raises(FetchError, match="Timeout"):
        get(f"{server}/slow", timeout=1.0)


def test_error_status_is_reported(server: str) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        get(f"{server}/missing")


def test_the_checked_address_is_the_one_connected_to(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolves to the allowed address once, then to loopback; one lookup is made."""
    port = int(server.rsplit(":", 1)[1])
    answers = iter([SERVER_IP, "127.0.0.1", "127.0.0.1"])
    lookups: list[str] = []
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def rebinding(self: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return await real(self, host, *args, **kwargs)
        address = next(answers)
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", rebinding)
    assert get(f"http://rebind.test:{port}/img.jpg") == read("astronaut.jpg")
    assert lookups == [SERVER_IP]


# --------------------------------------------------------------------------- malformed URLs (issue 26): a 4xx each
HOSTILE = [
    "http://[::1/x.jpg",  # an unclosed IPv6 bracket
    "http://[127.0.0.1]/x.jpg",  # IPv4 in IPv6 brackets
    "http://[::1]]/x.jpg",
    "http://[fe80::1%25eth0/x.jpg",
    "http://[]/x.jpg",
    "http://[v1.x]/x.jpg",  # IPvFuture: not an address, not a name
    "http://host:99999/x.jpg",  # port out of range
    "http://host:port/x.jpg",
    "http://host:0/x.jpg",
    "http://user:pass@127.0.0.2/x.jpg",  # credentials
    "http://\u2024\u2024/x.jpg",  # a name IDNA cannot encode
    "http://xn--zz/x.jpg",  # an xn-- label that decodes to nothing
    "http://exa mple.org/x.jpg",
    "http://example.org/\x00x.jpg",
    "http:///x.jpg",
    "//example.org/x.jpg",
    "http://" + "a" * 3000 + ".org/x.jpg",
    "javascript:alert(1)",
    "http://127.1/x.jpg",  # IPv4 shorthands: an address to the resolver and to browsers
    "http://0x7f.0.0.1/x.jpg",
    "http://2130706433/x.jpg",
    "http://１２７.０.０.１/x.jpg",  # full-width digits: IDNA makes them 127.0.0.1
]
#: what a server may put in Location besides those: relative and malformed, empty, another scheme, private
LOCATIONS = [
    *HOSTILE,
    "//[::1/x.jpg",
    "//[127.0.0.1]/x.jpg",
    "http://[127.0.0.1]:80/",
    "http://%zz/",
    "",
    "gopher://127.0.0.2/",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1/",
    "http://localhost/",
    "http://１２７.０.０.１/",
]


@pytest.fixture
def client(stack: Any) -> Any:
    """The API against the local stack with PICTRACE_URL_ALLOW_PRIVATE=false, as deployed."""
    from fastapi.testclient import TestClient
    from pictrace.api import create_app
    from pictrace.settings import Settings

    return TestClient(create_app(Settings.from_env(url_allow_private=False)))


def _to(server: str, location: str) -> str:
    """A URL on the test server that answers 302 with this Location."""
    return f"{server}/to?url={quote(location, safe='', errors='surrogatepass')}"


def _search(client: Any, url: str, path: str = "/search") -> Any:
    """POST {"url": url} as JSON (ASCII-escaped, so a lone surrogate is sent as the \\ud800 a client may send)."""
    return client.post(path, content=json.dumps({"url": url}), headers={"content-type": "application/json"})


@pytest.mark.parametrize("url", HOSTILE)
def test_a_malformed_url_is_a_fetch_error(url: str) -> None:
    with pytest.raises(FetchError):
        get(url)


@pytest.mark.parametrize("location", LOCATIONS)
def test_a_redirect_to_a_malformed_location_is_a_fetch_error(server: str, location: str, network: FakeNetwork) -> None:
    """Each refused with a message that names the redirect and what is wrong, quickly, never reaching a
    non-public address."""
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"^the url redirected to \S") as refused:
        get(f"{server}/location/{LOCATIONS.index(location)}")
    assert time.monotonic() - started < 2, (location, refused.value)
    assert network.private_connections() == []


def test_the_api_answers_each_hostile_url_with_a_4xx_quickly(client: Any, server: str) -> None:
    """Against the app with PICTRACE_URL_ALLOW_PRIVATE=false, as deployed: a 4xx within 2 s, and healthy after."""
    for url in [*HOSTILE, *(f"{server}/location/{i}" for i in range(len(LOCATIONS)))]:
        started = time.monotonic()
        answer = _search(client, url)
        assert 400 <= answer.status_code < 500 and answer.json()["detail"], (url, answer.status_code, answer.text)
        assert time.monotonic() - started < 2, url
    assert client.get("/auth/config").status_code == 200


def test_any_url_through_the_api_is_a_4xx(client: Any, server: str, network: FakeNetwork) -> None:
    """Property: whatever URL a client sends (or a server redirects to), /search and /compare answer a 4xx with a
    detail (never a 5xx), and no connection is attempted to a non-public address (the network is faked; the test
    server is the one public host)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.one_of(urls(), urls().map(lambda u: _to(server, u))),
        st.sampled_from(["/search", "/compare?target=" + "0" * 64]),
    )
    def check(url: str, path: str) -> None:
        answer = _search(client, url, path)
        assert 400 <= answer.status_code < 500 and answer.json()["detail"], (url, answer.status_code, answer.text)

    check()
    assert network.private_connections() == []
    assert client.get("/auth/config").status_code == 200


def test_any_redirect_location_is_followed_or_a_fetch_error(server: str, network: FakeNetwork) -> None:
    """Property: whatever a server puts in Location, the fetch follows it or refuses it with a FetchError (the network
    is faked but for the test server: no Location reaches a non-public address)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(urls(), st.text(max_size=30)))
    def check(location: str) -> None:
        try:
            get(_to(server, location), timeout=2.0)
        except (FetchError, ImageTooLarge):
            pass

    check()
    assert network.private_connections() == []
