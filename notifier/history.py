"""What Redis still keeps: paged replay of a stream, and whether a resume point fell off it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import structlog
from redis.exceptions import ResponseError

from notifier.events import StreamEvent, decode_event
from shared.connection import RedisClient
from shared.streamids import StreamId, parse_stream_id

log = structlog.get_logger("notifier")

PAGE = 200
# The global stream holds every tenant's events, most filtered out. Small slices, and the
# loop is yielded between them, so a few hundred resuming streams take turns with the
# rest of the process (readiness, live fan-out) instead of stalling it.
TENANT_PAGE = 250


class ReplayTooLongError(Exception):
    """A replay would read more entries than its bound; the caller answers ``reset``."""


async def replay(
    redis: RedisClient,
    key: str,
    after: str | None,
    *,
    tenant: str | None = None,
    until: str = "+",
    limit: int = 0,
) -> AsyncGenerator[list[StreamEvent], None]:
    """Pages of ``key``'s entries in ``(after, until]`` (only ``tenant``'s when given).

    With ``limit``, ReplayTooLongError as soon as more than ``limit`` entries would
    have been read (events of other tenants count: reading them is the cost).
    """
    start = "-" if after is None else "(" + after
    page = PAGE if tenant is None else TENANT_PAGE
    wanted = tenant.encode() if tenant is not None else None
    read = 0
    while True:
        entries: Any = await redis.xrange(key, min=start, max=until, count=page)
        read += len(entries)
        if limit and read > limit:
            raise ReplayTooLongError(f"more than {limit} entries to replay")
        batch: list[StreamEvent] = []
        for entry_id, fields in entries:
            if wanted is not None and fields.get(b"tenant") != wanted:
                continue
            try:
                batch.append(decode_event(entry_id, fields.get(b"event")))
            except ValueError as exc:
                log.warning("skipping malformed history entry", key=key, error=str(exc))
        if batch:
            yield batch
        if len(entries) < page:
            return
        start = "(" + entries[-1][0].decode("ascii")
        await asyncio.sleep(0)  # one slice at a time: let other connections run


class Kept:
    """What XINFO STREAM says about a stream's retained range."""

    __slots__ = ("first", "last", "trimmed")

    def __init__(self, info: Any) -> None:
        self.trimmed = False
        self.first: StreamId | None = None
        self.last: str | None = None
        if not isinstance(info, dict):
            return  # no such stream (an error object from a pipeline)
        # Histories are only ever trimmed from the head (MAXLEN / MINID), never XDELed.
        self.trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
        first, last = info.get("first-entry"), info.get("last-entry")
        if first:
            self.first = parse_stream_id(first[0].decode("ascii"))
        if last:
            self.last = last[0].decode("ascii")

    def lost_after(self, after: StreamId) -> bool:
        """Whether an entry newer than ``after`` may have been trimmed away (a gap)."""
        if not self.trimmed:
            return False
        return self.first is None or after < self.first


async def kept(redis: RedisClient, key: str) -> Kept:
    """The retained range of stream ``key`` (nothing kept when it does not exist)."""
    try:
        info: Any = await redis.xinfo_stream(key)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        info = None
    return Kept(info)
