"""Background duties of every analyzer: promote due retries, renew, reclaim, tidy the group.

Each is safe to run in any number of analyzers at once: the scripts and
XAUTOCLAIM decide atomically who gets what.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog
from redis.exceptions import RedisError

from analyzer import metrics
from analyzer.attempts import AttemptStore
from analyzer.outage import Outage
from shared.clock import now_ms
from shared.keys import GROUP, Keys
from shared.replies import text as _text
from shared.schemas import PRIORITIES
from shared.settings import Settings

log = structlog.get_logger("analyzer")

Entry = tuple[str, str, dict[bytes, bytes]]
"""(stream, entry id, fields) of one delivered request."""

PROMOTE_MAX_SLEEP_S = 0.2


async def _every(
    name: str,
    interval: Callable[[], float],
    step: Callable[[], Awaitable[None]],
    stopping: asyncio.Event,
) -> None:
    outage = Outage(name)
    while not stopping.is_set():
        try:
            await step()
            outage.recovered()
        except RedisError as exc:
            # Each duty keeps its own pace through an outage rather than the backoff:
            # renewal must resume within its interval once Redis is back.
            outage.failed(exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval())


class Maintenance:
    """The periodic tasks of one analyzer process."""

    def __init__(
        self,
        store: AttemptStore,
        *,
        settings: Settings,
        consumer: str,
        held: Callable[[], dict[str, list[str]]],
        free_slots: Callable[[], int],
        deliver: Callable[[list[Entry]], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.consumer = consumer
        self._held = held
        self._free = free_slots
        self._deliver = deliver
        self._next_promote_s = PROMOTE_MAX_SLEEP_S
        self._last_tidy = 0.0
        self.reclaimed = 0

    def tasks(self, stopping: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start every periodic duty; they end when ``stopping`` is set."""
        vt = self.settings.visibility_timeout_s
        return [
            asyncio.create_task(
                _every("promote", lambda: self._next_promote_s, self.promote, stopping)
            ),
            asyncio.create_task(_every("renew", lambda: max(vt / 3, 0.2), self.renew, stopping)),
            asyncio.create_task(
                _every("reclaim", lambda: min(max(vt / 4, 0.25), 15.0), self.reclaim, stopping)
            ),
        ]

    async def promote(self) -> None:
        """Queue due retries; sleep until the next one is due (bounded)."""
        results = await asyncio.gather(
            *(self.store.promote(part) for part in self.store.keys.partitions)
        )
        promoted = sum(n for n, _ in results)
        dues = [due for _, due in results if due is not None]
        next_due = min(dues) if dues else None
        if promoted:
            log.info("retries queued", count=promoted)
            self._next_promote_s = 0.0
        elif next_due is None:
            self._next_promote_s = PROMOTE_MAX_SLEEP_S
        else:
            wait = (next_due - now_ms()) / 1000
            self._next_promote_s = min(max(wait, 0.005), PROMOTE_MAX_SLEEP_S)

    async def renew(self) -> None:
        """Keep every entry this process holds from being reclaimed."""
        for stream, ids in self._held().items():
            await self.store.renew(stream, self.consumer, ids)

    async def reclaim(self) -> None:
        """Take over entries idle past the visibility timeout (their consumer died)."""
        min_idle = int(self.settings.visibility_timeout_s * 1000)
        redis = self.store.redis
        for stream in self._streams():
            free = self._free()
            if free <= 0:
                break
            reply = await redis.xautoclaim(
                stream, GROUP, self.consumer, min_idle_time=min_idle, start_id="0-0", count=free
            )
            entries = [
                (stream, _text(entry_id), fields)
                for entry_id, fields in reply[1]
                if fields  # entries deleted since delivery come back empty
            ]
            if entries:
                self.reclaimed += len(entries)
                metrics.ATTEMPTS.labels("reclaimed").inc(len(entries))
                log.warning("reclaimed stalled entries", stream=stream, count=len(entries))
                self._deliver(entries)
        # The shared events stream only feeds live fan-out (histories live per scan):
        # keep it to the retention window so a burst does not stay in memory.
        horizon = now_ms() - self.settings.events_retention_s * 1000
        for part in self.store.keys.partitions:
            await redis.xtrim(part.events, minid=f"{horizon}-0", approximate=True)
        if time.monotonic() - self._last_tidy > max(60.0, self.settings.visibility_timeout_s):
            self._last_tidy = time.monotonic()
            await self.remove_dead_consumers()

    def _streams(self) -> list[str]:
        """Every request stream, highest priority first, across partitions."""
        return request_streams(self.store.keys)

    async def remove_dead_consumers(self) -> None:
        """Delete consumers with nothing pending that have not read for a long while."""
        idle_limit = int(max(60.0, 2 * self.settings.visibility_timeout_s) * 1000)
        redis = self.store.redis
        for stream in self._streams():
            for consumer in await redis.xinfo_consumers(stream, GROUP):
                name = _text(consumer["name"])
                if (
                    name != self.consumer
                    and int(consumer["pending"]) == 0
                    and int(consumer["idle"]) > idle_limit
                ):
                    await redis.xgroup_delconsumer(stream, GROUP, name)
                    log.info("removed idle consumer", consumer=name, stream=stream)


def request_streams(keys: Keys) -> list[str]:
    """Every request stream, by priority (highest first), then partition."""
    return [part.requests(p) for p in PRIORITIES for part in keys.partitions]
