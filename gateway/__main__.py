"""``python -m gateway``: serve the gateway with uvicorn."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.applications import Starlette

from gateway.app import begin_shutdown, create_app
from shared.http.server import server_config
from shared.service import boot, exit_on_config_error
from shared.tracing import setup_tracing, shutdown_tracing


class _Server(uvicorn.Server):
    """uvicorn, answering long-polls first and sending the last batched spans once requests
    have drained."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        begin_shutdown(self._app)
        await super().shutdown(sockets)
        # Here, not after run(): uvicorn re-raises SIGTERM once it has stopped, which
        # ends the process before any finally or atexit hook could flush.
        await asyncio.to_thread(shutdown_tracing)


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    settings, log = boot("gateway")
    log.info(
        "starting",
        url=settings.gateway_url,
        redis=settings.redis_url_for_logs,
        tracing=settings.tracing,
    )
    setup_tracing(settings, "gateway")
    with exit_on_config_error("gateway"):
        app = create_app(settings)
    config = server_config(
        app,
        settings,
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        timeout_graceful_shutdown=10,
    )
    _Server(config, app).run()


if __name__ == "__main__":
    main()
