"""Long-poll wake-ups: one events reader per gateway process, waiters woken by scan id.

A request that waits for a scan (``?wait=``) registers here and sleeps on an
``asyncio.Event``; it makes no Redis call while it waits. The readers (one per
partition's events stream, ``XREAD BLOCK`` from a concrete id, as the notifier's
hub does) start with the first waiter and set the events of the scans whose
entries they read. Every change of a scan is an event, so a waiter that reads
the scan after registering, and again after each wake-up, misses none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import structlog
from redis.exceptions import RedisError

from gateway.metrics import LONG_POLLS
from shared.connection import RedisClient
from shared.tasks import cancel_and_wait

log = structlog.get_logger("gateway")

BATCH = 500
BLOCK_MS = 2_000  # under the reader's socket timeout, or every idle read would time out
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0


class TooManyWaitersError(Exception):
    """This process already holds its maximum of long-polls (``SCAN_WAIT_MAX``)."""


class Watch:
    """One waiting request: set when an event of its scan is read."""

    __slots__ = ("_hub", "changed", "scan_id")

    def __init__(self, hub: ScanWaiters, scan_id: str) -> None:
        self._hub = hub
        self.scan_id = scan_id
        self.changed = asyncio.Event()

    async def ready(self, deadline: float) -> bool:
        """Whether the readers know where they start (before the loop time ``deadline``):
        no event is missed from then on."""
        return await _before(self._hub.ready.wait(), deadline)

    async def next_change(self, deadline: float) -> bool:
        """Wait for the scan's next event; False when the loop time ``deadline`` comes first."""
        return await _before(self.changed.wait(), deadline)


async def _before(waiting: Coroutine[Any, Any, Any], deadline: float) -> bool:
    try:
        async with asyncio.timeout_at(deadline):
            await waiting
    except TimeoutError:
        return False
    return True


class ScanWaiters:
    """Reads each partition's events stream once for every waiting request of the process."""

    def __init__(
        self,
        redis: RedisClient,
        streams: Sequence[str],
        *,
        limit: int,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self._redis = redis
        self._streams = tuple(streams)
        self._limit = limit
        self._block_ms = block_ms
        self._watches: dict[str, set[Watch]] = {}
        self._count = 0
        self._last: list[str | None] = [None] * len(self._streams)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.draining = False

    @property
    def waiting(self) -> int:
        """Requests waiting now."""
        return self._count

    @contextlib.asynccontextmanager
    async def watch(self, scan_id: str) -> AsyncIterator[Watch]:
        """Wait for ``scan_id``'s events while the block runs; TooManyWaitersError when full."""
        if self._count >= self._limit:
            raise TooManyWaitersError(f"{self._count} requests are waiting")
        watch = Watch(self, scan_id)
        self._watches.setdefault(scan_id, set()).add(watch)
        self._count += 1
        LONG_POLLS.inc()
        self._start()
        try:
            yield watch
        finally:
            self._count -= 1
            LONG_POLLS.dec()
            watches = self._watches.get(scan_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[scan_id]

    def drain(self) -> None:
        """Wake every waiter to answer now, and let none wait from here on (shutdown)."""
        self.draining = True
        for watches in self._watches.values():
            for watch in watches:
                watch.changed.set()

    def _start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._run(index), name=f"gateway-waiters-{index}")
            for index in range(len(self._streams))
        ]

    async def stop(self) -> None:
        """Stop the readers (the app's shutdown)."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def _run(self, index: int) -> None:
        stream = self._streams[index]
        backoff = BACKOFF_MIN_S
        connected = True
        while True:
            try:
                if self._last[index] is None:
                    last: Any = await self._redis.xrevrange(stream, count=1)
                    self._last[index] = last[0][0].decode("ascii") if last else "0-0"
                    if all(position is not None for position in self._last):
                        self.ready.set()
                # A concrete id, never "$": after a reconnect nothing written meanwhile is missed.
                reply: Any = await self._redis.xread(
                    {stream: self._last[index] or "0-0"}, count=BATCH, block=self._block_ms
                )
            except (RedisError, OSError) as exc:
                if connected:
                    log.warning("long-poll reader lost redis; retrying", error=str(exc))
                connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except Exception:  # a bug must not leave every waiter of the process asleep
                log.exception("long-poll reader failed; retrying", stream=stream)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if not connected:
                log.info("long-poll reader reconnected", stream=stream)
            connected, backoff = True, BACKOFF_MIN_S
            self._dispatch(index, reply)

    def _dispatch(self, index: int, reply: Any) -> None:
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self._last[index] = entry_id.decode("ascii")
                raw = fields.get(b"scan_id")
                watches = self._watches.get(raw.decode("ascii", "replace")) if raw else None
                for watch in watches or ():
                    watch.changed.set()
