"""Server-Sent Events read off an httpx response, field by field as the HTML spec says.

Small on purpose: the notifier's streams need only ``id``, ``event``, ``data`` and
``retry``, and the client must see id-only blocks (the notifier's pings move the
resume point) that EventSource-style libraries fold away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import msgspec

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


@dataclass(frozen=True, slots=True)
class Message:
    """One block: an event when ``data`` is set, else only a new id or retry delay."""

    id: str | None
    event: str
    data: str | None
    retry_ms: int | None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Every block of ``response`` until the server ends the stream."""
    event_id: str | None = None
    event = ""
    data: list[str] = []
    retry_ms: int | None = None
    touched = False
    async for line in response.aiter_lines():
        if not line:
            if touched:
                yield Message(
                    event_id, event or "message", "\n".join(data) if data else None, retry_ms
                )
            event, data, retry_ms, touched = "", [], None, False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        touched = True
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry_ms = int(value)


class Resumable:
    """Where an event stream stands: its URL, the last id seen, the server's retry delay."""

    def __init__(self, url: str, last_event_id: str | None) -> None:
        self.url = url
        self.last_event_id = last_event_id
        self.delay_s = 1.0

    def headers(self) -> dict[str, str]:
        """The request's headers: ``Last-Event-ID`` once an id was seen."""
        headers = {"accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["last-event-id"] = self.last_event_id
        return headers

    async def read(self, response: httpx.Response) -> AsyncIterator[Message]:
        """The events of one connection, until it ends or the server says reconnect."""
        async for message in messages(response):
            self.last_event_id = message.id or self.last_event_id
            if message.retry_ms is not None:
                self.delay_s = message.retry_ms / 1000
            if message.data is None:
                continue
            if message.event == "reconnect":
                return
            yield message


def scan_item(message: Message) -> ScanEvent | ScanReset | None:
    """A scan stream's message as the client yields it (None: not one of its events)."""
    if message.data is None:
        return None
    if message.event in _EVENT_TYPES:
        return _event.decode(message.data)
    if message.event == "reset":
        return _decode_reset(message.data)
    return None


def batch_item(message: Message) -> BatchEvent | ScanEvent | None:
    """A batch stream's message: its progress and end, or one of its scans' terminal events."""
    if message.data is None:
        return None
    if message.event in ("batch", "batch.completed"):
        return _batch_event.decode(message.data)
    if message.event in _EVENT_TYPES:
        return _event.decode(message.data)
    return None


def ends_scan(item: ScanEvent | ScanReset) -> bool:
    """Whether nothing can follow ``item`` on its scan's stream."""
    state = item.type if isinstance(item, ScanEvent) else item.state
    return state in TERMINAL_STATES
