"""A lean SSE stream: one task per connection plus a disconnect watcher, nothing else.

A task group of several tasks per connection (what SSE libraries usually run)
would be most of the notifier's memory at 10,000 idle connections. Heartbeats
come from the hub (one timer for every connection), so an idle stream costs a
parked coroutine, an empty inbox and uvicorn's own per-connection state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from starlette.types import Receive, Scope, Send

from notifier import metrics
from notifier.events import retry_frame
from notifier.hub import Hub
from notifier.inbox import DISCONNECTED, Subscription

HEADERS = {
    # Browsers and proxies must neither cache nor buffer an event stream (nginx: X-Accel).
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
# Encoded once for every stream, not held by each of 10,000 idle streams.
_RAW_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    *((name.encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()),
)


class EventStream:
    """An ASGI app sending ``text/event-stream`` from an async generator of ready-made frames.

    Not a Starlette ``Response``: it has no body to render or headers to vary, and
    its endpoint (``notifier.app.StreamEndpoint``) awaits it like any ASGI app.
    """

    __slots__ = ("_chunks", "_hub", "_retry_ms", "_sub")

    def __init__(
        self, hub: Hub, sub: Subscription, chunks: AsyncGenerator[bytes, None], retry_ms: int
    ) -> None:
        self._hub = hub
        self._sub = sub
        self._chunks = chunks
        self._retry_ms = retry_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Write ``retry:``, then every chunk; unsubscribe however the stream ends."""
        sub = self._sub
        watcher: asyncio.Task[None] | None = None
        kind = metrics.stream_kind(sub.tenant)
        metrics.CONNECTIONS.labels(kind).inc()
        reason: str | None = (
            DISCONNECTED  # unless it runs to its end: a failed write is a gone client
        )
        try:
            # A fresh list: middleware (CORS) appends to the one it is sent.
            headers = list(_RAW_HEADERS)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            watcher = asyncio.get_running_loop().create_task(_watch(receive, sub))
            # retry: goes out at once, so a client told nothing else reconnects at our pace.
            await send(
                {
                    "type": "http.response.body",
                    "body": retry_frame(self._retry_ms),
                    "more_body": True,
                }
            )
            async with aclosing(self._chunks) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            reason = sub.reason
        finally:
            if watcher is not None:
                watcher.cancel()
            self._hub.unsubscribe(sub)
            metrics.CONNECTIONS.labels(kind).dec()
            metrics.ended(reason)


async def _watch(receive: Receive, sub: Subscription) -> None:
    # uvicorn answers receive() with http.disconnect once the socket closes; until then
    # this parks on one event, and the stream ends at once instead of at its next write.
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.end(DISCONNECTED)
