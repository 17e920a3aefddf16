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
from tests.support.sse import open_stream

ROOT = Path(__file__).resolve().parents[2]


async def test_begin_shutdown_ends_open_streams_and_refuses_new_ones(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Open streams end with a proper end of body; new ones get 503; readiness fails."""
    scan_id = await publisher.submit()
    async with open_stream(notifier.client, scan_id) as stream:
        await stream.events(1)
        started = time.perf_counter()
        begin_shutdown(notifier.app)
        assert await stream.rest(within=2) == []
        assert time.perf_counter() - started < 1.0
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
        **os.environ, "REDIS_URL": valkey.url, "LABELSCAN_PREFIX": settings.prefix,
        "NOTIFIER_PORT": str(port), "LOG_JSON": "true", "LOG_LEVEL": "WARNING",
        "LABELSCAN_AUTH": "off",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "notifier", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
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
                assert await stream.rest(within=5) == []
                assert time.perf_counter() - started < 2.0
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
