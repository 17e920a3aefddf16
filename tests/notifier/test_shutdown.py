"""Shutdown ends streams cleanly and at once, so clients resume on another replica."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from notifier.app import begin_shutdown
from shared.embedded import EmbeddedValkey, free_port
from shared.settings import Settings
from tests.notifier.conftest import Notifier
from tests.notifier.scans import Publisher
from tests.support.sse import EventStream, Message, open_stream

ROOT = Path(__file__).resolve().parents[2]


def assert_told_to_reconnect(rest: list[Message], retry_ms: int) -> None:
    """The stream's last words: a jittered ``retry:`` and ``event: reconnect`` without an id."""
    assert len(rest) == 1, rest
    told = rest[0]
    assert (told.event, told.id, told.data) == ("reconnect", None, '{"reason":"shutdown"}')
    assert told.retry is not None
    assert 0 < told.retry <= retry_ms


async def test_begin_shutdown_ends_open_streams_and_refuses_new_ones(
    notifier: Notifier, publisher: Publisher, settings: Settings
) -> None:
    """Open streams (a scan's, a tenant's) end with a reconnect frame; new ones get 503."""
    scan_id = await publisher.submit()
    async with (
        open_stream(notifier.client, scan_id) as stream,
        notifier.client.stream(
            "GET", "/api/events", params={"tenant": "default"}
        ) as tenant_response,
    ):
        tenant = EventStream(tenant_response)
        await stream.events(1)
        assert (await tenant.next_message()) is not None  # retry: — the stream is open
        started = time.perf_counter()
        begin_shutdown(notifier.app)
        assert_told_to_reconnect(await stream.rest(within=5), settings.sse_retry_ms)
        assert_told_to_reconnect(await tenant.rest(within=5), settings.sse_retry_ms)
        # Without the drain the stream would idle on until the client gives up; the bound
        # is loose on purpose (a busy CI machine), the point is "at once".
        assert time.perf_counter() - started < 5.0
    refused = await notifier.client.get(f"/api/scans/{scan_id}/events")
    assert refused.status_code == 503
    assert refused.json()["error"] == "unavailable"
    assert refused.headers["retry-after"] == "1"
    assert (await notifier.client.get("/readyz")).status_code == 503


async def test_python_m_notifier_serves_and_drains_on_sigterm(
    valkey: EmbeddedValkey, settings: Settings, publisher: Publisher
) -> None:
    """The real entry point: streams, and on SIGTERM ends open streams and exits quickly."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": valkey.url,
        "LABELSCAN_PREFIX": settings.prefix,
        "NOTIFIER_PORT": str(port),
        "LOG_JSON": "true",
        "LOG_LEVEL": "WARNING",
        "LABELSCAN_AUTH": "off",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            async with asyncio.timeout(15):
                while True:
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass  # not listening yet
                    await asyncio.sleep(0.05)
            scan_id = await publisher.submit()
            async with open_stream(client, scan_id) as stream:
                await stream.events(1)
                started = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                assert_told_to_reconnect(await stream.rest(within=8), settings.sse_retry_ms)
                # Well under uvicorn's 10 s graceful timeout: streams are ended, not waited for.
                assert time.perf_counter() - started < 8.0
        async with asyncio.timeout(10):
            code = await proc.wait()
        assert proc.stderr is not None
        stderr = (await proc.stderr.read()).decode()
        # uvicorn re-raises the captured SIGTERM once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM), stderr
        assert "Traceback" not in stderr, stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
