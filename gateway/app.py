"""The gateway: accepts scans in milliseconds, answers status, result and stats."""

from __future__ import annotations

import hashlib
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
from shared.cors import cors
from shared.schemas import (
    CancelResult,
    ErrorBody,
    ScanAccepted,
    ScanJob,
    ScanState,
    ScanStatus,
)
from shared.settings import Settings
from shared.stats import queue_stats
from shared.store import ScanStore, is_stream_id, new_scan_id

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
    idempotency: tuple[str, str] | None = None
    key = request.headers.get("idempotency-key")
    if key is not None:
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return error(400, "bad_request", "Idempotency-Key must be 1-255 printable characters",
                         "idempotency-key")
        digest = hashlib.sha256(_encode(scan))
        digest.update(intake.image or b"")
        idempotency = (hashlib.sha256(key.encode()).hexdigest(), digest.hexdigest())
    scan_id = new_scan_id()
    job = ScanJob(
        scan_id=scan_id,
        category=scan.category,
        marketplaces=list(dict.fromkeys(scan.marketplaces)),
        product_name=scan.product_name,
        priority=scan.priority,
        tenant=scan.tenant,
        image_key=_store(request).keys.image(scan_id) if intake.image else None,
        image_url=scan.image_url,
        submitted_at_ms=now_ms(),
    )
    duplicate = await _store(request).submit(
        job, intake.image, idempotency=idempotency, due_ms=intake.due_ms
    )
    if duplicate is not None:
        if not duplicate.same_body:
            return error(422, "idempotency_conflict",
                         "this Idempotency-Key was used with a different request body",
                         "idempotency-key")
        return JSONResponse(_accepted(settings, duplicate.scan_id), status_code=200,
                            headers={"location": f"/api/scans/{duplicate.scan_id}"})
    state: ScanState = "scheduled" if intake.due_ms else "queued"
    return JSONResponse(_accepted(settings, scan_id, state), status_code=202,
                        headers={"location": f"/api/scans/{scan_id}"})


def _accepted(settings: Settings, scan_id: str, state: ScanState = "queued") -> ScanAccepted:
    return ScanAccepted(
        scan_id=scan_id,
        status=state,
        status_url=f"{settings.gateway_url}/api/scans/{scan_id}/status",
        events_url=f"{settings.notifier_url}/api/scans/{scan_id}/events",
    )


async def scan_status(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/status``."""
    detail = await _store(request).get(request.path_params["scan_id"])
    if detail is None:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    status = ScanStatus(
        scan_id=detail.scan_id, state=detail.state, progress=detail.progress,
        attempts=detail.attempts, created_at=detail.created_at, updated_at=detail.updated_at,
        next_attempt_at=detail.next_attempt_at,
    )
    return JSONResponse(status)


async def scan_detail(request: Request) -> Response:
    """``GET /api/scans/{scan_id}``: status plus result or error."""
    detail = await _store(request).get(request.path_params["scan_id"])
    if detail is None:
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    return JSONResponse(detail)


async def cancel_scan(request: Request) -> Response:
    """``DELETE /api/scans/{scan_id}``: cancel a scan that has not finished."""
    scan_id = request.path_params["scan_id"]
    outcome = await _store(request).cancel(scan_id)
    if outcome.outcome == "missing":
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    if outcome.outcome == "terminal":
        return error(409, "already_finished",
                     f"the scan is already {outcome.state}; nothing to cancel", "scan_id")
    return JSONResponse(CancelResult(
        scan_id=scan_id, state="cancelled", previous_state=outcome.state,  # type: ignore[arg-type]
    ))


async def retry_scan(request: Request) -> Response:
    """``POST /api/scans/{scan_id}/retry``: replay a failed scan with fresh attempts."""
    scan_id = request.path_params["scan_id"]
    outcome = await _store(request).requeue(scan_id)
    if outcome.outcome == "missing":
        return error(404, "not_found", "no such scan (or it has expired)", "scan_id")
    if outcome.outcome == "state":
        return error(409, "not_failed",
                     f"only failed scans can be retried; this one is {outcome.state}", "scan_id")
    return JSONResponse(_accepted(request.state.settings, scan_id), status_code=202)


async def dead_letters(request: Request) -> Response:
    """``GET /api/dead?count=&before=``: dead letters, newest first."""
    raw_count = request.query_params.get("count", "50")
    before = request.query_params.get("before")
    if not raw_count.isdigit() or not 1 <= int(raw_count) <= 500:
        return error(422, "invalid_field", "count must be an integer from 1 to 500", "count")
    if before is not None and not is_stream_id(before):
        return error(422, "invalid_field", "before must be a dead-letter id", "before")
    return JSONResponse(await _store(request).dead_letters(int(raw_count), before))


async def stats(request: Request) -> Response:
    """``GET /api/queue/stats``."""
    store = _store(request)
    return JSONResponse(await queue_stats(store.redis, store.keys, store.settings))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: Redis answers."""
    try:
        await _store(request).redis.ping()
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
        # Short socket timeout: a stalled Redis must become a quick 503, not a hung request.
        redis = connect(settings, socket_timeout=min(settings.redis_timeout_s, 1.0))
        try:
            yield {"store": ScanStore(redis, settings), "settings": settings}
        finally:
            await redis.aclose()

    routes = [
        Route("/api/scans", create_scan, methods=["POST"]),
        Route("/api/scans/{scan_id}/status", scan_status, methods=["GET"]),
        Route("/api/scans/{scan_id}", scan_detail, methods=["GET"]),
        Route("/api/scans/{scan_id}", cancel_scan, methods=["DELETE"]),
        Route("/api/scans/{scan_id}/retry", retry_scan, methods=["POST"]),
        Route("/api/dead", dead_letters, methods=["GET"]),
        Route("/api/queue/stats", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[cors(settings)],
        exception_handlers={
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
        },
    )
