"""Every non-2xx answer of both services: ``ErrorBody`` JSON naming the error, reason and field.

Endpoints raise ``ApiError``; the handlers from ``exception_handlers`` turn it,
Starlette's own 404/405, an unreachable Redis (503 + Retry-After) and any
unexpected exception (500, still logged by the server) into that one shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shared.http.responses import JSONResponse
from shared.schemas import ErrorBody

log = structlog.get_logger("http")

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ApiError(Exception):
    """A request refused with a status, a machine-readable error and a reason."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def not_found(what: str = "scan") -> ApiError:
    """The 404 for an unknown (or someone else's) resource."""
    return ApiError(404, "not_found", f"no such {what} (or it has expired)", f"{what}_id")


def unavailable(detail: str) -> ApiError:
    """The 503 while Redis is unreachable: a client should come back in a second."""
    return ApiError(503, "unavailable", detail, headers={"retry-after": "1"})


def error_response(exc: ApiError) -> JSONResponse:
    """Render an ApiError."""
    body = ErrorBody(error=exc.error, detail=exc.detail, field=exc.field)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    """Exception handler for ApiError."""
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the same JSON shape (405 keeps its Allow header)."""
    assert isinstance(exc, HTTPException)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(
        ApiError(exc.status_code, name, str(exc.detail), headers=dict(exc.headers or {}))
    )


async def on_internal_error(request: Request, exc: Exception) -> Response:
    """A bug's 500 in the same JSON shape; Starlette re-raises it after, so the server logs it."""
    return error_response(ApiError(500, "internal_error", "an unexpected error; it was logged"))


def log_redis_down(request: Request, exc: Exception) -> None:
    """One warning per request refused because Redis is unreachable."""
    log.warning("redis unavailable", error=str(exc), path=request.url.path)


def redis_down(detail: str) -> Handler:
    """A handler answering 503 + Retry-After with ``detail`` while Redis is unreachable."""

    async def on_redis_down(request: Request, exc: Exception) -> Response:
        log_redis_down(request, exc)
        return error_response(unavailable(detail))

    return on_redis_down


def exception_handlers(on_redis_down: Handler) -> dict[Any, Handler]:
    """Starlette's ``exception_handlers`` for a service; ``on_redis_down`` from ``redis_down``."""
    return {
        Exception: on_internal_error,
        ApiError: on_api_error,
        HTTPException: on_http_error,
        RedisConnectionError: on_redis_down,
        RedisTimeoutError: on_redis_down,
    }
