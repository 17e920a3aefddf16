"""The gateway: accepts scans in milliseconds, answers status, result and stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import msgspec
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import admin, batches, callbacks, dashboard, listing, scans, seller, webhooks
from gateway.auth import Guard
from gateway.batchintake import InvalidBatchError
from gateway.metrics import count_rejection
from gateway.openapi import openapi_endpoint
from gateway.waiters import ScanWaiters
from shared.batchstore import BatchStore
from shared.connection import connect
from shared.controls import ControlStore
from shared.cors import cors
from shared.http.clients import request_client
from shared.http.errors import exception_handlers, redis_down
from shared.http.responses import JSONResponse
from shared.metrics import RequestTimer, metrics_route
from shared.queuemetrics import QueueGauges
from shared.settings import Settings
from shared.stats import consumer_names, queue_stats
from shared.store import ScanStore


class State(TypedDict):
    """What the lifespan hands to every request."""

    store: ScanStore
    settings: Settings
    guard: Guard
    controls: ControlStore
    waiters: ScanWaiters
    batches: BatchStore
    webhooks: webhooks.Webhooks


async def stats(request: Request) -> Response:
    """``GET /api/queue/stats``: queue depth for everyone; per-tenant detail for its owner."""
    guard: Guard = request.state.guard
    caller = await guard.caller(request)
    store: ScanStore = request.state.store
    limits = (await store.controls.current()).limits
    result = await queue_stats(store.redis, store.keys, store.settings, limits)
    if caller.scope is not None:
        mine = {caller.scope: result.active_by_tenant.get(caller.scope, 0)}
        result = msgspec.structs.replace(result, active_by_tenant=mine)
    else:
        names = await consumer_names(store.redis, store.keys)
        result = msgspec.structs.replace(result, consumer_names=names)
    return JSONResponse(result)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Redis answers."""
    store: ScanStore = request.state.store
    try:
        await store.redis.ping()
    except RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings) -> Starlette:
    """Build the gateway application for ``settings`` (SettingsError if auth is misconfigured)."""
    # Short socket timeout: a stalled Redis must become a quick 503, not a hung request.
    redis = request_client(settings, socket_timeout=min(settings.redis_timeout_s, 1.0))
    store = ScanStore(redis, settings)
    guard = Guard(settings, store.run, store.keys, store.controls)
    control_store = ControlStore(redis, store.keys, settings)
    # Long-polls wait on one events reader per process, on its own connections (their
    # XREAD BLOCK outlasts the request client's short timeout); none open until one waits.
    reader = connect(settings, max_connections=len(store.keys.partitions) + 1)
    waiters = ScanWaiters(
        reader, [part.events for part in store.keys.partitions], limit=settings.scan_wait_max
    )
    batch_store = BatchStore(redis, settings)
    hooks = webhooks.Webhooks(redis, store.keys, settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        try:
            yield {
                "store": store,
                "settings": settings,
                "guard": guard,
                "controls": control_store,
                "waiters": waiters,
                "batches": batch_store,
                "webhooks": hooks,
            }
        finally:
            await waiters.stop()
            await reader.aclose()
            await redis.aclose()

    routes = [
        # GET lists, POST submits: one route, so that a 405 there lists both in Allow.
        Route("/api/scans", listing.scans_root, methods=["GET", "POST"]),
        Route("/api/scans/{scan_id}/status", scans.scan_status, methods=["GET"]),
        Route("/api/scans/{scan_id}/events-url", scans.events_link, methods=["GET"]),
        # One route for both methods, so that a 405 there lists both in Allow.
        Route("/api/scans/{scan_id}", scans.scan_item, methods=["GET", "DELETE"]),
        Route("/api/scans/{scan_id}/retry", scans.retry_scan, methods=["POST"]),
        Route("/api/events-url", scans.tenant_events_link, methods=["GET"]),
        Route("/api/batches", batches.create_batch, methods=["POST"]),
        Route("/api/batches/{batch_id}", batches.batch_item, methods=["GET", "DELETE"]),
        Route("/api/batches/{batch_id}/retry", batches.retry_batch, methods=["POST"]),
        Route("/api/dead", scans.dead_letters, methods=["GET"]),
        Route("/api/queue/stats", stats, methods=["GET"]),
        Route("/api/admin/pause", admin.pause, methods=["POST"]),
        Route("/api/admin/resume", admin.resume, methods=["POST"]),
        Route("/api/admin/controls", admin.controls_view, methods=["GET"]),
        Route("/api/admin/limits", admin.limits, methods=["GET", "PATCH"]),
        Route("/api/admin/audit", admin.audit, methods=["GET"]),
        Route("/api/admin/dead/retry", admin.retry_dead, methods=["POST"]),
        Route("/api/admin/dead/purge", admin.purge_dead, methods=["POST"]),
        Route("/api/admin/cancel-queued", admin.cancel_queued, methods=["POST"]),
        Route("/api/admin/drain", admin.drain, methods=["POST"]),
        Route("/api/webhooks", webhooks.endpoints_root, methods=["GET", "POST"]),
        Route(
            "/api/webhooks/{endpoint_id}",
            webhooks.endpoint_item,
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route(
            "/api/webhooks/{endpoint_id}/rotate-secret", webhooks.rotate_secret, methods=["POST"]
        ),
        Route("/api/webhooks/{endpoint_id}/deliveries", webhooks.deliveries, methods=["GET"]),
        Route(
            "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
            webhooks.redeliver,
            methods=["POST"],
        ),
        Route("/api/scans/{scan_id}/callback/deliveries", callbacks.deliveries, methods=["GET"]),
        Route(
            "/api/scans/{scan_id}/callback/deliveries/{delivery_id}/redeliver",
            callbacks.redeliver,
            methods=["POST"],
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    middleware = [dashboard.middleware(settings), cors(settings)]
    # The seller page at `/`: like the dashboard, a page ahead of the router, not an API route.
    middleware.insert(1, seller.middleware(settings))
    if settings.metrics:
        queue = QueueGauges(redis, store.keys, settings.metrics_queue_cache_s)
        routes.append(metrics_route(settings, queue.refresh))
        # Outermost, so that the time includes every other layer.
        middleware.insert(0, Middleware(RequestTimer, on_answer=count_rejection))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # The dashboard's page and files answer ahead of the router, which holds the API only.
        middleware=middleware,
        exception_handlers={
            **exception_handlers(redis_down("the queue is unreachable; retry shortly")),
            InvalidBatchError: batches.on_invalid_batch,
        },
    )
    # Starlette would answer "/api/scans/" with a bodiless 307 to "/api/scans": no answer the
    # OpenAPI document lists, and no ErrorBody. A path with a stray slash is an unknown path.
    app.router.redirect_slashes = False
    app.state.waiters = waiters
    return app


def begin_shutdown(app: Starlette) -> None:
    """Answer every long-poll now; called by the server as soon as it starts shutting down
    (it waits for open requests before the lifespan ends, and a wait may last a minute)."""
    waiters: ScanWaiters = app.state.waiters
    waiters.drain()
