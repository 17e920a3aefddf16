"""Prometheus metrics shared by the services: the ``/metrics`` route and request timing.

Every metric lives in prometheus-client's default registry, defined at import
time by the module that updates it (``gateway.metrics``, ``analyzer.metrics``,
``notifier.metrics``, ``shared.queuemetrics``); ``/metrics`` renders that registry,
so each process exposes what it imported plus the client's process collectors.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

HTTP_DURATION = Histogram(
    "labelscan_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

FINISHED = Counter(
    "labelscan_scans_finished_total",
    "Scans that reached an outcome: completed, failed, cancelled or dead_lettered. The "
    "analyzers count all but cancellations, which the gateway counts (backend none).",
    ["outcome", "backend", "tenant"],
)

UNMATCHED = "unmatched"
"""The route label of a request no route matched (404s, the dashboard's files)."""


def tenant_label(settings: Settings, tenant: str) -> str:
    """``tenant`` when METRICS_TENANT_LABELS is on, else "" (Prometheus drops empty labels)."""
    return tenant if settings.metrics_tenant_labels else ""


def finished(settings: Settings, outcome: str, backend: str, tenant: str) -> None:
    """Count one scan's outcome."""
    FINISHED.labels(outcome, backend, tenant_label(settings, tenant)).inc()


def _unauthorized() -> Response:
    body = msgspec.json.encode({"error": "unauthorized", "detail": "METRICS_TOKEN required"})
    return Response(
        body,
        status_code=401,
        media_type="application/json",
        headers={"www-authenticate": 'Bearer realm="metrics"'},
    )


def metrics_route(
    settings: Settings, refresh: Callable[[], Awaitable[None]] | None = None
) -> Route:
    """``GET /metrics``: the registry in Prometheus text format.

    Not behind the API keys (scrapers hold none); behind ``METRICS_TOKEN`` as a
    bearer token when it is set. ``refresh`` runs first, to update gauges read
    from elsewhere (the queue state in Redis).
    """
    expected = (
        f"Bearer {settings.metrics_token.value}".encode()
        if settings.metrics_token is not None
        else None
    )

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _unauthorized()
        if refresh is not None:
            await refresh()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", endpoint, methods=["GET"])


class RequestTimer:
    """ASGI middleware observing ``labelscan_http_request_duration_seconds``.

    The route label is the matched route's template (``/api/scans/{scan_id}``),
    which the router leaves in the scope: never a raw path, so the number of
    series stays bounded whatever clients ask for.
    """

    def __init__(
        self, app: ASGIApp, on_answer: Callable[[str, str, int], None] | None = None
    ) -> None:
        self.app = app
        self.on_answer = on_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request from its start to its last byte."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_DURATION.labels(template, method, str(status)).observe(
                time.perf_counter() - started
            )
            if self.on_answer is not None:
                self.on_answer(template, method, status)
