"""A small Server-Sent Events client for tests, parsing the wire format per the HTML spec."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Message:
    """One SSE message block (an event, a retry-only block or a comment)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def _field(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if sep and value.startswith(" "):
        value = value[1:]
    return name, value


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Parse ``response``'s body into message blocks until the stream ends."""
    current = Message()
    data: list[str] = []
    touched = False
    async for line in response.aiter_lines():
        if line == "":
            if touched:
                current.data = "\n".join(data) if data else None
                yield current
            current, data, touched = Message(), [], False
            continue
        touched = True
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, value = _field(line)
        if name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


class EventStream:
    """An open SSE response with helpers to read its messages."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.all: list[Message] = []
        self._it = messages(response)

    async def next_message(self, within: float = 5.0) -> Message | None:
        """The next block of any kind; None when the server ended the stream."""
        try:
            async with asyncio.timeout(within):
                message = await anext(self._it)
        except StopAsyncIteration:
            return None
        self.all.append(message)
        return message

    async def next_event(self, within: float = 5.0) -> Message | None:
        """The next message carrying data (what EventSource dispatches); None at the end."""
        while (message := await self.next_message(within)) is not None:
            if message.data is not None:
                return message
        return None

    async def events(self, count: int, within: float = 5.0) -> list[Message]:
        """Exactly ``count`` more events (fails if the stream ends first)."""
        got: list[Message] = []
        for _ in range(count):
            event = await self.next_event(within)
            assert event is not None, f"stream ended after {len(got)} of {count} events"
            got.append(event)
        return got

    async def rest(self, within: float = 10.0) -> list[Message]:
        """Every remaining event until the server ends the stream."""
        got: list[Message] = []
        async with asyncio.timeout(within):
            while (event := await self.next_event(within)) is not None:
                got.append(event)
        return got


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    scan_id: str,
    last_event_id: str | None = None,
    *,
    query_id: str | None = None,
) -> AsyncIterator[EventStream]:
    """GET the scan's event stream; the response is closed when the block exits."""
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    params = {"last_event_id": query_id} if query_id is not None else None
    url = f"/api/scans/{scan_id}/events"
    async with client.stream("GET", url, headers=headers, params=params) as response:
        yield EventStream(response)


@contextlib.asynccontextmanager
async def open_batch_stream(
    client: httpx.AsyncClient,
    batch_id: str,
    last_event_id: str | None = None,
    *,
    token: str | None = None,
) -> AsyncIterator[EventStream]:
    """GET a batch's event stream; the response is closed when the block exits."""
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    params = {"token": token} if token is not None else None
    url = f"/api/batches/{batch_id}/events"
    async with client.stream("GET", url, headers=headers, params=params) as response:
        yield EventStream(response)
