"""The fan-out: one XREAD reader per process and partition, events dispatched in memory.

With several partitions the hub's position is one entry id per partition's events
stream (see :mod:`notifier.position`); with one it is that stream's last id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError

from notifier.events import decode_event
from notifier.inbox import SHUTDOWN, Subscription
from notifier.position import encode_position
from shared.connection import RedisClient
from shared.tasks import cancel_and_wait

log = structlog.get_logger("notifier")

QUEUE_SIZE = 256  # a scan emits a handful of events; 256 unread means the client is stuck
BATCH = 500
BLOCK_MS = 2_000  # under redis-py 8's default 5 s socket timeout, or every idle read times out
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
BEAT_TICK_MIN_S = 0.05
BEAT_BUCKETS = 32  # heartbeats go out a slice at a time, never 10,000 writes in one tick


@dataclass(frozen=True, slots=True)
class HubStats:
    """What the hub is doing, for readiness and tests."""

    ready: bool
    connected: bool
    last_id: str | None
    scans: int
    tenants: int
    subscribers: int
    overflows: int


class StreamLimitError(Exception):
    """A tenant already has its maximum of open streams on this replica."""


class Hub:
    """Reads each partition's events stream once; routes entries by ``scan_id`` and ``tenant``."""

    def __init__(
        self,
        redis: RedisClient,
        streams: str | Sequence[str],
        *,
        queue_size: int = QUEUE_SIZE,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
        heartbeat_s: float | None = None,
        max_per_tenant: int = 0,
    ) -> None:
        self._redis = redis
        self._streams = (streams,) if isinstance(streams, str) else tuple(streams)
        self._max_per_tenant = max_per_tenant  # 0: no cap
        self._open: dict[str, int] = {}  # open streams per tenant
        self._queue_size = queue_size
        self._batch = batch
        self._block_ms = block_ms
        self._heartbeat_s = heartbeat_s
        self._scans: dict[str, set[Subscription]] = {}
        self._tenants: dict[str, set[Subscription]] = {}
        self._buckets: list[set[Subscription]] = [set() for _ in range(BEAT_BUCKETS)]
        self._next_bucket = 0
        self._count = 0
        self._last: list[str | None] = [None] * len(self._streams)
        self._ready = asyncio.Event()
        self._connected = [True] * len(self._streams)
        self._tasks: list[asyncio.Task[None]] = []
        self._overflows = 0
        self._stopping = False
        self.draining = False

    @property
    def last_id(self) -> str | None:
        """The newest position dispatched: every entry up to it is in its subscribers' inboxes.

        One entry id per partition (comma-separated when there are several); None
        until every reader knows where it starts.
        """
        if any(last is None for last in self._last):
            return None
        return encode_position([last for last in self._last if last is not None])

    @property
    def partitions(self) -> int:
        """How many events streams the hub reads."""
        return len(self._streams)

    def start(self) -> None:
        """Start the readers (and the heartbeat) tasks."""
        if self._tasks:
            return
        for index in range(len(self._streams)):
            self._tasks.append(asyncio.create_task(self._run(index), name=f"notifier-hub-{index}"))
        if self._heartbeat_s is not None:
            self._tasks.append(asyncio.create_task(self._beat(self._heartbeat_s)))

    async def stop(self) -> None:
        """End every subscription and stop the tasks."""
        self._stopping = True
        self.drain()
        tasks, self._tasks = self._tasks, []
        # (the readers also check _stopping, so one ends within one BLOCK at worst)
        await cancel_and_wait(tasks)

    def drain(self) -> None:
        """End every stream now and refuse new ones (shutdown: clients resume elsewhere)."""
        self.draining = True
        self._ready.set()  # nobody may wait for a start point that will never come
        for table in (self._scans, self._tenants):
            for subs in table.values():
                for sub in subs:
                    sub.end(SHUTDOWN)
            table.clear()
        for bucket in self._buckets:
            bucket.clear()
        self._count = 0
        self._open.clear()

    def subscribe(self, scan_id: str, owner: str = "") -> Subscription:
        """Register for ``scan_id``'s live events (counted against tenant ``owner``); no Redis call.

        StreamLimitError when ``owner`` already has its maximum of open streams.
        """
        return self._add(self._scans, scan_id, tenant=False, owner=owner)

    def subscribe_tenant(self, tenant: str) -> Subscription:
        """Register for the live events of every scan of ``tenant``; no Redis call.

        StreamLimitError when ``tenant`` already has its maximum of open streams.
        """
        return self._add(self._tenants, tenant, tenant=True, owner=tenant)

    def _add(
        self, table: dict[str, set[Subscription]], key: str, *, tenant: bool, owner: str
    ) -> Subscription:
        bucket = self._next_bucket
        self._next_bucket = (bucket + 1) % BEAT_BUCKETS
        sub = Subscription(key, self._queue_size, tenant=tenant, bucket=bucket, owner=owner)
        if self.draining:
            sub.end(SHUTDOWN)
            return sub
        opened = self._open.get(owner, 0)
        if owner and self._max_per_tenant and opened >= self._max_per_tenant:
            raise StreamLimitError(f"{opened} streams are open for this tenant")
        if owner:
            self._open[owner] = opened + 1
        table.setdefault(key, set()).add(sub)
        self._buckets[bucket].add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (idempotent)."""
        table = self._tenants if sub.tenant else self._scans
        subs = table.get(sub.key)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self._buckets[sub.bucket].discard(sub)
        self._count -= 1
        if sub.owner:
            left = self._open.get(sub.owner, 1) - 1
            if left > 0:
                self._open[sub.owner] = left
            else:
                self._open.pop(sub.owner, None)
        if not subs:
            del table[sub.key]

    async def wait_ready(self) -> None:
        """Wait until the reader knows where it starts (or the hub drains): replay leaves no gap."""
        await self._ready.wait()

    def stats(self) -> HubStats:
        """A snapshot of the hub's state."""
        last_id = self.last_id
        return HubStats(
            ready=last_id is not None,
            connected=all(self._connected) and last_id is not None,
            last_id=last_id,
            scans=len(self._scans),
            tenants=len(self._tenants),
            subscribers=self._count,
            overflows=self._overflows,
        )

    async def _beat(self, interval_s: float) -> None:
        # Each bucket is visited every interval/2, so an idle stream pings within ~interval.
        buckets = max(1, min(BEAT_BUCKETS, int(interval_s / 2 / BEAT_TICK_MIN_S)))
        tick = interval_s / 2 / buckets
        turn = 0
        while not self._stopping:
            await asyncio.sleep(tick)
            for index in range(turn, BEAT_BUCKETS, buckets):
                for sub in self._buckets[index]:
                    sub.heartbeat()
            turn = (turn + 1) % buckets

    async def _run(self, index: int) -> None:
        stream = self._streams[index]
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            try:
                if self._last[index] is None:
                    self._last[index] = await self._tail(stream)
                    if self.last_id is not None:
                        self._ready.set()
                # A concrete id, never "$": after a reconnect nothing written meanwhile is missed.
                start: str = self._last[index] or "0-0"
                reply = await self._redis.xread(
                    {stream: start}, count=self._batch, block=self._block_ms
                )
            except (RedisError, OSError) as exc:
                self._lost(index, exc, unexpected=False)
            except Exception as exc:  # a bug must not silence every stream of the process
                self._lost(index, exc, unexpected=True)
            else:
                if not self._connected[index]:
                    log.info("events reader reconnected", stream=stream, last_id=self._last[index])
                    self._connected[index] = True
                backoff = BACKOFF_MIN_S
                try:
                    self._dispatch(index, reply)
                except Exception:  # one bad batch must not stop the reader for everyone
                    log.exception("dispatching a batch failed", last_id=self._last[index])
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _tail(self, stream: str) -> str:
        """The stream's last entry id now ("$" made concrete); 0-0 when it is empty."""
        last: Any = await self._redis.xrevrange(stream, count=1)
        return str(last[0][0].decode("ascii")) if last else "0-0"

    def _lost(self, index: int, exc: Exception, *, unexpected: bool) -> None:
        if not self._connected[index]:
            return  # already reported; one line per state change, not per retry
        self._connected[index] = False
        stream = self._streams[index]
        if unexpected:
            log.exception("events reader failed; retrying", stream=stream, error=repr(exc))
        else:
            log.warning("events reader lost redis; retrying", stream=stream, error=str(exc))

    def _dispatch(self, index: int, reply: Any) -> None:
        scans, tenants = self._scans, self._tenants
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self._last[index] = entry_id.decode("ascii")
                # A batch's entries name their batch instead: its id shares the scans' table.
                raw_scan = fields.get(b"scan_id") or fields.get(b"batch_id")
                raw_tenant = fields.get(b"tenant")
                by_scan = scans.get(raw_scan.decode("ascii", "replace")) if raw_scan else None
                by_tenant = (
                    tenants.get(raw_tenant.decode("utf-8", "replace")) if raw_tenant else None
                )
                if not by_scan and not by_tenant:
                    continue  # nobody here watches it: not even decoded
                try:
                    event = decode_event(entry_id, fields.get(b"event"), index)
                except ValueError as exc:
                    log.warning(
                        "skipping malformed event", entry_id=self._last[index], error=str(exc)
                    )
                    continue
                for subs in (by_scan, by_tenant):
                    if subs:
                        for sub in [sub for sub in subs if not sub.push(event)]:
                            self._overflowed(sub)

    def _overflowed(self, sub: Subscription) -> None:
        self._overflows += 1
        self.unsubscribe(sub)
        log.warning("subscriber too slow; ending its stream", key=sub.key, tenant=sub.tenant)
