"""The services wired together in the test's event loop, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from analyzer.backends import Backend
from analyzer.worker import Worker
from gateway.app import create_app as create_gateway
from notifier.app import create_app as create_notifier
from shared.schemas import TERMINAL_STATES
from shared.settings import Settings
from tests.support.servers import serve


class Stack:
    """A running gateway and analyzers for one test."""

    def __init__(self, gateway_url: str, notifier_url: str, workers: list[Worker]) -> None:
        self.gateway_url = gateway_url
        self.notifier_url = notifier_url
        self.workers = workers
        self.client = httpx.AsyncClient(base_url=gateway_url, timeout=10)
        self.events = httpx.AsyncClient(base_url=notifier_url, timeout=10)

    async def wait_terminal(self, scan_id: str, timeout: float = 20.0) -> dict[str, object]:
        """Poll the scan until it ends; return its detail JSON."""
        async with asyncio.timeout(timeout):
            while True:
                response = await self.client.get(f"/api/scans/{scan_id}")
                body: dict[str, object] = response.json()
                if body.get("state") in TERMINAL_STATES:
                    return body
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def worker_task(settings: Settings, backend: Backend | None = None) -> AsyncIterator[Worker]:
    """An analyzer Worker running as a task until the block exits (then drained)."""
    async with Worker(settings, backend=backend) as worker:
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, analyzers: int = 1, backend: Backend | None = None
) -> AsyncIterator[Stack]:
    """Gateway and notifier on uvicorn plus ``analyzers`` workers, all against ``settings``."""
    async with contextlib.AsyncExitStack() as stack:
        gateway = await stack.enter_async_context(serve(create_gateway(settings)))
        notifier = await stack.enter_async_context(serve(create_notifier(settings)))
        workers = [
            await stack.enter_async_context(worker_task(settings, backend))
            for _ in range(analyzers)
        ]
        running = Stack(gateway.url, notifier.url, workers)
        stack.push_async_callback(running.client.aclose)
        stack.push_async_callback(running.events.aclose)
        yield running
