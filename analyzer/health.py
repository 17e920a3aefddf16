"""The analyzer's health endpoint: liveness means the read loop keeps turning;
readiness also means it takes work (a drained analyzer is alive but not ready).

A small Starlette app served by uvicorn as a task in the worker's own event
loop. Its routes are listed in :func:`health_app`; another endpoint (such as
``/metrics``) is one more ``Route`` there.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable, Sequence

import msgspec
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shared.asgi import InLoopServer
from shared.settings import SettingsError

log = structlog.get_logger("analyzer")

STOP_TIMEOUT_S = 2
"""Longest wait for a probe still being answered when the analyzer stops."""


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /healthz`` and ``GET /readyz``."""

    status: str
    last_turn_s: float
    in_flight: int
    processed: int
    reclaimed: int
    draining: bool = False
    """Drained by an operator: alive and idle, taking no work until undrained."""
    reason: str | None = None
    """Why the probe answers 503; None when it answers 200."""


DRAINED_REASON = "drained by an operator (POST /api/admin/drain): taking no work until undrained"


class HealthBindError(SettingsError):
    """The health endpoint cannot listen where the settings say (port taken, bad host)."""


def _json(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def health_app(snapshot: Callable[[], Health], extra: Sequence[BaseRoute] = ()) -> Starlette:
    """``/healthz`` (200 alive, 503 stalled) and ``/readyz`` (also 503 while drained, so
    Kubernetes counts the pod as not ready), plus ``extra`` routes."""

    def answer(health: Health) -> Response:
        if health.status == "stalled":
            reason = f"the read loop has not turned for {health.last_turn_s} s"
            health = msgspec.structs.replace(health, reason=reason)
        return _json(msgspec.json.encode(health), 200 if health.status == "ok" else 503)

    async def live(request: Request) -> Response:
        return answer(snapshot())

    async def ready(request: Request) -> Response:
        health = snapshot()
        if health.status == "ok" and health.draining:
            health = msgspec.structs.replace(health, status="draining", reason=DRAINED_REASON)
        return answer(health)

    async def http_error(request: Request, exc: Exception) -> Response:
        # JSON like every other labelscan answer, not Starlette's plain-text default.
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        error = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
        return _json(msgspec.json.encode({"error": error}), status)

    routes: list[BaseRoute] = [
        Route("/healthz", live, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        *extra,
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or HealthBindError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise HealthBindError(
            f"ANALYZER_HEALTH_HOST={host!r} cannot be listened on: {exc}"
        ) from None
    try:
        # As uvicorn and asyncio do: a restart may bind over connections in TIME_WAIT,
        # but never over another process's listening socket.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise HealthBindError(
                f"ANALYZER_HEALTH_PORT={port} is already in use on {host} (another analyzer "
                "on this host?): give each analyzer its own port, or 0 for any free port"
            ) from None
        raise HealthBindError(
            f"ANALYZER_HEALTH_HOST={host!r} / ANALYZER_HEALTH_PORT={port} "
            f"cannot be listened on: {exc}"
        ) from None
    return sock


class HealthServer:
    """The health endpoint's socket and uvicorn server.

    :meth:`bind` early, so a taken port stops the analyzer before it loads
    anything; :meth:`start` once the worker can take work.
    """

    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], Health],
        extra: Sequence[BaseRoute] = (),
    ) -> None:
        self.host = host
        self.port = port
        """The configured port until :meth:`bind`, then the port actually bound."""
        self._app = health_app(snapshot, extra)
        self._sock: socket.socket | None = None
        self._server: InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        """Take the port now; raises HealthBindError naming the setting."""
        self._sock = bind(self.host, self.port)
        self.port = int(self._sock.getsockname()[1])

    async def start(self) -> None:
        """Serve until :meth:`stop`; logs the address (with the real port)."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=STOP_TIMEOUT_S,
        )
        self._server = InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped uvicorn
                raise RuntimeError("the health server stopped before it started")
            await asyncio.sleep(0.005)
        log.info("health endpoint listening", url=f"http://{self.host}:{self.port}", port=self.port)

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, STOP_TIMEOUT_S + 1)
        elif self._sock is not None:
            self._sock.close()  # bound but never served
        self._sock, self._server, self._task = None, None, None


def liveness(last_turn: float, timeout_s: float) -> tuple[str, float]:
    """("ok" or "stalled", seconds since the read loop last turned)."""
    age = time.monotonic() - last_turn
    return ("ok" if age <= timeout_s else "stalled"), round(age, 3)
