"""One connection's inbox: bounded, woken by the hub, ended with a reason."""

from __future__ import annotations

import asyncio

from notifier.events import StreamEvent

SHUTDOWN = "shutdown"
SLOW = "slow_consumer"
DISCONNECTED = "disconnected"


class Subscription:
    """One connection's bounded inbox for a scan or a tenant; ended with a reason."""

    __slots__ = (
        "_items",
        "_ping",
        "_size",
        "_waiter",
        "bucket",
        "ended",
        "key",
        "owner",
        "quiet",
        "reason",
        "tenant",
    )

    def __init__(
        self, key: str, size: int, *, tenant: bool = False, bucket: int = 0, owner: str = ""
    ) -> None:
        self.key = key
        self.owner = owner  # the tenant whose open streams it counts against
        self.tenant = tenant
        self.bucket = bucket
        self.ended = False
        self.reason: str | None = None
        self.quiet = True
        self._size = size
        self._items: list[StreamEvent] = []
        self._ping = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def overflowed(self) -> bool:
        """Whether the inbox filled up and the subscription was ended for it."""
        return self.reason == SLOW

    @property
    def pending(self) -> int:
        """How many events wait to be written."""
        return len(self._items)

    def push(self, event: StreamEvent) -> bool:
        """Queue ``event`` without waiting; False only when this push overflowed the inbox."""
        if self.ended:
            return True  # already over (disconnected, say): nothing to report
        if len(self._items) >= self._size:
            self.end(SLOW)
            return False
        self._items.append(event)
        self.quiet = False
        self._wake()
        return True

    def heartbeat(self) -> None:
        """Ask for a ping if nothing was queued since the last call (one bucket visit)."""
        if self.quiet:
            self._ping = True
            self._wake()
        self.quiet = True

    def end(self, reason: str) -> None:
        """Wake the reader with end-of-stream; buffered events are dropped (it resumes by id)."""
        if self.ended:
            return
        self.ended = True
        self.reason = reason
        self._items = []
        self._wake()

    async def batch(self) -> tuple[list[StreamEvent], bool]:
        """Every queued event and whether a heartbeat is due; ``([], False)`` once ended."""
        while not (self._items or self._ping or self.ended):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        ping, self._ping = self._ping, False
        return items, ping

    async def get(self) -> StreamEvent | None:
        """The next live event, or None once the subscription has ended (heartbeats skipped)."""
        while not self._items:
            if self.ended:
                return None
            self._ping = False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
