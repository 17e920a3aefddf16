"""``python -m analyzer``: one consumer of the ``analyzers`` group."""

from __future__ import annotations

import asyncio
import gc
import signal

import structlog
import uvloop

from analyzer.worker import Worker
from shared.service import boot, exit_on_config_error
from shared.settings import Settings
from shared.tracing import setup_tracing, shutdown_tracing

log = structlog.get_logger("analyzer")


SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Signals:
    """What SIGINT/SIGTERM mean to an analyzer, as to uvicorn: drain, then force.

    The first stops claiming and lets running scans finish within
    ``SCAN_SHUTDOWN_GRACE``; a second (an impatient operator, or a supervisor
    out of patience) hands them back at once and exits, instead of waiting
    out the grace period. Either way every unfinished scan is handed back.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.received = 0

    def __call__(self, sig: signal.Signals) -> None:
        """Handle one signal (the event loop calls this, never from inside a frame)."""
        self.received += 1
        if self.received == 1:
            log.info("signal received; draining", signal=sig.name)
            self.worker.stop()
        elif self.received == 2:
            log.warning("second signal; forcing the exit", signal=sig.name)
            self.worker.force_stop()
        else:
            log.warning("already forcing the exit; signal ignored", signal=sig.name)


async def serve(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain it (a second signal forces the exit)."""
    async with Worker(settings) as worker:
        freeze_startup_objects()
        loop = asyncio.get_running_loop()
        handler = Signals(worker)
        for sig in SIGNALS:
            loop.add_signal_handler(sig, handler, sig)
        try:
            await worker.run()
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)


def freeze_startup_objects() -> None:
    """Keep what start-up built (modules, models, the worker) out of full collections.

    Scans' objects are short-lived, but with a hundred scans in flight many outlive
    a young collection, and every few thousand scans CPython then walks all ~70,000
    objects of the process: about 40 µs a scan (``bench.hotpath``), for objects that
    live as long as the process anyway (``gc.freeze``).
    """
    gc.collect()
    gc.freeze()


def main() -> None:
    """Entry point."""
    settings, log = boot("analyzer")
    log.info(
        "starting",
        redis=settings.redis_url_for_logs,
        backend=settings.analyzer_backend,
        tracing=settings.tracing,
    )
    setup_tracing(settings, "analyzer")
    if settings.analyzer_backend == "local" and settings.anthropic_api_key is None:
        log.info(
            "no ANTHROPIC_API_KEY: analysing labels offline (OCR + rulebook); "
            "set the key to use Claude"
        )
    try:
        with exit_on_config_error("analyzer"):
            uvloop.run(serve(settings))
    finally:
        # The drained scans' last spans are still batched: send them before exiting.
        shutdown_tracing()


if __name__ == "__main__":
    main()
