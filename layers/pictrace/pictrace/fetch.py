"""HTTP fetching with aiohttp: index entries by presigned URL (concurrently), and query images by URL.

Query URLs are untrusted. Only http/https; the host name is resolved here and every address is checked
(loopback, private, link-local, multicast, reserved, IPv4-mapped IPv6 are refused unless allow_private);
aiohttp then connects to exactly the addresses that were checked, for the first request and each redirect.
Whatever is wrong with a URL, a redirect or the server's answer is a FetchError (or ImageTooLarge) saying what.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from pictrace.errors import FetchError, ImageTooLarge, UpstreamError
from pictrace.images import sniff_format
from pictrace.settings import Settings

MAX_REDIRECTS = 3
#: S3 answers that a GET should be retried after (throttling, server errors), and how often to try
RETRYABLE = frozenset({429, 500, 502, 503, 504})
FETCH_ATTEMPTS = 4
_IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def address_refused(address: str) -> str | None:
    """Why an IP address must not be fetched from, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address"
    for label, test in (
        ("an unspecified address", ip.is_unspecified),
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
    ):
        if test:
            return label
    if not ip.is_global:
        return "a non-public address"
    return None


class CheckedResolver(AbstractResolver):
    """Resolves names and refuses non-public addresses; what it returns is what aiohttp connects to."""

    def __init__(self, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"could not resolve host {host!r}") from exc
        results: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            reason = address_refused(address)
            if reason and not self.allow_private:
                raise FetchError(f"refusing to fetch from {host!r}: it resolves to {reason}")
            results.append(
                ResolveResult(
                    hostname=host, host=address, port=port, family=fam, proto=proto, flags=socket.AI_NUMERICHOST
                )
            )
        if not results:
            raise FetchError(f"could not resolve host {host!r}")
        return results

    async def close(self) -> None:
        return None


#: the longest query URL accepted (the API's schema says the same)
MAX_URL_LENGTH = 2048
#: a host name as DNS knows it (after IDNA): labels of letters, digits, hyphens (and underscores), dot-separated
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")
#: the longest DNS name, without its trailing dot
_MAX_NAME_LENGTH = 253
#: a last label that makes a host an IPv4 number to a browser (the WHATWG URL standard): digits, or 0x and hex digits
_NUMBER_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def checked_url(url: str, allow_private: bool) -> URL:
    """The URL as it will be requested, or FetchError saying what is wrong with it: absolute http(s) only, no user
    name or password, a port in range, and a host, as aiohttp will connect to it (IDNA-encoded), that is either a
    host name (checked when resolved, CheckedResolver) or a public IP address written plainly (dotted-quad IPv4, or
    IPv6 in brackets and only IPv6 there); a host that only looks like an address (127.1, 0x7f.1, 2130706433,
    full-width digits) is refused, since aiohttp would connect to it without resolving it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise FetchError(f"url must be an absolute http:// or https:// URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise FetchError("the url is malformed: it holds spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.hostname, parts.port  # noqa: B018  # both raise ValueError on a malformed authority
        parsed = URL(url)
        host, port = parsed.raw_host, parsed.port  # the host IDNA-encoded (UnicodeError on a name that does not encode)
    except (ValueError, UnicodeError, TypeError) as exc:
        raise FetchError(f"the url is malformed: {exc}") from None
    if (
        parts.scheme not in ("http", "https")
        or parsed.scheme not in ("http", "https")
        or not host
        or not parts.hostname
    ):
        raise FetchError("url must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None or parsed.raw_user or parsed.raw_password:
        raise FetchError("the url must not carry a user name or password")
    if port is None or not 1 <= port <= 65535:
        raise FetchError("the url's port must be between 1 and 65535")
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if bracketed or _looks_like_an_address(host):
        address = _ip_address(host, bracketed)
        reason = address_refused(address)
        if reason and not allow_private:
            raise FetchError(f"refusing to fetch from {address}: it is {reason}")
        return parsed
    _check_name(host)
    return parsed  # a name: CheckedResolver checks what it resolves to


def _looks_like_an_address(host: str) -> bool:
    """Whether aiohttp would connect to the host without resolving it (aiohttp.helpers.is_ip_address), or a browser
    would read it as an IPv4 number."""
    last = host.rstrip(".").rpartition(".")[2]
    return ":" in host or host.replace(".", "").isdigit() or _NUMBER_LABEL.fullmatch(last) is not None


def _ip_address(host: str, bracketed: bool) -> str:
    """The host as an IP address, or FetchError: IPv4 as four decimal octets, IPv6 in brackets, no zone id."""
    if "%" in host:
        raise FetchError(f"the url's host {host[:100]!r} carries a zone id: not an address that can be fetched from")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise FetchError(
            f"the url's host {host[:100]!r} is neither a host name nor an IP address "
            "(IPv4 as four decimal numbers, IPv6 in brackets)"
        ) from None
    if bracketed != (ip.version == 6):
        raise FetchError(f"the url's host {host[:100]!r}: an IPv6 address goes in brackets, and nothing else does")
    return str(ip)


def _check_name(host: str) -> None:
    """FetchError unless the (IDNA-encoded) host is a DNS name: valid labels, at most 253 characters, and each
    xn-- label the encoding of a real name."""
    if len(host.removesuffix(".")) > _MAX_NAME_LENGTH or not _HOST_NAME.fullmatch(host):
        raise FetchError(f"the url's host {host[:100]!r} is not a host name or an IP address")
    for label in host.removesuffix(".").split("."):
        if label[:4].lower() == "xn--":
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                decoded = ""
            if not decoded or decoded.isascii() or not decoded.isprintable():
                raise FetchError(f"the url's host {host[:100]!r} is not a valid internationalised (IDNA) name")


async def fetch_url(url: str, *, max_bytes: int, timeout: float, allow_private: bool = False) -> bytes:
    """The bytes of an image URL, refusing unsafe or malformed targets (the URL and every redirect), redirects past
    3, non-images and oversize bodies: FetchError or ImageTooLarge, never another exception for what a caller sent.
    A refusal after a redirect names where the redirect pointed."""
    target = checked_url(url, allow_private)
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(allow_private), use_dns_cache=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
    redirects = 0
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
            while True:
                async with session.get(target, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        if redirects == MAX_REDIRECTS:
                            raise FetchError(f"the url redirected more than {MAX_REDIRECTS} times")
                        target = _redirected(response, allow_private)
                        redirects += 1
                        continue
                    return await _read_image(response, max_bytes)
    except FetchError as exc:
        raise _after_redirects(str(exc), redirects, target) from None
    except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeError) as exc:
        raise _after_redirects(_failure(exc), redirects, target) from None


def _failure(exc: Exception) -> str:
    """What went wrong, for an exception aiohttp or yarl raised while fetching."""
    if isinstance(exc.__cause__, FetchError):  # refused by CheckedResolver while connecting
        return str(exc.__cause__)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "could not connect to the url's host"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"the url's server sent a malformed HTTP response ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        return f"fetching the url failed ({type(exc).__name__})"
    return f"the url cannot be fetched: {exc}"  # what aiohttp or yarl make of a target they cannot handle


def _after_redirects(message: str, redirects: int, target: URL) -> FetchError:
    """The FetchError for a failure after some redirects: saying where the last one pointed."""
    if redirects and not message.startswith("the url redirected"):
        return FetchError(f"the url redirected to {str(target)[:200]}: {message}")
    return FetchError(message)


def _redirected(response: aiohttp.ClientResponse, allow_private: bool) -> URL:
    """Where a redirect points, checked as the first URL was: an absolute or scheme-relative Location as written
    (resolving it first would lose what makes it malformed, such as brackets around a non-IPv6 host), a relative
    one joined to the checked URL it came from."""
    location = response.headers["Location"]
    if not location.strip():
        raise FetchError("the url redirected to an empty location")
    try:
        if urlsplit(location).scheme:
            target = location
        elif location.startswith("//"):
            target = f"{response.url.scheme}:{location}"
        else:
            target = str(response.url.join(URL(location)))
    except (ValueError, UnicodeError, TypeError) as exc:
        raise FetchError(f"the url redirected to a malformed location {location[:200]!r}: {exc}") from None
    try:
        return checked_url(target, allow_private)
    except FetchError as exc:
        raise FetchError(f"the url redirected to {location[:200]!r}: {exc}") from None


async def _read_image(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.status != 200:
        raise FetchError(f"fetching the url answered HTTP {response.status}")
    ctype = response.headers.get("Content-Type", "").lower()
    if ctype and not ctype.startswith(_IMAGE_TYPES):
        raise FetchError(f"the url is not an image (Content-Type {ctype.split(';')[0]})")
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ImageTooLarge(f"the url's image is {declared} bytes; the limit is {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(65536):
        total += len(chunk)
        if total > max_bytes:
            raise ImageTooLarge(f"the url's image is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if sniff_format(data) is None:
        raise FetchError("the url's content is not a JPEG, PNG, WebP, BMP or TIFF image")
    return data


class ObjectFetcher:
    """Fetches index objects by presigned URL, many at once, keeping an LRU of parsed results."""

    def __init__(
        self,
        presign: Callable[[str], str],
        parse: Callable[[bytes], Any],
        *,
        concurrency: int = 16,
        cache_size: int = 2048,
        timeout: float = 10.0,
    ) -> None:
        self.presign = presign
        self.parse = parse
        self.concurrency = concurrency
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        """Whether the key's parsed object is in the cache."""
        return key in self._cache

    def forget(self, key: str) -> None:
        """Drop a cached object (it changed or went away)."""
        self._cache.pop(key, None)

    def clear(self) -> None:
        """Drop every cached object (the next fetch of any key goes to S3: a cold feature cache)."""
        self._cache.clear()

    async def fetch_many(self, keys: list[str], arrived: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
        """Parsed objects by key; keys that do not exist (any more) are left out. arrived(key, object) is called as
        each one is at hand (cached ones first), so work on it can start before the others are in."""
        found: dict[str, Any] = {}
        missing = []
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
                if arrived is not None:
                    arrived(key, found[key])
            else:
                missing.append(key)
        if missing:
            semaphore = asyncio.Semaphore(self.concurrency)
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:

                async def one(key: str) -> tuple[str, Any]:
                    async with semaphore:
                        for attempt in range(FETCH_ATTEMPTS):
                            if attempt:
                                await asyncio.sleep(random.uniform(0, 0.1 * 2**attempt))
                            async with session.get(self.presign(key)) as response:
                                if response.status in (403, 404):  # missing key: 404, or 403 without ListBucket
                                    return key, None
                                if response.status in RETRYABLE and attempt + 1 < FETCH_ATTEMPTS:
                                    continue
                                response.raise_for_status()
                                parsed = self.parse(await response.read())
                                if arrived is not None:
                                    arrived(key, parsed)
                                return key, parsed
                    raise AssertionError("unreachable")

                try:
                    results = await asyncio.gather(*(one(k) for k in missing))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise UpstreamError(f"the index store could not be read ({type(exc).__name__})") from exc
                for key, value in results:
                    if value is not None:
                        found[key] = value
                        self._cache[key] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return found


def index_fetcher(presign: Callable[[str], str], parse: Callable[[bytes], Any], settings: Settings) -> ObjectFetcher:
    """A fetcher of index objects (presign: their links) with the settings' concurrency, cache size and timeout."""
    s = settings
    return ObjectFetcher(
        presign, parse, concurrency=s.fetch_concurrency, cache_size=s.feature_cache, timeout=s.url_timeout
    )
