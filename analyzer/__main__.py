"""``python -m analyzer``: one consumer of the ``analyzers`` group."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from analyzer.worker import Worker
from shared.service import boot, exit_on_config_error
from shared.settings import Settings


async def serve(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain it."""
    async with Worker(settings) as worker:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def main() -> None:
    """Entry point."""
    settings, log = boot("analyzer")
    log.info("starting", redis=settings.redis_url_for_logs, backend=settings.analyzer_backend)
    if settings.analyzer_backend == "local" and settings.anthropic_api_key is None:
        log.info(
            "no ANTHROPIC_API_KEY: analysing labels offline (OCR + rulebook); "
            "set the key to use Claude"
        )
    with exit_on_config_error("analyzer"):
        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
