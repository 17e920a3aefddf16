"""The fan-out: one XREAD reader per process, events dispatched in memory to subscribers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from notifier.events import StreamEvent, decode_event

log = structlog.get_logger("notifier")

QUEUE_SIZE = 256  # a scan emits a handful of events; 256 unread means the client is stuck
BATCH = 500
BLOCK_MS = 2_000  # under redis-py 8's default 5 s socket timeout, or every idle read times out
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0


class Subscription:
    """One stream's bounded inbox for one scan; ended on overflow or shutdown."""

    __slots__ = ("_queue", "ended", "overflowed", "scan_id")

    def __init__(self, scan_id: str, size: int) -> None:
        self.scan_id = scan_id
        self.ended = False
        self.overflowed = False
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=size)

    def push(self, event: StreamEvent) -> bool:
        """Queue ``event`` without waiting; False (and ended) when the inbox is full."""
        if self.ended:
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.end()
            return False
        return True

    def end(self) -> None:
        """Wake the reader with end-of-stream; buffered events are dropped (it resumes by id)."""
        if self.ended:
            return
        self.ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def get(self) -> StreamEvent | None:
        """The next live event, or None once the subscription has ended."""
        if self.ended and self._queue.empty():
            return None
        return await self._queue.get()


@dataclass(frozen=True, slots=True)
class HubStats:
    """What the hub is doing, for readiness and tests."""

    ready: bool
    connected: bool
    last_id: str | None
    scans: int
    subscribers: int
    overflows: int


class Hub:
    """Reads the global events stream once and routes each entry by ``scan_id``."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        *,
        queue_size: int = QUEUE_SIZE,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._queue_size = queue_size
        self._batch = batch
        self._block_ms = block_ms
        self._subs: dict[str, set[Subscription]] = {}
        self._last_id: str | None = None
        self._ready = asyncio.Event()
        self._connected = True
        self._task: asyncio.Task[None] | None = None
        self._overflows = 0
        self._stopping = False
        self.draining = False

    def start(self) -> None:
        """Start the reader task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notifier-hub")

    async def stop(self) -> None:
        """End every subscription and stop the reader."""
        self._stopping = True
        self.drain()
        task, self._task = self._task, None
        if task is None:
            return
        # redis-py 8 can swallow a cancellation that lands mid-command; insist until it ends
        # (the loop also checks _stopping, so it exits within one BLOCK at worst).
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("events reader ended with an error", error=repr(exc))

    def drain(self) -> None:
        """End every stream now and refuse new ones (shutdown: clients resume elsewhere)."""
        self.draining = True
        self._ready.set()  # nobody may wait for a start point that will never come
        for subs in self._subs.values():
            for sub in subs:
                sub.end()
        self._subs.clear()

    def subscribe(self, scan_id: str) -> Subscription:
        """Register for ``scan_id``'s live events; no Redis call."""
        sub = Subscription(scan_id, self._queue_size)
        if self.draining:
            sub.end()
        else:
            self._subs.setdefault(scan_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (idempotent)."""
        subs = self._subs.get(sub.scan_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.scan_id]

    async def wait_ready(self) -> None:
        """Wait until the reader knows where it starts (or the hub drains): replay leaves no gap."""
        await self._ready.wait()

    def stats(self) -> HubStats:
        """A snapshot of the hub's state."""
        return HubStats(
            ready=self._last_id is not None,
            connected=self._connected and self._last_id is not None,
            last_id=self._last_id,
            scans=len(self._subs),
            subscribers=sum(len(s) for s in self._subs.values()),
            overflows=self._overflows,
        )

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            try:
                if self._last_id is None:
                    self._last_id = await self._tail()
                    self._ready.set()
                # A concrete id, never "$": after a reconnect nothing written meanwhile is missed.
                reply = await self._redis.xread(
                    {self._stream: self._last_id}, count=self._batch, block=self._block_ms
                )
            except (RedisError, OSError) as exc:
                self._lost(exc, unexpected=False)
            except Exception as exc:  # a bug must not silence every stream of the process
                self._lost(exc, unexpected=True)
            else:
                if not self._connected:
                    log.info("events reader reconnected", last_id=self._last_id)
                    self._connected = True
                backoff = BACKOFF_MIN_S
                try:
                    self._dispatch(reply)
                except Exception:  # one bad batch must not stop the reader for everyone
                    log.exception("dispatching a batch failed", last_id=self._last_id)
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _tail(self) -> str:
        """The stream's last entry id now ("$" made concrete); 0-0 when it is empty."""
        last: Any = await self._redis.xrevrange(self._stream, count=1)
        return str(last[0][0].decode("ascii")) if last else "0-0"

    def _lost(self, exc: Exception, *, unexpected: bool) -> None:
        if not self._connected:
            return  # already reported; one line per state change, not per retry
        self._connected = False
        if unexpected:
            log.exception("events reader failed; retrying", error=repr(exc))
        else:
            log.warning("events reader lost redis; retrying", error=str(exc))

    def _dispatch(self, reply: Any) -> None:
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode("ascii")
                raw_scan = fields.get(b"scan_id")
                subs = self._subs.get(raw_scan.decode("ascii", "replace")) if raw_scan else None
                if not subs:
                    continue
                try:
                    event = decode_event(entry_id, fields.get(b"event"))
                except ValueError as exc:
                    log.warning("skipping malformed event", entry_id=self._last_id, error=str(exc))
                    continue
                for sub in list(subs):
                    if not sub.push(event):
                        self._overflowed(sub)

    def _overflowed(self, sub: Subscription) -> None:
        self._overflows += 1
        self.unsubscribe(sub)
        log.warning("subscriber too slow; ending its stream", scan_id=sub.scan_id)
