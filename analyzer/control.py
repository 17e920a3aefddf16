"""Control messages to analyzers over Redis pub/sub: "stop this scan", "controls changed"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from redis.exceptions import RedisError

from analyzer.outage import Outage
from shared.connection import RedisClient


async def listen_for_control(
    redis: RedisClient,
    channel: str,
    on_cancel: Callable[[str], None],
    stopping: asyncio.Event,
    *,
    on_controls: Callable[[], None] = lambda: None,
    on_drain: Callable[[str, bool], None] = lambda consumer, drain: None,
) -> None:
    """Call ``on_cancel(scan_id)`` for each cancel message until ``stopping`` is set,
    ``on_controls()`` when an operator changed a pause or a limit, and
    ``on_drain(consumer, drain)`` when one asks a consumer to drain or to undrain.

    Pub/sub may drop a message while disconnected; that is safe because a
    cancelled scan's token is gone, so the attempt stops at its next write. On a
    cluster a published message reaches every node, so any node will do.
    """
    outage = Outage("control")
    while not stopping.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            outage.recovered()
            while not stopping.is_set():
                message = await pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                kind, _, scan_id = bytes(message["data"]).decode().partition(" ")
                if kind == "cancel" and scan_id:
                    on_cancel(scan_id)
                elif kind in ("drain", "undrain") and scan_id:
                    on_drain(scan_id, kind == "drain")
                elif kind == "controls":
                    # A hint only: every replica also re-reads the controls within a second.
                    on_controls()
        except RedisError as exc:
            # A subscription does not survive its connection: subscribe again once
            # Redis answers, however long that takes.
            delay = outage.failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
