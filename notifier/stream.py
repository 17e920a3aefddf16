"""A scan's (or a tenant's) event stream as SSE bytes, gapless: subscribe, replay, then live.

Subscribing before reading the history is what makes the switch gapless: any
event the history read misses is already queued; ids are equal in the global
stream and in each scan's history, so anything at or below the last id sent is
a duplicate and is skipped.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import Any

import structlog
from redis.exceptions import RedisError

from notifier import metrics
from notifier.events import PING, StreamEvent, frame, id_ping, reconnect_frame
from notifier.history import ReplayTooLongError, kept, replay
from notifier.hub import Hub
from notifier.inbox import DISCONNECTED, SHUTDOWN, Subscription
from notifier.position import Position, format_position, parse_position
from notifier.reset import scan_snapshot, tenant_reset
from shared.connection import RedisClient
from shared.keys import Keys
from shared.replies import text
from shared.schemas import TERMINAL_STATES
from shared.streamids import StreamId, parse_stream_id

log = structlog.get_logger("notifier")

UNAVAILABLE = "unavailable"
RECONNECT_MIN_MS = 50


@dataclass(frozen=True, slots=True)
class Source:
    """What every stream reads from."""

    hub: Hub
    redis: RedisClient
    keys: Keys
    retry_ms: int
    max_replay: int = 0  # global-stream entries a tenant resume may read (0: no bound)


async def scan_state(
    redis: RedisClient, keys: Keys, scan_id: str
) -> tuple[str | None, bool, str | None]:
    """The scan's state and tenant (None when its hash is gone), and whether it has history."""
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.scan(scan_id), ["state", "tenant"])
    pipe.exists(keys.scan_events(scan_id))
    (state, tenant), exists = await pipe.execute()
    return text(state), bool(exists), text(tenant)


def is_finished(state: str | None) -> bool:
    """Whether no event can be added any more (terminal, or the scan hash has expired)."""
    return state is None or state in TERMINAL_STATES


async def has_events_after(redis: RedisClient, keys: Keys, scan_id: str, after: str) -> bool:
    """Whether the history holds anything newer than ``after``."""
    entries: Any = await redis.xrange(keys.scan_events(scan_id), min="(" + after, count=1)
    return bool(entries)


async def _lost_any(src: Source, streams: list[str], after: Position) -> bool:
    """Whether any partition's stream was trimmed past the client's component of ``after``."""
    for stream, last in zip(streams, after, strict=True):
        if (await kept(src.redis, stream)).lost_after(last):
            return True
    return False


def end_frame(reason: str | None, retry_ms: int) -> bytes:
    """What a client is told when the server, not the scan, ends its stream."""
    if reason is None or reason == DISCONNECTED:
        return b""  # nobody is listening
    if reason == SHUTDOWN:
        # Jittered: a replica's thousands of clients must not land on the others at once.
        jitter = random.randint(RECONNECT_MIN_MS, max(RECONNECT_MIN_MS, retry_ms))
        return reconnect_frame(reason, jitter)
    return reconnect_frame(reason)


async def live(
    src: Source, sub: Subscription, last: StreamId | None
) -> AsyncGenerator[bytes, None]:
    """A scan's queued events newer than ``last``, heartbeats, then why the stream ended."""
    while not sub.ended:
        events, ping = await sub.batch()
        out: list[bytes] = []
        sent: list[StreamEvent] = []
        for event in events:
            if last is not None and event.key <= last:
                continue
            out.append(event.wire)
            sent.append(event)
            last = event.key
            if event.terminal:
                metrics.delivered(sent)
                yield b"".join(out)
                return
        if ping:
            out.append(PING)
        if out:
            metrics.delivered(sent)
            yield b"".join(out)
    if tail := end_frame(sub.reason, src.retry_ms):
        yield tail


class TenantCursor:
    """Where a tenant stream stands: one id per partition, each moved by its own events."""

    __slots__ = ("ids",)

    def __init__(self, ids: Position) -> None:
        self.ids = list(ids)

    def fresh(self, event: StreamEvent) -> bool:
        """Whether ``event`` is past the position (not already sent)."""
        return event.key > self.ids[event.partition]

    def take(self, event: StreamEvent) -> bytes:
        """``event``'s frame, its id the new position (check :meth:`fresh` first)."""
        self.ids[event.partition] = event.key
        if len(self.ids) == 1:
            return event.wire  # the entry id is the position: the shared frame fits
        return frame(event.data, event=event.type, id=format_position(tuple(self.ids)))

    def move_to(self, hub_last: str | None) -> bytes:
        """A heartbeat that moves the client past other tenants' events (every entry up
        to the hub's position was dispatched and the inbox was just emptied), so its
        resume stays cheap and never falls off the trimmed streams while it is quiet."""
        hub = parse_position(hub_last, len(self.ids)) if hub_last is not None else None
        if hub is None:
            return PING
        moved = [max(mine, theirs) for mine, theirs in zip(self.ids, hub, strict=True)]
        if moved == self.ids:
            return PING
        self.ids = moved
        return id_ping(format_position(tuple(moved)))


async def live_tenant(
    src: Source, sub: Subscription, cursor: TenantCursor
) -> AsyncGenerator[bytes, None]:
    """A tenant's queued events past ``cursor``, heartbeats, then why the stream ended."""
    while not sub.ended:
        events, ping = await sub.batch()
        sent = [event for event in events if cursor.fresh(event)]
        out = [cursor.take(event) for event in sent]
        metrics.delivered(sent)
        if ping:
            out.append(cursor.move_to(src.hub.last_id))
        if out:
            yield b"".join(out)
    if tail := end_frame(sub.reason, src.retry_ms):
        yield tail


class _Cursor:
    """Where a stream stands: the last id sent, and whether the terminal event was."""

    __slots__ = ("done", "last")

    def __init__(self, last: StreamId | None) -> None:
        self.last = last
        self.done = False


async def _scan_start(
    src: Source, scan_id: str, after: str | None, cur: _Cursor
) -> tuple[str | None, str | None, bytes | None]:
    """The scan's state, where replay starts, and a ``reset`` if the resume point is gone."""
    if cur.last is None:
        return text(await src.redis.hget(src.keys.scan(scan_id), "state")), after, None
    snap = await scan_snapshot(src.redis, src.keys, scan_id)
    lost = snap.kept.lost_after(cur.last)
    metrics.resumed(exact=not lost)
    if not lost:
        return snap.state, after, None
    if snap.kept.last is not None:
        after, cur.last = snap.kept.last, parse_stream_id(snap.kept.last)
    return snap.state, after, snap.reset_frame()


async def _replay_scan(
    src: Source, sub: Subscription, scan_id: str, after: str | None, cur: _Cursor
) -> AsyncGenerator[bytes, None]:
    async for page in replay(src.redis, src.keys.scan_events(scan_id), after):
        if sub.ended:
            return  # overflowed or shutting down: the client resumes by id
        out = []
        for event in page:
            out.append(event.wire)
            cur.last = event.key
            if event.terminal:
                cur.done = True
                break
        metrics.replayed(len(out))
        yield b"".join(out)
        if cur.done:
            return


async def scan_stream(
    src: Source, sub: Subscription, scan_id: str, after: str | None
) -> AsyncGenerator[bytes, None]:
    """Events of ``scan_id`` strictly after ``after``, ending after a terminal one."""
    cur = _Cursor(parse_stream_id(after) if after is not None else None)
    try:
        await src.hub.wait_ready()
        if sub.ended:
            yield end_frame(sub.reason, src.retry_ms)  # draining for shutdown
            return
        # Read before the history: a finished scan's history already holds its last event.
        state, after, reset = await _scan_start(src, scan_id, after, cur)
        if reset is not None:
            yield reset
            if is_finished(state):
                return
        async for chunk in _replay_scan(src, sub, scan_id, after, cur):
            yield chunk
        if cur.done or (is_finished(state) and not sub.ended):
            return
        async for chunk in live(src, sub, cur.last):
            yield chunk
    except RedisError as exc:
        # Ending the stream is the recovery: the browser reconnects with Last-Event-ID.
        log.warning("stream ended by a redis error", scan_id=scan_id, error=str(exc))
        yield reconnect_frame(UNAVAILABLE)


async def tenant_stream(
    src: Source, sub: Subscription, tenant: str, after: Position | None
) -> AsyncGenerator[bytes, None]:
    """Events of every scan of ``tenant`` after ``after`` (or from now), until the server ends.

    Each partition's events stream is replayed from its own component of ``after``
    up to the hub's position, then live events follow: gapless in every partition.
    """
    streams = [part.events for part in src.keys.partitions]
    try:
        await src.hub.wait_ready()
        hub_last = src.hub.last_id
        until = parse_position(hub_last, len(streams)) if hub_last is not None else None
        if sub.ended or hub_last is None or until is None:
            yield end_frame(sub.reason or SHUTDOWN, src.retry_ms)
            return
        # Everything after `until` reaches the inbox; the histories cover the rest.
        ends = hub_last.split(",")
        if after is None:
            yield id_ping(hub_last)  # a resume point from the first byte, before any event
            cursor = TenantCursor(until)
        elif await _lost_any(src, streams, after):
            metrics.resumed(exact=False)
            yield await tenant_reset(src.redis, streams, tenant, ends)
            cursor = TenantCursor(until)
        else:
            metrics.resumed(exact=True)
            cursor = TenantCursor(after)
            budget = max(1, src.max_replay // len(streams)) if src.max_replay else 0
            try:
                for index, stream in enumerate(streams):
                    start = f"{after[index][0]}-{after[index][1]}"
                    async for page in replay(
                        src.redis, stream, start, tenant=tenant, until=ends[index], limit=budget
                    ):
                        if sub.ended:
                            break
                        moved = [replace(event, partition=index) for event in page]
                        out = [cursor.take(event) for event in moved if cursor.fresh(event)]
                        metrics.replayed(len(out))
                        yield b"".join(out)
            except ReplayTooLongError:
                # Too far behind to replay cheaply: the current state instead, as for a
                # trimmed resume point; what came after `until` follows live.
                yield await tenant_reset(src.redis, streams, tenant, ends)
                cursor = TenantCursor(until)
        async for chunk in live_tenant(src, sub, cursor):
            yield chunk
    except RedisError as exc:
        log.warning("tenant stream ended by a redis error", tenant=tenant, error=str(exc))
        yield reconnect_frame(UNAVAILABLE)
