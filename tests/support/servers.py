"""Run real uvicorn servers inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from shared.asgi import InLoopServer
from shared.embedded import free_port
from shared.http.server import server_config
from shared.settings import Settings


class RunningServer:
    """A uvicorn server serving an app on loopback."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self.server = server
        self.task = task
        self.port = port

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Ask the server to exit and wait for it."""
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, port: int | None = None, settings: Settings | None = None
) -> AsyncIterator[RunningServer]:
    """Serve ``app`` as the services do (httptools, head limits) until the block exits."""
    port = port or free_port()
    config = server_config(
        app,
        settings or Settings(),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    # The test run owns SIGINT/SIGTERM (Ctrl-C must reach pytest), not the servers it starts.
    server = InLoopServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before starting")
        await asyncio.sleep(0.01)
    running = RunningServer(server, task, port)
    try:
        yield running
    finally:
        await running.stop()
