"""The notifier: scan and tenant progress as Server-Sent Events, resumable by Last-Event-ID."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import msgspec
import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from notifier.access import AccessDenied, check_scan, check_tenant, require_keys
from notifier.events import parse_stream_id, reconnect_frame, retry_frame
from notifier.hub import Hub
from notifier.sse import HEADERS, EventStreamResponse
from notifier.stream import (
    UNAVAILABLE,
    Source,
    has_events_after,
    is_finished,
    scan_state,
    scan_stream,
    tenant_stream,
)
from shared.connection import connect
from shared.cors import cors
from shared.keys import Keys
from shared.schemas import ErrorBody, Tenant
from shared.settings import Settings
from shared.store import is_scan_id

log = structlog.get_logger("notifier")
_encode = msgspec.json.Encoder().encode

REQUEST_POOL = 128  # a connect storm waits for a connection instead of failing


class State(TypedDict):
    """What the lifespan hands to every request."""

    hub: Hub
    redis: Redis
    source: Source
    settings: Settings
    tenant_of: Callable[[str], Awaitable[str | None]]


class Lifecycle:
    """The app's shutdown switch, reachable from the server before lifespan shutdown runs."""

    def __init__(self) -> None:
        self.hub: Hub | None = None

    def shutdown(self) -> None:
        """End every open stream now and refuse new ones; clients resume by id elsewhere."""
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


def _after(request: Request) -> str | Response | None:
    """The resume point: Last-Event-ID, else ?last_event_id=; a 400 response if malformed."""
    # The header wins: a browser's reconnect sends a newer id than the URL it was opened with.
    after = (
        request.headers.get("last-event-id", "").strip()
        or (request.query_params.get("last_event_id", "").strip())
        or None
    )
    if after is not None and parse_stream_id(after) is None:
        return error(
            400,
            "bad_request",
            "Last-Event-ID must be an event id like 1700000000000-0",
            "Last-Event-ID",
        )
    return after


def _come_back(request: Request, detail: str) -> Response:
    """Not now: EventSource gets a 200 that says reconnect (any non-200 would stop it)."""
    if "text/event-stream" in request.headers.get("accept", ""):
        settings: Settings = request.state.settings
        body = retry_frame(settings.sse_retry_ms) + reconnect_frame(UNAVAILABLE)
        return Response(body, media_type="text/event-stream", headers=HEADERS)
    response = error(503, "unavailable", detail)
    response.headers["retry-after"] = "1"
    return response


async def stream_scan(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/events``: history after Last-Event-ID, then live events."""
    scan_id: str = request.path_params["scan_id"]
    if not is_scan_id(scan_id):
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    try:
        await check_scan(request.state.settings, request, scan_id, request.state.tenant_of)
    except AccessDenied as exc:
        return error(exc.status, exc.error, exc.detail, "token")
    after = _after(request)
    if isinstance(after, Response):
        return after
    src: Source = request.state.source
    if src.hub.draining:
        return _come_back(request, "shutting down; reconnect")
    state, has_history = await scan_state(src.redis, src.keys, scan_id)
    if state is None and not has_history:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    if (
        is_finished(state)
        and after is not None
        and not await has_events_after(src.redis, src.keys, scan_id, after)
    ):
        # 204 tells EventSource to stop reconnecting: the client has seen the end.
        return Response(status_code=204)
    sub = src.hub.subscribe(scan_id)
    return EventStreamResponse(src.hub, sub, scan_stream(src, sub, scan_id, after), src.retry_ms)


async def stream_tenant(request: Request) -> Response:
    """``GET /api/events``: every scan of the caller's tenant, resumable like a scan's stream."""
    settings: Settings = request.state.settings
    try:
        granted = check_tenant(settings, request)
    except AccessDenied as exc:
        return error(exc.status, exc.error, exc.detail, "token")
    asked = request.query_params.get("tenant")
    if granted is None:
        if not asked:
            return error(422, "invalid_field", "a tenant is required (?tenant=)", "tenant")
        try:
            tenant = msgspec.convert(asked, Tenant)
        except msgspec.ValidationError:
            return error(422, "invalid_field", "tenant must match [A-Za-z0-9_.-]{1,64}", "tenant")
    elif asked and asked != granted:
        return error(403, "forbidden", "the event token is for another tenant", "tenant")
    else:
        tenant = granted
    after = _after(request)
    if isinstance(after, Response):
        return after
    src: Source = request.state.source
    if src.hub.draining:
        return _come_back(request, "shutting down; reconnect")
    sub = src.hub.subscribe_tenant(tenant)
    return EventStreamResponse(src.hub, sub, tenant_stream(src, sub, tenant, after), src.retry_ms)


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


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", error=str(exc), path=request.url.path)
    return _come_back(request, "the event store is unreachable; retry shortly")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, name, str(exc.detail))


async def _request_client(settings: Settings) -> Redis:
    """The shared client's settings, on a pool that waits when all connections are busy."""
    probe = connect(settings)
    pool = BlockingConnectionPool(
        connection_class=probe.connection_pool.connection_class,
        max_connections=REQUEST_POOL,
        timeout=settings.redis_timeout_s,
        **probe.connection_pool.connection_kwargs,
    )
    await probe.aclose()
    return Redis.from_pool(pool)


Endpoint = Callable[[Request], Awaitable[Response]]
_SCAN_EVENTS = re.compile(r"/api/scans/([^/]+)/events")


def _stream_route(path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The stream endpoint ``path`` names, with its path parameters; None for any other path."""
    if path == "/api/events":
        return stream_tenant, {}
    match = _SCAN_EVENTS.fullmatch(path)
    if match is not None:
        return stream_scan, {"scan_id": match[1]}
    return None


async def _serve_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """One stream request, with the Redis error handling the middleware stack would give it."""
    route = _stream_route(scope["path"])
    assert route is not None, "only stream paths are dispatched here"
    endpoint, scope["path_params"] = route
    request = Request(scope, receive)
    try:
        response = await endpoint(request)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        response = await _redis_down(request, exc)
    await response(scope, receive, send)


class NotifierApp(Starlette):
    """Starlette, with ``GET`` of the two stream routes dispatched ahead of its stack.

    An open stream keeps alive every frame it was called through for as long as
    it lasts: through Starlette's stack (error middleware, CORS, exception
    middleware, router, route wrappers) an idle stream held ~21 KiB, without it
    ~16 KiB (bench/sse.py, 10,000 connections). Streams get CORS and the Redis
    error answer directly instead; every other request (preflights, 405s,
    health) takes the full stack.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(middleware=[cors(settings)], **kwargs)
        cls, args, options = cors(settings)
        self._streams: ASGIApp = cls(_serve_stream, *args, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Streams straight to their endpoint; the rest through Starlette."""
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and _stream_route(scope["path"]) is not None
        ):
            scope["app"] = self
            await self._streams(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, *, queue_size: int | None = None, heartbeat_s: float | None = None
) -> Starlette:
    """Build the notifier application for ``settings`` (SettingsError if misconfigured)."""
    require_keys(settings)
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = await _request_client(settings)
        reader = connect(settings, max_connections=2)  # its XREAD BLOCK holds a connection
        keys = Keys(settings.prefix)
        hub = Hub(
            reader,
            keys.events,
            queue_size=queue_size or settings.sse_queue_size,
            heartbeat_s=heartbeat_s or settings.sse_heartbeat_s,
        )
        lifecycle.hub = hub
        hub.start()
        source = Source(hub=hub, redis=redis, keys=keys, retry_ms=settings.sse_retry_ms)

        async def tenant_of(scan_id: str) -> str | None:
            raw: Any = await redis.hget(keys.scan(scan_id), "tenant")
            return raw.decode() if raw else None

        try:
            yield {
                "hub": hub,
                "redis": redis,
                "source": source,
                "settings": settings,
                "tenant_of": tenant_of,
            }
        finally:
            lifecycle.shutdown()
            await hub.stop()
            await reader.aclose()
            await redis.aclose()

    routes = [
        Route("/api/scans/{scan_id}/events", stream_scan, methods=["GET"]),
        Route("/api/events", stream_tenant, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    app = NotifierApp(
        settings,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
        },
    )
    app.state.lifecycle = lifecycle
    return app
