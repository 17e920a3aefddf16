"""Control messages to analyzers over Redis pub/sub: today, "stop this scan"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("analyzer")


async def listen_for_cancels(
    redis: Redis, channel: str, on_cancel: Callable[[str], None], stopping: asyncio.Event
) -> None:
    """Call ``on_cancel(scan_id)`` for each cancel message until ``stopping`` is set.

    Pub/sub may drop a message while disconnected; that is safe because a
    cancelled scan's token is gone, so the attempt stops at its next write.
    """
    failures = 0
    while not stopping.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if failures:
                log.info("control channel reconnected")
            failures = 0
            while not stopping.is_set():
                message = await pubsub.get_message(timeout=0.5)
                if message is None:
                    continue
                kind, _, scan_id = bytes(message["data"]).decode().partition(" ")
                if kind == "cancel" and scan_id:
                    on_cancel(scan_id)
        except RedisError as exc:
            failures += 1
            if failures == 1:
                log.warning("control channel lost; reconnecting", error=str(exc))
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
