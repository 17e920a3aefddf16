"""The notifier: a scan's progress as Server-Sent Events, resumable by Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypedDict

import anyio
import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifier.access import AccessDenied, check_scan, require_keys
from notifier.events import StreamEvent, parse_stream_id
from notifier.hub import Hub
from notifier.stream import has_events_after, is_finished, scan_events, scan_state
from shared.connection import connect
from shared.cors import cors
from shared.keys import Keys
from shared.schemas import ErrorBody
from shared.settings import Settings
from shared.store import is_scan_id

log = structlog.get_logger("notifier")
_encode = msgspec.json.Encoder().encode

SHUTDOWN_GRACE_S = 1.0  # below uvicorn's graceful timeout, so streams end before a hard cancel


class State(TypedDict):
    """What the lifespan hands to every request."""

    hub: Hub
    redis: Redis
    keys: Keys
    settings: Settings
    shutdown: anyio.Event
    tenant_of: Callable[[str], Awaitable[str | None]]


class Lifecycle:
    """The app's shutdown switch, reachable from the server before lifespan shutdown runs."""

    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.event: anyio.Event | None = None

    def shutdown(self) -> None:
        """End every open stream now and refuse new ones; clients resume by id elsewhere."""
        if self.event is not None:
            self.event.set()
        if self.hub is not None:
            self.hub.drain()


class JSONResponse(Response):
    """A response whose body msgspec encodes (structs, dicts, lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def error(status: int, error: str, detail: str, field: str | None = None) -> JSONResponse:
    """The JSON error body every non-2xx answer carries."""
    return JSONResponse(ErrorBody(error=error, detail=detail, field=field), status_code=status)


def begin_shutdown(app: Starlette) -> None:
    """Drain ``app``'s streams; called by the server as soon as it starts shutting down."""
    lifecycle: Lifecycle = app.state.lifecycle
    lifecycle.shutdown()


async def _messages(
    events: AsyncGenerator[StreamEvent, None], retry_ms: int
) -> AsyncGenerator[ServerSentEvent, None]:
    # retry: goes out at once, so a client told nothing else still reconnects at our pace.
    yield ServerSentEvent(retry=retry_ms)
    async with aclosing(events):
        async for event in events:
            yield ServerSentEvent(data=event.data, event=event.type, id=event.id)


async def stream_scan(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/events``: history after Last-Event-ID, then live events."""
    scan_id: str = request.path_params["scan_id"]
    if not is_scan_id(scan_id):
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    try:
        await check_scan(request.state.settings, request, scan_id, request.state.tenant_of)
    except AccessDenied as exc:
        return error(exc.status, exc.error, exc.detail, "token")
    # The header wins: a browser's reconnect sends a newer id than the URL it was opened with.
    after = request.headers.get("last-event-id", "").strip() or (
        request.query_params.get("last_event_id", "").strip()
    ) or None
    if after is not None and parse_stream_id(after) is None:
        return error(400, "bad_request", "Last-Event-ID must be an event id like "
                     "1700000000000-0", "Last-Event-ID")
    hub: Hub = request.state.hub
    if hub.draining:
        return _unavailable("shutting down; reconnect")
    redis: Redis = request.state.redis
    keys: Keys = request.state.keys
    state, has_history = await scan_state(redis, keys, scan_id)
    if state is None and not has_history:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    if is_finished(state) and after is not None and not await has_events_after(
        redis, keys, scan_id, after
    ):
        # 204 tells EventSource to stop reconnecting: the client has seen the end.
        return Response(status_code=204)
    settings: Settings = request.state.settings
    shutdown: anyio.Event = request.state.shutdown
    return EventSourceResponse(
        _messages(scan_events(hub, redis, keys, scan_id, after), settings.sse_retry_ms),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=settings.sse_heartbeat_s,
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Redis answers and the events reader is running."""
    hub: Hub = request.state.hub
    stats = hub.stats()
    body = {"subscribers": stats.subscribers, "scans": stats.scans, "overflows": stats.overflows}
    try:
        await request.state.redis.ping()
    except RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": str(exc), **body}, status_code=503)
    if not stats.connected or hub.draining:
        return JSONResponse({"status": "unavailable", **body}, status_code=503)
    return JSONResponse({"status": "ready", **body})


def _unavailable(detail: str) -> Response:
    response = error(503, "unavailable", detail)
    response.headers["retry-after"] = "1"
    return response


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", error=str(exc), path=request.url.path)
    return _unavailable("the event store is unreachable; retry shortly")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, name, str(exc.detail))


async def _drain_on(event: anyio.Event, lifecycle: Lifecycle) -> None:
    # sse-starlette may set the event itself when it notices the server exiting.
    await event.wait()
    lifecycle.shutdown()


def create_app(settings: Settings, *, queue_size: int | None = None) -> Starlette:
    """Build the notifier application for ``settings`` (SettingsError if misconfigured)."""
    require_keys(settings)
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = connect(settings)
        keys = Keys(settings.prefix)
        hub = Hub(redis, keys.events, queue_size=queue_size or settings.sse_queue_size)
        shutdown = anyio.Event()
        lifecycle.hub, lifecycle.event = hub, shutdown
        hub.start()
        watcher = asyncio.create_task(_drain_on(shutdown, lifecycle))

        async def tenant_of(scan_id: str) -> str | None:
            raw: Any = await redis.hget(keys.scan(scan_id), "tenant")
            return raw.decode() if raw else None

        try:
            yield {"hub": hub, "redis": redis, "keys": keys, "settings": settings,
                   "shutdown": shutdown, "tenant_of": tenant_of}
        finally:
            lifecycle.shutdown()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await hub.stop()
            await redis.aclose()

    routes = [
        Route("/api/scans/{scan_id}/events", stream_scan, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[cors(settings)],
        exception_handlers={
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
        },
    )
    app.state.lifecycle = lifecycle
    return app
