"""Stopping the background tasks a component owns, before it closes what they use."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

log = structlog.get_logger("labelscan")

RECANCEL_S = 0.1
"""How long a cancelled task has to end before it is cancelled again."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return only once every one of them has ended.

    Cancelled again until it ends, because one ``cancel()`` can be lost: on Python
    3.11, ``asyncio.wait_for`` returns the awaited result instead of raising when the
    cancellation lands as that result arrives, and a reader loop that then goes round
    again blocks in its next read. Waiting matters as much: the owner closes its Redis
    client next, and a task still running then would reconnect on the closed pool (a
    connection nobody closes). An error a task ended with is logged, not lost.
    """
    owned = list(tasks)
    pending = {task for task in owned if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in owned:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task ended with an error", task=task.get_name(), error=repr(exc))
