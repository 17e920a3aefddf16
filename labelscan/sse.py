"""The notifier's event streams as the client follows them, parsed by ``httpx-sse``.

``httpx-sse`` reads the blocks as the HTML spec says; this module keeps what the
client needs across connections: the last event id (id-only blocks, the
notifier's pings, move it too), the server's ``retry`` delay, and which blocks
are events (a block without ``data`` is not dispatched, as in EventSource).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec
from httpx_sse import EventSource, ServerSentEvent, SSEError

from labelscan import errors
from shared.schemas import TERMINAL_STATES, BatchEvent, ScanEvent

if TYPE_CHECKING:
    from notifier.reset import ScanReset

_EVENT_TYPES = frozenset(
    {"scheduled", "queued", "progress", "retrying", "completed", "failed", "cancelled"}
)
_event = msgspec.json.Decoder(ScanEvent)
_batch_event = msgspec.json.Decoder(BatchEvent)


def _decode_reset(data: str) -> ScanReset:
    # Imported when a reset arrives (rarely): the notifier's module pulls in the Redis
    # client, half a second of start-up the command line would pay on every run.
    from notifier.reset import ScanReset

    return msgspec.json.decode(data, type=ScanReset)


class Resumable:
    """Where an event stream stands: its URL, the last id seen, the server's retry delay."""

    def __init__(self, url: str, last_event_id: str | None) -> None:
        self.url = url
        self.last_event_id = last_event_id
        self.delay_s = 1.0

    def headers(self) -> dict[str, str]:
        """The request's headers: ``Last-Event-ID`` once an id was seen."""
        return {"last-event-id": self.last_event_id} if self.last_event_id is not None else {}

    async def read(self, source: EventSource) -> AsyncIterator[ServerSentEvent]:
        """The events of one connection, until it ends or the server says reconnect."""
        try:
            async for message in source.aiter_sse():
                self.last_event_id = message.id or self.last_event_id
                if message.retry is not None:
                    self.delay_s = max(0, message.retry) / 1000
                if not message.data:
                    continue  # an id, a retry delay or a ping: nothing to dispatch
                if message.event == "reconnect":
                    return
                yield message
        except SSEError as exc:  # a 2xx that is not an event stream: not the notifier
            raise errors.UnexpectedAnswer(f"{source.response.url}: {exc}") from exc


def scan_item(message: ServerSentEvent) -> ScanEvent | ScanReset | None:
    """A scan stream's message as the client yields it (None: not one of its events)."""
    if message.event in _EVENT_TYPES:
        return _event.decode(message.data)
    if message.event == "reset":
        return _decode_reset(message.data)
    return None


def batch_item(message: ServerSentEvent) -> BatchEvent | ScanEvent | None:
    """A batch stream's message: its progress and end, or one of its scans' terminal events."""
    if message.event in ("batch", "batch.completed"):
        return _batch_event.decode(message.data)
    if message.event in _EVENT_TYPES:
        return _event.decode(message.data)
    return None


def ends_scan(item: ScanEvent | ScanReset) -> bool:
    """Whether nothing can follow ``item`` on its scan's stream."""
    state = item.type if isinstance(item, ScanEvent) else item.state
    return state in TERMINAL_STATES
