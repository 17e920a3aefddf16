"""Fixtures: a real notifier on uvicorn and a publisher writing events through ScanStore."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from notifier.app import create_app
from notifier.hub import QUEUE_SIZE, Hub
from shared.settings import Settings
from tests.notifier.scans import Publisher
from tests.support.servers import RunningServer, serve


@dataclass
class Notifier:
    """A running notifier and a client for it."""

    app: Starlette
    server: RunningServer
    client: httpx.AsyncClient

    @property
    def hub(self) -> Hub:
        """The app's hub (tests peek at its stats)."""
        hub: Hub | None = self.app.state.lifecycle.hub
        assert hub is not None
        return hub


@contextlib.asynccontextmanager
async def running_notifier(
    settings: Settings, *, queue_size: int = QUEUE_SIZE
) -> AsyncIterator[Notifier]:
    """Serve a notifier for ``settings`` until the block exits."""
    app = create_app(settings, queue_size=queue_size)
    async with serve(app) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield Notifier(app, server, client)


@pytest.fixture
async def notifier(settings: Settings) -> AsyncIterator[Notifier]:
    """A notifier with default settings for this test's prefix."""
    async with running_notifier(settings) as running:
        yield running


@pytest.fixture
async def publisher(redis: Redis, settings: Settings) -> Publisher:
    """Writes events the way the gateway and analyzers do."""
    pub = Publisher(redis, settings)
    await pub.setup()
    return pub
