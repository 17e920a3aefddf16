"""``python -m notifier``: serve the notifier with uvicorn."""

from __future__ import annotations

import socket
import sys

import uvicorn
from starlette.applications import Starlette

from notifier.app import begin_shutdown, create_app
from shared.service import boot
from shared.settings import SettingsError


class _Server(uvicorn.Server):
    """uvicorn, ending SSE streams first: it waits for open connections before lifespan exit."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        begin_shutdown(self._app)
        await super().shutdown(sockets)


def main() -> None:
    """Run the notifier until SIGINT/SIGTERM."""
    settings, log = boot("notifier")
    log.info("starting", url=settings.notifier_url, redis=settings.redis_url)
    try:
        app = create_app(settings)
    except SettingsError as exc:
        print(f"notifier: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    config = uvicorn.Config(
        app,
        host=settings.notifier_host,
        port=settings.notifier_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    _Server(config, app).run()


if __name__ == "__main__":
    main()
