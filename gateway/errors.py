"""Every non-2xx answer: a JSON body naming the error, the reason and the field."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from shared.schemas import ErrorBody

log = structlog.get_logger("gateway")
_encode = msgspec.json.Encoder().encode


class JSONResponse(Response):
    """A response whose body msgspec encodes (structs, dicts, lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode with msgspec."""
        return _encode(content)


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


def error_response(exc: ApiError) -> JSONResponse:
    """Render an ApiError."""
    body = ErrorBody(error=exc.error, detail=exc.detail, field=exc.field)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    """Exception handler for ApiError."""
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_redis_down(request: Request, exc: Exception) -> Response:
    """A quick 503 with Retry-After while Redis is unreachable."""
    log.warning("redis unavailable", error=str(exc), path=request.url.path)
    return error_response(
        ApiError(
            503,
            "unavailable",
            "the queue is unreachable; retry shortly",
            headers={"retry-after": "1"},
        )
    )


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(
        ApiError(exc.status_code, name, str(exc.detail), headers=dict(exc.headers or {}))
    )
