"""ObjectFetcher's cache, and query URLs of every shape, without the network: names resolve by a table, every TCP
connection attempt is recorded and refused."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.selector_events
import socket
import zlib
from typing import Any

import pictrace.fetch as fetch
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pictrace.errors import BadRequest, FetchError
from pictrace.fetch import ObjectFetcher


def test_clear_empties_the_cache_and_forget_drops_one_key() -> None:
    fetcher = ObjectFetcher(lambda key: f"http://127.0.0.1:9/{key}", bytes.decode)
    fetcher._cache.update({"a": "A", "b": "B"})
    fetcher.forget("a")
    assert asyncio.run(fetcher.fetch_many(["b"])) == {"b": "B"}  # served from the cache: no request made
    fetcher.clear()
    assert not fetcher._cache


def test_cached_objects_are_handed_over_as_they_are_at_hand() -> None:
    fetcher = ObjectFetcher(lambda key: f"http://127.0.0.1:9/{key}", bytes.decode)
    fetcher._cache.update({"a": "A", "b": "B"})
    seen: list[tuple[str, str]] = []
    found = asyncio.run(fetcher.fetch_many(["b", "a"], lambda key, value: seen.append((key, value))))
    assert found == {"a": "A", "b": "B"} and seen == [("b", "B"), ("a", "A")]


# --------------------------------------------------------------------------- query URLs (issue 26, item 3)
#: what a name resolves to in the fake network: public addresses, and every kind the address check refuses
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
PRIVATE = [
    "127.0.0.1",
    "10.0.0.7",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "::1",
    "fd00:ec2::254",
    "fe80::1",
    "::ffff:127.0.0.1",
]


class FakeNetwork:
    """Nothing leaves the machine: a name resolves to one address of PUBLIC + PRIVATE (by a hash of the name,
    'localhost' to loopback), and a TCP connection attempt to any address is recorded, then refused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, passthrough: set[str] | None = None) -> None:
        self.lookups: list[str] = []
        self.connections: list[str] = []
        passthrough = passthrough or set()
        real_getaddrinfo = asyncio.base_events.BaseEventLoop.getaddrinfo
        real_connect = asyncio.selector_events.BaseSelectorEventLoop.sock_connect
        network = self

        async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name in passthrough:
                return await real_getaddrinfo(self, host, port, *args, **kwargs)
            network.lookups.append(name)
            addresses = PUBLIC + PRIVATE
            address = "127.0.0.1" if name == "localhost" else addresses[zlib.crc32(name.encode()) % len(addresses)]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

        async def sock_connect(self: Any, sock: socket.socket, address: Any) -> None:
            if str(address[0]) in passthrough:
                return await real_connect(self, sock, address)
            network.connections.append(str(address[0]))
            raise ConnectionRefusedError(111, "refused by the fake network")

        monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)

    def private_connections(self) -> list[str]:
        """The addresses connected to that the address check should have refused."""
        return [a for a in self.connections if fetch.address_refused(a) is not None]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    return FakeNetwork(monkeypatch)


_FULLWIDTH = str.maketrans("0123456789.", "０１２３４５６７８９．")


def hosts() -> st.SearchStrategy[str]:
    """Hosts as a URL may spell them: names, IPv4 plain and in every shorthand (fewer parts, hex, octal, one
    number, leading zeros, full-width digits, ideographic dots), IPv6 bracketed or not (zones, mapped IPv4,
    malformed), IPvFuture, percent-encoding, IDNA-encodable and not, garbage."""
    octet = st.integers(0, 300)
    ipv4_parts = st.lists(octet, min_size=1, max_size=5)
    ipv4 = st.one_of(
        st.sampled_from(["127.0.0.1", "10.0.0.7", "169.254.169.254", "0.0.0.0", "100.64.0.1", "93.184.216.34"]),
        ipv4_parts.map(lambda p: ".".join(map(str, p))),
        ipv4_parts.map(lambda p: ".".join(hex(o) for o in p)),
        ipv4_parts.map(lambda p: ".".join(f"0{o:o}" for o in p)),
        st.integers(0, 2**32 + 5).map(str),
        st.integers(0, 2**32).map(hex),
    )
    ipv4_spelled = st.one_of(
        ipv4,
        ipv4.map(lambda a: a + "."),
        ipv4.map(lambda a: a.translate(_FULLWIDTH)),
        ipv4.map(lambda a: a.replace(".", "\u3002")),
    )
    ipv6 = st.sampled_from(
        [
            "::1",
            "::",
            "fe80::1",
            "fe80::1%25eth0",
            "fe80::1%eth0",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "fd00:ec2::254",
            "2606:2800:220:1::1",
            "1::2::3",
            "gggg::1",
            "::1%",
            "127.0.0.1",
            "v1.x",
            "",
            ":",
        ]
    )
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
    sound = st.one_of(
        st.lists(label, min_size=1, max_size=4).map(".".join),
        st.sampled_from(["localhost", "metadata.google.internal", "xn--9ca.com", "ß.de", "ｅｘａｍｐｌｅ.com", "İ.tr"]),
        st.sampled_from(["127.0.0.1", "10.0.0.7", "169.254.169.254", "0.0.0.0", "93.184.216.34", "8.8.8.8"]),
        st.sampled_from(["[::1]", "[fd00:ec2::254]", "[::ffff:127.0.0.1]", "[2606:2800:220:1::1]"]),
    )
    hostile = st.one_of(
        st.lists(st.from_regex(r"[a-z0-9_-]{0,12}", fullmatch=True), min_size=1, max_size=4).map(".".join),
        st.sampled_from(["xn--", "xn--zz", "a" * 70 + ".org", "a." * 130 + "org"]),
        st.sampled_from(["\u2024\u2024", "%41.com", "a%2eb", "ex ample.org", "a\\b", "a/b", "a?b", "a#b"]),
        ipv4_spelled,
        ipv4_spelled.map(lambda a: f"[{a}]"),
        ipv6.map(lambda a: f"[{a}]"),
        ipv6,
        ipv6.map(lambda a: f"[{a}"),
        ipv6.map(lambda a: f"{a}]"),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    )
    return st.sampled_from([sound, hostile]).flatmap(lambda part: part)


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """good five times in six: each part of a URL is usually sound, so the other parts' checks are reached."""
    return st.sampled_from([good, good, good, good, good, bad]).flatmap(lambda part: part)


def urls() -> st.SearchStrategy[str]:
    """URLs built from parts (scheme, userinfo, host from hosts(), port, path), and whole strings."""
    scheme = _mostly(
        st.sampled_from(["http://", "https://"]),
        st.sampled_from(["HTTP://", "ftp://", "file://", "gopher://", "//", "", "http:", "http:/", "http:\\\\"]),
    )
    userinfo = _mostly(st.just(""), st.sampled_from(["u@", "u:p@", "@", ":@", "a@b@", "%40@"]))
    port = _mostly(
        st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
        st.one_of(
            st.integers(-5, 70_000).map(lambda p: f":{p}"),
            st.sampled_from([":", ":0", ":x", ": 80", ":0080", ":\u0668\u0660", ":1_0", ":+80", ":99999"]),
        ),
    )
    path = _mostly(
        st.sampled_from(["", "/", "/x.jpg", "/a/b.png?x=1", "/x.jpg#f"]),
        st.one_of(
            st.sampled_from(["/%zz", "/%", "?a=%", "/\x00", "/a b", "/" + "a" * 2100, "/\ud800"]),
            st.text(max_size=20).map(lambda p: "/" + p),
        ),
    )
    built = st.tuples(scheme, userinfo, hosts(), port, path).map("".join)
    return _mostly(built, st.text(max_size=40))


#: the issue's URLs and the shapes each fix is about (a browser's IPv4 shorthand, full-width digits, IPvFuture)
KNOWN = [
    "http://[::1/x.jpg",
    "http://[127.0.0.1]/x.jpg",
    "http://[::1]]/x.jpg",
    "http://[v1.x]/x.jpg",
    "http://１２７.０.０.１/x.jpg",
    "http://127\u30020\u30020\u30021/x.jpg",
    "http://127.1/x.jpg",
    "http://0x7f.1/x.jpg",
    "http://2130706433/x.jpg",
    "http://0177.0.0.1/x.jpg",
    "http://127.0.0.1./x.jpg",
    "http://xn--zz/x.jpg",
    "http://[fe80::1%25eth0]/x.jpg",
]


def _outcome(url: str, allow_private: bool = False) -> BaseException | None:
    try:
        asyncio.run(fetch.fetch_url(url, max_bytes=1_000_000, timeout=2.0, allow_private=allow_private))
    except Exception as exc:  # noqa: BLE001  # the property is about which exceptions: every one is looked at
        return exc
    return None


@pytest.mark.parametrize("url", KNOWN)
def test_each_known_hostile_url_is_refused_before_any_connection(url: str, network: FakeNetwork) -> None:
    exc = _outcome(url)
    assert isinstance(exc, FetchError) and str(exc), (url, exc)
    assert network.connections == [], (url, network.connections)


@pytest.mark.parametrize("host", ["１２７.０.０.１", "127\u30020\u30020\u30021", "１２７．０．０．１"])
def test_full_width_digits_and_dots_are_the_address_they_spell(host: str, network: FakeNetwork) -> None:
    """IDNA turns them into 127.0.0.1, which aiohttp connects to without resolving: checked as that address."""
    exc = _outcome(f"http://{host}/x.jpg")
    assert isinstance(exc, FetchError) and "loopback" in str(exc), exc
    assert network.connections == []
    _outcome(f"http://{host}/x.jpg", allow_private=True)
    assert network.connections == ["127.0.0.1"]


@pytest.mark.parametrize(
    "host",
    ["127.1", "127.0.1", "0x7f.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.0.0.01", "127.0.0.1.", "[v1.x]"],
)
def test_a_host_that_only_looks_like_an_address_is_refused(host: str, network: FakeNetwork) -> None:
    """IPv4 shorthands (an address to the system's resolver and to browsers) and IPvFuture: refused as written,
    allow_private or not, with no lookup and no connection."""
    for allow_private in (False, True):
        exc = _outcome(f"http://{host}/x.jpg", allow_private)
        assert isinstance(exc, FetchError) and "IP address" in str(exc), (host, allow_private, exc)
    assert network.connections == [] and network.lookups == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(url=urls(), allow_private=st.booleans())
@example(url="http://１２７.０.０.１/x.jpg", allow_private=False)
@example(url="http://127.1/x.jpg", allow_private=False)
@example(url="http://[::1/x.jpg", allow_private=True)
@example(url="http://[127.0.0.1]/x.jpg", allow_private=True)
def test_any_url_is_fetched_or_a_fetch_error_and_never_reaches_a_private_address(url: str, allow_private: bool) -> None:
    """Property: whatever the URL, fetch_url raises only FetchError or BadRequest (never another exception, so the
    API answers a 4xx), with a message; without allow_private, no connection is attempted to a non-public address;
    and no name is looked up that the URL check did not accept as a host name."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        network = FakeNetwork(monkeypatch)
        exc = _outcome(url, allow_private)
        assert isinstance(exc, FetchError | BadRequest) and str(exc), (url, repr(exc))
        if not allow_private:
            assert network.private_connections() == [], (url, network.connections)
        for name in network.lookups:
            assert fetch._HOST_NAME.fullmatch(name) and not fetch._looks_like_an_address(name), (url, name)


@settings(max_examples=300, deadline=None)
@given(url=urls())
def test_checked_url_accepts_only_what_it_can_vouch_for(url: str) -> None:
    """Property: checked_url answers an http(s) URL with a port in range and a host that is a public IP address or a
    host name (then resolved and checked), or raises FetchError; nothing else."""
    try:
        parsed = fetch.checked_url(url, allow_private=False)
    except FetchError as exc:
        assert str(exc)
        return
    host = parsed.raw_host or ""
    assert parsed.scheme in ("http", "https") and parsed.port is not None and 1 <= parsed.port <= 65535
    assert not parsed.raw_user and not parsed.raw_password
    if fetch._looks_like_an_address(host):
        assert fetch.address_refused(host) is None, url
    else:
        assert fetch._HOST_NAME.fullmatch(host), url
