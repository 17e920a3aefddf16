"""A scan's (or a tenant's) event stream as SSE bytes, gapless: subscribe, replay, then live.

Subscribing before reading the history is what makes the switch gapless: any
event the history read misses is already queued; ids are equal in the global
stream and in each scan's history, so anything at or below the last id sent is
a duplicate and is skipped.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from notifier.events import PING, id_ping, reconnect_frame
from notifier.history import ReplayTooLongError, kept, replay
from notifier.hub import Hub
from notifier.inbox import DISCONNECTED, SHUTDOWN, Subscription
from notifier.reset import scan_snapshot, tenant_reset
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
    redis: Redis
    keys: Keys
    retry_ms: int
    max_replay: int = 0  # global-stream entries a tenant resume may read (0: no bound)


async def scan_state(redis: Redis, keys: Keys, scan_id: str) -> tuple[str | None, bool, str | None]:
    """The scan's state and tenant (None when its hash is gone), and whether it has history."""
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.scan(scan_id), ["state", "tenant"])
    pipe.exists(keys.scan_events(scan_id))
    (state, tenant), exists = await pipe.execute()
    return text(state), bool(exists), text(tenant)


def is_finished(state: str | None) -> bool:
    """Whether no event can be added any more (terminal, or the scan hash has expired)."""
    return state is None or state in TERMINAL_STATES


async def has_events_after(redis: Redis, keys: Keys, scan_id: str, after: str) -> bool:
    """Whether the history holds anything newer than ``after``."""
    entries: Any = await redis.xrange(keys.scan_events(scan_id), min="(" + after, count=1)
    return bool(entries)


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
    src: Source, sub: Subscription, last: StreamId | None, *, scan: bool
) -> AsyncGenerator[bytes, None]:
    """Queued events newer than ``last``, heartbeats, then why the stream ended."""
    while not sub.ended:
        events, ping = await sub.batch()
        out: list[bytes] = []
        for event in events:
            if last is not None and event.key <= last:
                continue
            out.append(event.wire)
            last = event.key
            if scan and event.terminal:
                yield b"".join(out)
                return
        if ping:
            beat, last = _ping(src.hub, sub, last)
            out.append(beat)
        if out:
            yield b"".join(out)
    if tail := end_frame(sub.reason, src.retry_ms):
        yield tail


def _ping(hub: Hub, sub: Subscription, last: StreamId | None) -> tuple[bytes, StreamId | None]:
    # A tenant stream's client moves past other tenants' events: its resume stays cheap
    # and never falls off the trimmed global stream while the tenant is quiet. Safe: the
    # inbox was just emptied, and every entry up to the hub's last id was dispatched.
    hub_last = hub.last_id
    if sub.tenant and hub_last is not None:
        key = parse_stream_id(hub_last)
        if key is not None and (last is None or key > last):
            return id_ping(hub_last), key
    return PING, last


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
    if not snap.kept.lost_after(cur.last):
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
        async for chunk in live(src, sub, cur.last, scan=True):
            yield chunk
    except RedisError as exc:
        # Ending the stream is the recovery: the browser reconnects with Last-Event-ID.
        log.warning("stream ended by a redis error", scan_id=scan_id, error=str(exc))
        yield reconnect_frame(UNAVAILABLE)


async def tenant_stream(
    src: Source, sub: Subscription, tenant: str, after: str | None
) -> AsyncGenerator[bytes, None]:
    """Events of every scan of ``tenant`` after ``after`` (or from now), until the server ends."""
    last = parse_stream_id(after) if after is not None else None
    try:
        await src.hub.wait_ready()
        until = src.hub.last_id
        if sub.ended or until is None:
            yield end_frame(sub.reason or SHUTDOWN, src.retry_ms)
            return
        # Everything after `until` reaches the inbox; the history covers the rest.
        if last is None:
            yield id_ping(until)  # a resume point from the first byte, before any event
            last = parse_stream_id(until)
        elif (await kept(src.redis, src.keys.events)).lost_after(last):
            yield await tenant_reset(src.redis, src.keys.events, tenant, until)
            last = parse_stream_id(until)
        else:
            try:
                async for page in replay(
                    src.redis,
                    src.keys.events,
                    after,
                    tenant=tenant,
                    until=until,
                    limit=src.max_replay,
                ):
                    if sub.ended:
                        break
                    yield b"".join(event.wire for event in page)
                    last = page[-1].key
            except ReplayTooLongError:
                # Too far behind to replay cheaply: the current state instead, as for a
                # trimmed resume point; what came after `until` follows live.
                yield await tenant_reset(src.redis, src.keys.events, tenant, until)
                last = parse_stream_id(until)
        async for chunk in live(src, sub, last, scan=False):
            yield chunk
    except RedisError as exc:
        log.warning("tenant stream ended by a redis error", tenant=tenant, error=str(exc))
        yield reconnect_frame(UNAVAILABLE)
