"""The SSRF-guarded image fetch against real local origins: refusals, redirects, caps, images."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from analyzer.fetch import ImageFetcher
from shared import netguard
from shared.errors import ImageUnavailableError, InvalidImageError
from shared.images import ImageTooLargeError
from shared.netguard import (
    UnsafeURLError,
    address_refusal,
    check_url,
    parse_allow_hosts,
)
from tests.support.images import label_png
from tests.support.servers import RunningServer, serve

PNG = label_png()
SECRET = label_png("internal secret")


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


async def image(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


async def octet(request: Request) -> Response:
    return Response(PNG, media_type="application/octet-stream")


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], status_code=302)


async def chain(request: Request) -> Response:
    left = int(request.path_params["n"])
    if left == 0:
        return Response(PNG, media_type="image/png")
    return RedirectResponse(f"/chain/{left - 1}", status_code=301)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=307)


async def huge(request: Request) -> Response:
    return Response(PNG + b"\0" * 200_000, media_type="image/png")


async def huge_chunked(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"\0" * 10_000

    return StreamingResponse(body(), media_type="image/png")


async def slow(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield PNG[:8]
        for _ in range(30):  # drips a byte every 0.1s: no single read ever times out
            await asyncio.sleep(0.1)
            yield b"\0"

    return StreamingResponse(body(), media_type="image/png")


async def text(request: Request) -> Response:
    return Response("<html>hello</html>", media_type="text/html")


async def not_image(request: Request) -> Response:
    return Response(b"<svg>not a raster image</svg>", media_type="image/svg+xml")


async def fake_gif(request: Request) -> Response:
    return Response(b"GIF89a but not really", media_type="image/gif")


async def truncated(request: Request) -> Response:
    return Response(PNG[: len(PNG) // 2], media_type="image/png")


async def bomb(request: Request) -> Response:
    return Response(png_header_only(50_000, 50_000), media_type="image/png")


async def large_canvas(request: Request) -> Response:
    return Response(png_header_only(8_000, 8_000), media_type="image/png")


async def status(request: Request) -> Response:
    return Response("no", status_code=int(request.path_params["code"]))


APP = Starlette(
    routes=[
        Route("/label.png", image),
        Route("/octet", octet),
        Route("/redirect", redirect),
        Route("/chain/{n:int}", chain),
        Route("/loop", loop),
        Route("/huge", huge),
        Route("/huge-chunked", huge_chunked),
        Route("/slow", slow),
        Route("/text", text),
        Route("/not-image", not_image),
        Route("/fake-gif", fake_gif),
        Route("/truncated", truncated),
        Route("/bomb", bomb),
        Route("/large-canvas", large_canvas),
        Route("/status/{code:int}", status),
    ]
)


async def secret(request: Request) -> Response:
    return Response(SECRET, media_type="image/png")


@pytest.fixture
async def origin() -> AsyncIterator[RunningServer]:
    """The allow-listed test origin."""
    async with serve(APP) as server:
        yield server


@pytest.fixture
async def internal() -> AsyncIterator[RunningServer]:
    """A second loopback service that is NOT allow-listed; it would answer with an image."""
    async with serve(Starlette(routes=[Route("/{path:path}", secret)])) as server:
        yield server


@pytest.fixture
async def fetcher(origin: RunningServer) -> AsyncIterator[ImageFetcher]:
    """A fetcher allowing only the test origin (and http, so address checks are what refuse)."""
    f = ImageFetcher(
        max_bytes=100_000,
        timeout_s=2.0,
        allow_http=True,
        allow_hosts=[f"127.0.0.1:{origin.port}"],
        max_redirects=3,
    )
    yield f
    await f.aclose()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record (and fail) any DNS lookup or TCP connect the guard would make."""
    calls: list[tuple[str, Any]] = []

    async def fake_connect(self: object, host: str, port: int, *args: object) -> object:
        calls.append(("connect", (host, port)))
        raise httpcore.ConnectError("network disabled in this test")

    async def fake_resolve(host: str, port: int) -> list[str]:
        calls.append(("resolve", (host, port)))
        raise OSError("network disabled in this test")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", fake_connect)
    monkeypatch.setattr(netguard, "resolve", fake_resolve)
    return calls


async def test_allow_listed_origin_returns_the_image(
    fetcher: ImageFetcher, origin: RunningServer
) -> None:
    """The allow-listed loopback origin is fetched, image bytes intact."""
    assert await fetcher.fetch(f"{origin.url}/label.png") == PNG
    assert await fetcher.fetch(f"{origin.url}/octet") == PNG


async def test_bare_host_entry_allows_any_port(origin: RunningServer) -> None:
    """An allow-list entry without a port matches every port of that host."""
    f = ImageFetcher(max_bytes=100_000, timeout_s=2.0, allow_hosts=["127.0.0.1"])
    try:
        assert await f.fetch(f"{origin.url}/label.png") == PNG
    finally:
        await f.aclose()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local address; refused"),
        ("http://127.0.0.1:{internal}/x", "loopback address; refused"),
        ("http://[::1]:{internal}/", "loopback address; refused"),
        ("http://[::ffff:127.0.0.1]:{internal}/", "IPv4-mapped loopback address; refused"),
        ("http://127.1:{internal}/", "loopback address; refused"),
        ("http://2130706433:{internal}/", "loopback address; refused"),
        ("http://10.0.0.1/", "private address; refused"),
        ("http://0.0.0.0:{internal}/", "unspecified address; refused"),
    ],
)
async def test_literal_internal_addresses_refused_without_network(
    fetcher: ImageFetcher,
    internal: RunningServer,
    no_network: list[tuple[str, Any]],
    url: str,
    reason: str,
) -> None:
    """Literal internal addresses fail permanently at the check: no DNS, no connect."""
    with pytest.raises(InvalidImageError, match=reason) as caught:
        await fetcher.fetch(url.format(internal=internal.port))
    assert str(caught.value).startswith("image_url host ")
    assert no_network == []


async def test_name_resolving_to_loopback_refused(
    fetcher: ImageFetcher, internal: RunningServer
) -> None:
    """localhost resolves to loopback: refused although the service there would answer."""
    with pytest.raises(InvalidImageError, match=r"host localhost resolves to a loopback address"):
        await fetcher.fetch(f"http://localhost:{internal.port}/x")


async def test_any_private_answer_refuses_the_name(
    fetcher: ImageFetcher, monkeypatch: pytest.MonkeyPatch, no_network: list[tuple[str, Any]]
) -> None:
    """A name with one public and one private address (rebinding setup) is refused outright."""

    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "192.168.1.10"]

    monkeypatch.setattr(netguard, "resolve", rebinding)
    with pytest.raises(InvalidImageError, match=r"private address \(192\.168\.1\.10\)"):
        await fetcher.fetch("https://images.example/label.png")
    assert no_network == []


async def test_connects_to_the_checked_address_not_the_name(
    fetcher: ImageFetcher, monkeypatch: pytest.MonkeyPatch, no_network: list[tuple[str, Any]]
) -> None:
    """After one lookup, the socket is opened to the validated IP; a second lookup never happens."""
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])

    async def flipping(host: str, port: int) -> list[str]:
        no_network.append(("resolve", (host, port)))
        return next(answers)

    monkeypatch.setattr(netguard, "resolve", flipping)
    with pytest.raises(ImageUnavailableError, match="unreachable"):
        await fetcher.fetch("https://images.example/label.png")
    assert no_network == [("resolve", ("images.example", 443)), ("connect", ("8.8.8.8", 443))]


async def test_http_refused_unless_allowed(no_network: list[tuple[str, Any]]) -> None:
    """Without allow_http, a plain-http URL to a non-allow-listed host is refused up front."""
    f = ImageFetcher(max_bytes=100_000, timeout_s=2.0)
    try:
        with pytest.raises(InvalidImageError, match="image_url must be an https URL"):
            await f.fetch("http://images.example/label.png")
    finally:
        await f.aclose()
    assert no_network == []


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{internal}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{internal}/secret",
        "http://localhost:{internal}/secret",
    ],
)
async def test_redirect_from_allowed_origin_to_internal_refused(
    fetcher: ImageFetcher, origin: RunningServer, internal: RunningServer, target: str
) -> None:
    """An allow-listed origin cannot bounce the fetch to another internal address."""
    to = target.format(internal=internal.port)
    with pytest.raises(InvalidImageError, match=r"address.*; refused \(after 1 redirect\)"):
        await fetcher.fetch(f"{origin.url}/redirect?to={to}")


async def test_redirect_to_http_refused_without_allow_http(
    origin: RunningServer, internal: RunningServer
) -> None:
    """The scheme rule applies to every hop."""
    f = ImageFetcher(max_bytes=100_000, timeout_s=2.0, allow_hosts=[f"127.0.0.1:{origin.port}"])
    try:
        with pytest.raises(InvalidImageError, match=r"must be an https URL \(after 1 redirect\)"):
            await f.fetch(f"{origin.url}/redirect?to=http://images.example/a.png")
    finally:
        await f.aclose()


async def test_redirects_followed_up_to_the_limit(
    fetcher: ImageFetcher, origin: RunningServer
) -> None:
    """Relative redirects within the limit are followed; one more, or a loop, is refused."""
    assert await fetcher.fetch(f"{origin.url}/chain/3") == PNG
    with pytest.raises(InvalidImageError, match="redirected more than 3 times"):
        await fetcher.fetch(f"{origin.url}/chain/4")
    with pytest.raises(InvalidImageError, match="redirected more than 3 times"):
        await fetcher.fetch(f"{origin.url}/loop")


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked"])
async def test_oversized_body_refused(
    fetcher: ImageFetcher, origin: RunningServer, path: str
) -> None:
    """Declared or streamed, a body past max_bytes is refused permanently."""
    with pytest.raises(InvalidImageError, match="larger than 100000 bytes"):
        await fetcher.fetch(f"{origin.url}{path}")


async def test_slow_drip_hits_the_overall_deadline(origin: RunningServer) -> None:
    """A body trickling in under every per-read timeout still stops at timeout_s."""
    f = ImageFetcher(max_bytes=100_000, timeout_s=0.5, allow_hosts=[f"127.0.0.1:{origin.port}"])
    started = time.monotonic()
    try:
        with pytest.raises(ImageUnavailableError, match=r"timed out after 0\.5s"):
            await f.fetch(f"{origin.url}/slow")
    finally:
        await f.aclose()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/text", InvalidImageError, "image_url is text/html, not an image"),
        ("/not-image", InvalidImageError, "not a PNG, JPEG, GIF or WebP image"),
        ("/fake-gif", InvalidImageError, "truncated or corrupt"),
        ("/truncated", InvalidImageError, "truncated or corrupt"),
        ("/bomb", ImageTooLargeError, "too large to decode safely"),
        ("/large-canvas", ImageTooLargeError, "8000x8000 pixels"),
        ("/status/404", InvalidImageError, "^image_url answered 404$"),
        ("/status/403", InvalidImageError, "^image_url answered 403$"),
        ("/status/503", ImageUnavailableError, "^image_url answered 503$"),
        ("/status/429", ImageUnavailableError, "^image_url answered 429$"),
    ],
)
async def test_bad_answers_classified(
    fetcher: ImageFetcher,
    origin: RunningServer,
    path: str,
    error: type[Exception],
    message: str,
) -> None:
    """Content is judged by its bytes; status codes keep their permanent/retryable split."""
    with pytest.raises(error, match=message):
        await fetcher.fetch(f"{origin.url}{path}")


async def test_closed_port_is_retryable(origin: RunningServer) -> None:
    """A connection refused by an allowed origin is transient."""
    f = ImageFetcher(max_bytes=100, timeout_s=2.0, allow_hosts=["127.0.0.1:1"])
    try:
        with pytest.raises(ImageUnavailableError, match="unreachable"):
            await f.fetch("http://127.0.0.1:1/x")
    finally:
        await f.aclose()


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "127.0.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "192.0.0.8",
        "::",
        "::1",
        "fe80::1",
        "fec0::1",
        "fc00::1",
        "fd12::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2001:db8::1",
        "3fff::1",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "100::1",
        "5f00::1",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    """Loopback, private, link-local, multicast, reserved and embedded forms are all refused."""
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4007:80e::200e",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    """Globally routable unicast addresses (and NAT64 of a public IPv4) pass."""
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("64:ff9b::7f00:1", "NAT64 loopback"),
        ("fc00::1", "private (unique-local)"),
        ("ff02::1", "multicast"),
    ],
)
def test_refusal_names_the_class(address: str, reason: str) -> None:
    """The reason is specific enough to act on."""
    assert address_refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.png", "must be an https URL"),
        ("http://example.com/a.png", "must be an https URL"),
        ("https://user:pw@example.com/a.png", "must not contain credentials"),
        ("https:///a.png", "has no host"),
        ("https://169.254.169.254/", "link-local"),
        ("https://[::1]/", "loopback"),
        ("https://0x7f.1/", "loopback"),
        ("https://example.com:0/", "invalid port"),
        ("not a url", "must be an https URL"),
    ],
)
def test_check_url_refuses(url: str, message: str) -> None:
    """The gateway's early check: scheme, credentials, empty host and literal addresses."""
    with pytest.raises(UnsafeURLError, match=message) as caught:
        check_url(url, allow_http=False, allow_hosts=frozenset())
    assert isinstance(caught.value, ValueError)


def test_check_url_accepts() -> None:
    """Names are not resolved at this stage; allow-listed origins may use http."""
    check_url("https://images.example/a.png", allow_http=False, allow_hosts=frozenset())
    check_url("http://images.example/a.png", allow_http=True, allow_hosts=frozenset())
    check_url(
        "http://127.0.0.1:8080/a.png", allow_http=False, allow_hosts=frozenset({"127.0.0.1:8080"})
    )
    check_url("http://[::1]:8080/a.png", allow_http=False, allow_hosts=frozenset({"[::1]:8080"}))
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url(
            "http://127.0.0.1:8081/a.png",
            allow_http=True,
            allow_hosts=frozenset({"127.0.0.1:8080"}),
        )


def test_parse_allow_hosts() -> None:
    """Entries are canonicalised; malformed ones are a ValueError (for the settings parser)."""
    assert parse_allow_hosts(["CDN.internal:8443", " 127.0.0.1 ", "[0::1]:80", ""]) == {
        ("cdn.internal", 8443),
        ("127.0.0.1", None),
        ("::1", 80),
    }
    for bad in ["host:port", "host:0", "http://host", "[::1]x"]:
        with pytest.raises(ValueError, match=r"invalid port|is not host"):
            parse_allow_hosts([bad])
