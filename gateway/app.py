"""The gateway: accepts scans in milliseconds, answers status, result and stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import msgspec
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.intake import RejectedError, read_scan
from shared.clock import now_ms
from shared.connection import connect
from shared.schemas import ErrorBody, ScanAccepted, ScanJob, ScanStatus
from shared.settings import Settings
from shared.store import ScanStore, new_scan_id

log = structlog.get_logger("gateway")
_encode = msgspec.json.Encoder().encode


class State(TypedDict):
    """What the lifespan hands to every request."""

    store: ScanStore
    settings: Settings


class JSONResponse(Response):
    """A response whose body msgspec encodes (structs, dicts, lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def error(status: int, error: str, detail: str, field: str | None = None) -> JSONResponse:
    """The JSON error body every non-2xx answer carries."""
    return JSONResponse(ErrorBody(error=error, detail=detail, field=field), status_code=status)


def _store(request: Request) -> ScanStore:
    store: ScanStore = request.state.store
    return store


async def create_scan(request: Request) -> Response:
    """``POST /api/scans``: validate, store, queue, answer 202."""
    settings: Settings = request.state.settings
    try:
        intake = await read_scan(request, settings)
    except RejectedError as exc:
        return error(exc.status, exc.error, exc.detail, exc.field)
    scan = intake.scan
    scan_id = new_scan_id()
    job = ScanJob(
        scan_id=scan_id,
        category=scan.category,
        marketplaces=list(dict.fromkeys(scan.marketplaces)),
        product_name=scan.product_name,
        priority=scan.priority,
        image_key=_store(request).keys.image(scan_id) if intake.image else None,
        image_url=scan.image_url,
        submitted_at_ms=now_ms(),
    )
    await _store(request).submit(job, intake.image)
    body = ScanAccepted(
        scan_id=scan_id,
        status="queued",
        status_url=f"{settings.gateway_url}/api/scans/{scan_id}/status",
        events_url=f"{settings.notifier_url}/api/scans/{scan_id}/events",
    )
    return JSONResponse(body, status_code=202, headers={"location": f"/api/scans/{scan_id}"})


async def scan_status(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/status``."""
    detail = await _store(request).get(request.path_params["scan_id"])
    if detail is None:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    status = ScanStatus(
        scan_id=detail.scan_id, state=detail.state, progress=detail.progress,
        attempts=detail.attempts, created_at=detail.created_at, updated_at=detail.updated_at,
    )
    return JSONResponse(status)


async def scan_detail(request: Request) -> Response:
    """``GET /api/scans/{scan_id}``: status plus result or error."""
    detail = await _store(request).get(request.path_params["scan_id"])
    if detail is None:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    return JSONResponse(detail)


async def queue_stats(request: Request) -> Response:
    """``GET /api/queue/stats``."""
    return JSONResponse(await _store(request).stats())


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Redis answers."""
    try:
        await _store(request).redis.ping()  # type: ignore[misc]
    except RedisError as exc:
        return JSONResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", error=str(exc), path=request.url.path)
    response = error(503, "unavailable", "the queue is unreachable; retry shortly")
    response.headers["retry-after"] = "1"
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, name, str(exc.detail))


def create_app(settings: Settings) -> Starlette:
    """Build the gateway application for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = connect(settings)
        try:
            yield {"store": ScanStore(redis, settings), "settings": settings}
        finally:
            await redis.aclose()

    routes = [
        Route("/api/scans", create_scan, methods=["POST"]),
        Route("/api/scans/{scan_id}/status", scan_status, methods=["GET"]),
        Route("/api/scans/{scan_id}", scan_detail, methods=["GET"]),
        Route("/api/queue/stats", queue_stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
        },
    )
