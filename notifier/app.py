"""The notifier: scan and tenant progress as Server-Sent Events, resumable by Last-Event-ID."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias, TypedDict

import msgspec
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from notifier.access import check_scan, check_tenant, require_keys
from notifier.batches import stream_batch
from notifier.events import reconnect_frame, retry_frame
from notifier.hub import Hub, StreamLimitError
from notifier.position import Position, parse_position
from notifier.sse import HEADERS, EventStream
from notifier.stream import (
    UNAVAILABLE,
    Source,
    has_events_after,
    is_finished,
    scan_state,
    scan_stream,
    tenant_stream,
)
from shared.connection import RedisClient, connect
from shared.cors import cors
from shared.http.clients import request_client
from shared.http.errors import (
    ApiError,
    error_response,
    exception_handlers,
    log_redis_down,
    not_found,
    unavailable,
)
from shared.http.responses import JSONResponse
from shared.keys import Keys
from shared.metrics import metrics_route
from shared.schemas import Tenant
from shared.settings import Settings
from shared.store import is_scan_id
from shared.streamids import parse_stream_id
from shared.webhooks.deliverer import Deliverer

REQUEST_POOL = 128  # a connect storm waits for a connection instead of failing
_REDIS_DOWN = "the event store is unreachable; retry shortly"


class State(TypedDict):
    """What the lifespan hands to every request."""

    hub: Hub
    redis: RedisClient
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


def begin_shutdown(app: Starlette) -> None:
    """Drain ``app``'s streams; called by the server as soon as it starts shutting down."""
    lifecycle: Lifecycle = app.state.lifecycle
    lifecycle.shutdown()


def _resume_point(request: Request) -> str | None:
    # The header wins: a browser's reconnect sends a newer id than the URL it was opened with.
    return (
        request.headers.get("last-event-id", "").strip()
        or (request.query_params.get("last_event_id", "").strip())
        or None
    )


def _bad_resume_point(example: str) -> ApiError:
    return ApiError(
        400,
        "bad_request",
        f"Last-Event-ID must be an event id like {example} (ASCII digits)",
        "Last-Event-ID",
    )


def _after(request: Request) -> str | None:
    """A scan stream's resume point: Last-Event-ID, else ?last_event_id=; 400 if malformed."""
    after = _resume_point(request)
    if after is not None and parse_stream_id(after) is None:
        raise _bad_resume_point("1700000000000-0")
    return after


def _after_position(request: Request, partitions: int) -> Position | None:
    """A tenant stream's resume point: one event id per partition; 400 if malformed."""
    after = _resume_point(request)
    if after is None:
        return None
    position = parse_position(after, partitions)
    if position is None:
        raise _bad_resume_point(",".join(["1700000000000-0"] * partitions))
    return position


def _come_back(request: Request, detail: str) -> Response:
    """Not now: EventSource gets a 200 that says reconnect (any non-200 would stop it)."""
    if "text/event-stream" in request.headers.get("accept", ""):
        settings: Settings = request.state.settings
        body = retry_frame(settings.sse_retry_ms) + reconnect_frame(UNAVAILABLE)
        return Response(body, media_type="text/event-stream", headers=HEADERS)
    return error_response(unavailable(detail))


Answer: TypeAlias = Response | EventStream


def _too_many(exc: StreamLimitError) -> ApiError:
    """The 429 for a tenant over SSE_MAX_STREAMS_PER_TENANT on this replica."""
    return ApiError(
        429,
        "too_many_streams",
        f"{exc}; close one first (SSE_MAX_STREAMS_PER_TENANT)",
        "token",
        headers={"retry-after": "5"},
    )


async def stream_scan(request: Request) -> Answer:
    """``GET /api/scans/{scan_id}/events``: history after Last-Event-ID, then live events."""
    scan_id: str = request.path_params["scan_id"]
    if not is_scan_id(scan_id):
        raise not_found()
    await check_scan(request.state.settings, request, scan_id, request.state.tenant_of)
    after = _after(request)
    src: Source = request.state.source
    if src.hub.draining:
        return _come_back(request, "shutting down; reconnect")
    state, has_history, owner = await scan_state(src.redis, src.keys, scan_id)
    if state is None and not has_history:
        raise not_found()
    if (
        is_finished(state)
        and after is not None
        and not await has_events_after(src.redis, src.keys, scan_id, after)
    ):
        # 204 tells EventSource to stop reconnecting: the client has seen the end.
        return Response(status_code=204)
    try:
        sub = src.hub.subscribe(scan_id, owner or "")
    except StreamLimitError as exc:
        raise _too_many(exc) from None
    return EventStream(src.hub, sub, scan_stream(src, sub, scan_id, after), src.retry_ms)


async def stream_tenant(request: Request) -> Answer:
    """``GET /api/events``: every scan of the caller's tenant, resumable like a scan's stream."""
    settings: Settings = request.state.settings
    granted = check_tenant(settings, request)
    asked = request.query_params.get("tenant")
    if granted is None:
        if not asked:
            raise ApiError(422, "invalid_field", "a tenant is required (?tenant=)", "tenant")
        try:
            tenant = msgspec.convert(asked, Tenant)
        except msgspec.ValidationError:
            raise ApiError(
                422, "invalid_field", "tenant must match [A-Za-z0-9_.-]{1,64}", "tenant"
            ) from None
    elif asked and asked != granted:
        raise ApiError(403, "forbidden", "the event token is for another tenant", "tenant")
    else:
        tenant = granted
    src: Source = request.state.source
    after = _after_position(request, src.hub.partitions)
    if src.hub.draining:
        return _come_back(request, "shutting down; reconnect")
    try:
        sub = src.hub.subscribe_tenant(tenant)
    except StreamLimitError as exc:
        raise _too_many(exc) from None
    return EventStream(src.hub, sub, tenant_stream(src, sub, tenant, after), src.retry_ms)


class StreamEndpoint:
    """A stream route's endpoint, as a plain ASGI app in the route table.

    Starlette wraps a function endpoint in two more layers (``request_response`` and
    its own exception wrapper) that every open stream would keep alive as frames for
    as long as it lasts; an ASGI endpoint adds one. Exceptions still reach the app's
    handlers: ExceptionMiddleware (ApiError, 404/405, Redis down) and
    ServerErrorMiddleware (anything else) sit above the router.
    """

    __slots__ = ("_open",)

    def __init__(self, open_stream: Callable[[Request], Awaitable[Answer]]) -> None:
        self._open = open_stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Open the stream (or refuse it), then send it."""
        answer = await self._open(Request(scope, receive))
        await answer(scope, receive, send)


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
    log_redis_down(request, exc)
    return _come_back(request, _REDIS_DOWN)


def create_app(
    settings: Settings, *, queue_size: int | None = None, heartbeat_s: float | None = None
) -> Starlette:
    """Build the notifier application for ``settings`` (SettingsError if misconfigured)."""
    require_keys(settings)
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = request_client(settings, waiting_pool=REQUEST_POOL)
        keys = Keys(settings.prefix, settings.partitions)
        # Each partition's reader holds a connection in XREAD BLOCK.
        reader = connect(settings, max_connections=len(keys.partitions) + 1)
        hub = Hub(
            reader,
            [part.events for part in keys.partitions],
            queue_size=queue_size or settings.sse_queue_size,
            heartbeat_s=heartbeat_s or settings.sse_heartbeat_s,
            max_per_tenant=settings.sse_max_streams_per_tenant,
        )
        lifecycle.hub = hub
        hub.start()
        source = Source(
            hub=hub,
            redis=redis,
            keys=keys,
            retry_ms=settings.sse_retry_ms,
            max_replay=settings.sse_max_replay,
        )

        # Webhook delivery is I/O fan-out like SSE: hosted here, never in an analyzer's slots.
        deliverer: Deliverer | None = None
        if settings.webhook_delivery:
            outbox_reader = connect(settings, max_connections=len(keys.partitions) + 1)
            deliverer = Deliverer(redis, outbox_reader, settings)
            await deliverer.start()

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
            if deliverer is not None:
                await deliverer.stop()
                await deliverer.reader.aclose()
            await hub.stop()
            await reader.aclose()
            await redis.aclose()

    routes = [
        Route("/api/scans/{scan_id}/events", StreamEndpoint(stream_scan), methods=["GET"]),
        Route("/api/events", StreamEndpoint(stream_tenant), methods=["GET"]),
        Route(
            "/api/batches/{batch_id}/events",
            StreamEndpoint(functools.partial(stream_batch, come_back=_come_back)),
            methods=["GET"],
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics:
        routes.append(metrics_route(settings))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[cors(settings)],
        exception_handlers=exception_handlers(_redis_down),
    )
    app.state.lifecycle = lifecycle
    return app
