"""``python -m notifier``: serve the notifier with uvicorn."""

from __future__ import annotations

import asyncio
import resource
import socket

import uvicorn
from starlette.applications import Starlette

from notifier.app import begin_shutdown, create_app
from notifier.gcpolicy import manage_gc, watch_gc
from shared.http.server import server_config
from shared.service import boot, exit_on_config_error


class _Server(uvicorn.Server):
    """uvicorn, ending SSE streams first: it waits for open connections before lifespan exit."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app
        self._gc: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Process-wide, hence here and not in create_app (tests run apps in-process).
        self._gc = asyncio.get_running_loop().create_task(manage_gc(), name="notifier-gc")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        begin_shutdown(self._app)
        if self._gc is not None:
            self._gc.cancel()
        await super().shutdown(sockets)


def raise_open_files() -> int:
    """Lift the soft open-file limit to the hard one; returns the limit now in force.

    Every SSE connection holds a descriptor, and the usual soft default (1,024)
    would refuse connections long before memory or CPU run out.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def main() -> None:
    """Run the notifier until SIGINT/SIGTERM."""
    settings, log = boot("notifier")
    log.info(
        "starting",
        url=settings.notifier_url,
        redis=settings.redis_url_for_logs,
        open_files=raise_open_files(),
    )
    watch_gc()
    with exit_on_config_error("notifier"):
        app = create_app(settings)
    config = server_config(
        app,
        settings,
        host=settings.notifier_host,
        port=settings.notifier_port,
        loop="uvloop",
        timeout_graceful_shutdown=10,
    )
    _Server(config, app).run()


if __name__ == "__main__":
    main()
