"""One scan's event stream, gapless: subscribe, replay the history, then live events."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from notifier.events import StreamEvent, StreamId, decode_event, parse_stream_id
from notifier.hub import Hub
from shared.keys import Keys
from shared.schemas import TERMINAL_STATES

log = structlog.get_logger("notifier")

PAGE = 200


async def scan_state(redis: Redis, keys: Keys, scan_id: str) -> tuple[str | None, bool]:
    """The scan's state (None when its hash is gone) and whether it has any history."""
    pipe = redis.pipeline(transaction=False)
    pipe.hget(keys.scan(scan_id), "state")
    pipe.exists(keys.scan_events(scan_id))
    state, exists = await pipe.execute()
    return _text(state), bool(exists)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def is_finished(state: str | None) -> bool:
    """Whether no event can be added any more (terminal, or the scan hash has expired)."""
    return state is None or state in TERMINAL_STATES


async def has_events_after(redis: Redis, keys: Keys, scan_id: str, after: str) -> bool:
    """Whether the history holds anything newer than ``after``."""
    entries: Any = await redis.xrange(keys.scan_events(scan_id), min="(" + after, count=1)
    return bool(entries)


async def replay(redis: Redis, key: str, after: str | None) -> AsyncGenerator[StreamEvent, None]:
    """The history stream ``key`` strictly after ``after`` (or from its start), in pages."""
    start = "-" if after is None else "(" + after
    while True:
        entries: Any = await redis.xrange(key, min=start, max="+", count=PAGE)
        for entry_id, fields in entries:
            try:
                yield decode_event(entry_id, fields.get(b"event"))
            except ValueError as exc:
                log.warning("skipping malformed history entry", key=key, error=str(exc))
        if len(entries) < PAGE:
            return
        start = "(" + entries[-1][0].decode("ascii")


async def scan_events(
    hub: Hub, redis: Redis, keys: Keys, scan_id: str, after: str | None
) -> AsyncGenerator[StreamEvent, None]:
    """Events of ``scan_id`` strictly after entry id ``after``, ending after a terminal one.

    Subscribing before reading the history is what makes it gapless: any event
    the history read misses is already queued; ids are equal in both streams,
    so anything at or below the last id sent is a duplicate and is skipped.
    """
    last: StreamId | None = parse_stream_id(after) if after is not None else None
    sub = hub.subscribe(scan_id)
    try:
        await hub.wait_ready()
        if sub.ended:
            return  # draining for shutdown
        # Read before the history: a finished scan's history already holds its last event.
        finished = is_finished(_text(await redis.hget(keys.scan(scan_id), "state")))
        async with aclosing(replay(redis, keys.scan_events(scan_id), after)) as history:
            async for event in history:
                if sub.ended:
                    return  # overflowed or shutting down: the client resumes by id
                yield event
                last = event.key
                if event.terminal:
                    return
        if finished:
            return
        while (live := await sub.get()) is not None:
            if last is not None and live.key <= last:
                continue
            yield live
            last = live.key
            if live.terminal:
                return
    except RedisError as exc:
        # Ending the stream is the recovery: the browser reconnects with Last-Event-ID.
        log.warning("stream ended by a redis error", scan_id=scan_id, error=str(exc))
    finally:
        hub.unsubscribe(sub)
