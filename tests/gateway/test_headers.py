"""Request heads are bounded on both services: size and count (431), and time (408)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
from starlette.applications import Starlette

from gateway.app import create_app as create_gateway
from notifier.app import create_app as create_notifier
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.servers import RunningServer, serve

APPS: dict[str, Callable[[Settings], Starlette]] = {
    "gateway": create_gateway,
    "notifier": create_notifier,
}


@pytest.fixture(params=sorted(APPS))
async def server(
    request: pytest.FixtureRequest, make_settings: SettingsFactory
) -> AsyncIterator[RunningServer]:
    """The gateway or the notifier on uvicorn, with a short head timeout."""
    settings = make_settings(http_header_timeout_s=0.5)
    async with serve(APPS[request.param](settings), settings=settings) as running:
        yield running


async def exchange(port: int, head: bytes, *, then_wait: float = 5.0) -> bytes:
    """Send ``head`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(then_wait):
            return await reader.read(65536)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_ordinary_requests_pass_and_keep_alive(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(2):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 8000 + b"\r\n\r\n")
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
    writer.close()


async def test_head_over_the_byte_limit_is_431(server: RunningServer) -> None:
    answer = await exchange(server.port, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b'"error":"headers_too_large"' in answer


async def test_long_url_is_431(server: RunningServer) -> None:
    answer = await exchange(server.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


async def test_too_many_headers_is_431(server: RunningServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    answer = await exchange(server.port, head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b"more than 100 headers" in answer


async def test_slow_head_is_408(server: RunningServer) -> None:
    """A head still incomplete after HTTP_HEADER_TIMEOUT is answered 408 and closed."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    for _ in range(6):  # a byte every 50 ms, then silence: alive, never done
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        answer = await reader.read(65536)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert 0.5 <= time.monotonic() - started < 2


async def test_silent_connection_is_closed(server: RunningServer) -> None:
    answer = await exchange(server.port, b"")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
