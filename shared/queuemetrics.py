"""Queue-state gauges read from Redis when scraped: cheap, and cached briefly.

Read by the gateway's ``/metrics``. The counts come from one pipeline over
every partition; the age of the oldest waiting scan needs each stream's group
position first, so streams that hold waiting scans get a second pipelined read
of their first undelivered entry. Both run at most once per
``METRICS_QUEUE_CACHE`` seconds, however many scrapers ask.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from shared.connection import RedisClient
from shared.keys import Keys
from shared.replies import text
from shared.schemas import PRIORITIES, Priority
from shared.stats import find_group

log = structlog.get_logger("metrics")

QUEUE_DEPTH = Gauge(
    "labelscan_queue_depth", "Scans waiting in the request streams, not yet read.", ["priority"]
)
OLDEST_AGE = Gauge(
    "labelscan_queue_oldest_age_seconds",
    "Age of the oldest scan still waiting to be read (0: none waiting).",
    ["priority"],
)
ACTIVE = Gauge("labelscan_active_scans", "Scans read by an analyzer and not yet acknowledged.")
SCHEDULED = Gauge("labelscan_scheduled_scans", "Scans waiting for their time (retries, due_at).")
DEAD = Gauge("labelscan_dead_letters", "Entries in the dead-letter streams.")
CONSUMERS = Gauge("labelscan_consumers", "Analyzer consumers registered in the consumer group.")
FLEET_PAUSED = Gauge(
    "labelscan_fleet_paused", "1 while the fleet-wide pause a 429 from the API sets is on."
)
READ_ERRORS = Counter(
    "labelscan_queue_metrics_errors_total", "Scrapes whose queue-state read from Redis failed."
)


class QueueState(msgspec.Struct, frozen=True, kw_only=True):
    """What the queue gauges show, summed over every partition."""

    depth: dict[Priority, int]
    oldest_age_s: dict[Priority, float]
    active: int
    scheduled: int
    dead: int
    consumers: int
    paused: bool


async def read_queue_state(redis: RedisClient, keys: Keys) -> QueueState:
    """The queue's state now, in two pipelined reads (the second only if scans wait)."""
    pipe = redis.pipeline(transaction=False)
    for part in keys.partitions:
        for stream in part.request_streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        pipe.zcard(part.delayed)
        pipe.xlen(part.dead)
    pipe.hget(keys.ratelimit("state"), "paused_until")
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, RedisError) and not _no_stream(reply):
            raise reply
    depth: dict[Priority, int] = dict.fromkeys(PRIORITIES, 0)
    active = scheduled = dead = consumers = 0
    # (priority, stream, exclusive start) of every stream holding waiting scans
    waiting_in: list[tuple[Priority, str, str]] = []
    at = 0
    for part in keys.partitions:
        for priority, stream in zip(PRIORITIES, part.request_streams, strict=True):
            length = replies[at] if isinstance(replies[at], int) else 0
            group = find_group(replies[at + 1])
            at += 2
            pending = int(group.get("pending", 0)) if group else 0
            waiting = max(length - pending, 0)
            depth[priority] += waiting
            active += pending
            if group:
                consumers = max(consumers, int(group.get("consumers", 0)))
            if waiting:
                last = text(group.get("last-delivered-id", "0-0")) if group else "0-0"
                waiting_in.append((priority, stream, f"({last}"))
        scheduled += int(replies[at]) if isinstance(replies[at], int) else 0
        dead += int(replies[at + 1]) if isinstance(replies[at + 1], int) else 0
        at += 2
    paused_until = replies[at]
    now_ms = time.time() * 1000
    paused = bool(paused_until) and int(paused_until) > now_ms
    oldest: dict[Priority, float] = dict.fromkeys(PRIORITIES, 0.0)
    if waiting_in:
        pipe = redis.pipeline(transaction=False)
        for _, stream, start in waiting_in:
            pipe.xrange(stream, min=start, max="+", count=1)
        firsts: list[Any] = await pipe.execute(raise_on_error=False)
        for (priority, _, _), first in zip(waiting_in, firsts, strict=True):
            if isinstance(first, list) and first:
                # Entry ids are XADD '*': their first part is when the scan was queued.
                queued_ms = int(text(first[0][0]).split("-", 1)[0])
                age = max(now_ms - queued_ms, 0.0) / 1000
                oldest[priority] = max(oldest[priority], age)
    return QueueState(
        depth=depth,
        oldest_age_s=oldest,
        active=active,
        scheduled=scheduled,
        dead=dead,
        consumers=consumers,
        paused=paused,
    )


def _no_stream(exc: RedisError) -> bool:
    # XINFO GROUPS on a stream nobody has written to yet.
    return "no such key" in str(exc).lower()


class QueueGauges:
    """Refreshes the queue gauges from Redis at most once per ``cache_s`` seconds."""

    def __init__(self, redis: RedisClient, keys: Keys, cache_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._cache_s = cache_s
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Update the gauges unless they are fresh; a Redis error leaves them as they were."""
        if time.monotonic() - self._read_at < self._cache_s:
            return
        async with self._lock:  # concurrent scrapes share one read
            if time.monotonic() - self._read_at < self._cache_s:
                return
            try:
                state = await read_queue_state(self._redis, self._keys)
            except RedisError as exc:
                READ_ERRORS.inc()
                log.warning("queue metrics unavailable", error=str(exc))
                return
            finally:
                # A failed read is not retried by every scrape either: Redis is struggling.
                self._read_at = time.monotonic()
            publish(state)


def publish(state: QueueState) -> None:
    """Set the gauges to ``state``."""
    for priority in PRIORITIES:
        QUEUE_DEPTH.labels(priority).set(state.depth[priority])
        OLDEST_AGE.labels(priority).set(state.oldest_age_s[priority])
    ACTIVE.set(state.active)
    SCHEDULED.set(state.scheduled)
    DEAD.set(state.dead)
    CONSUMERS.set(state.consumers)
    FLEET_PAUSED.set(1 if state.paused else 0)
