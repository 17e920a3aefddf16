"""The cyclic garbage collector, kept from stalling thousands of open streams at once.

A full collection walks every tracked object. With 10,000 open streams that is
~800,000 objects and a pause of every stream of ~0.45 s (2-core machine), and
CPython runs one whenever a quarter as many objects again have survived into
its oldest generation: after every few thousand new connections. Measured in
bench/sse.py, such a pass during publishing was the whole p99 (250 ms at N=5,000).

Open streams are long-lived, and when they end reference counting frees them
(their teardown leaves next to no cyclic garbage), so every ``freeze_s`` the
notifier moves whatever is alive into the permanent generation (``gc.freeze()``,
a constant-time list splice) and full passes only walk what is new. Every
``thaw_s`` it takes everything back and runs one full pass, so cycles among
frozen objects are still found: one long pause per interval instead of one
every few thousand connections.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import structlog

FREEZE_S = 5.0
THAW_S = 600.0
PAUSE_WARN_S = 0.05

log = structlog.get_logger("notifier")


async def manage_gc(freeze_s: float = FREEZE_S, thaw_s: float = THAW_S) -> None:
    """Freeze what is alive every ``freeze_s``; thaw and collect fully every ``thaw_s``."""
    thawed = time.monotonic()
    try:
        while True:
            await asyncio.sleep(freeze_s)
            if time.monotonic() - thawed >= thaw_s:
                gc.unfreeze()
                gc.collect()
                thawed = time.monotonic()
            gc.freeze()
    finally:
        gc.unfreeze()  # stopped: the collector sees everything again


def watch_gc(warn_s: float = PAUSE_WARN_S) -> None:
    """Log every collector pass that stalls the event loop for ``warn_s`` or more."""
    started = 0.0

    def observe(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        pause = time.perf_counter() - started
        if pause >= warn_s:
            log.warning(
                "gc pause",
                generation=info["generation"],
                ms=round(pause * 1000, 1),
                collected=info["collected"],
            )

    gc.callbacks.append(observe)
