"""Server-Sent Events read off an httpx response, field by field as the HTML spec says.

Small on purpose: the notifier's streams need only ``id``, ``event``, ``data`` and
``retry``, and the client must see id-only blocks (the notifier's pings move the
resume point) that EventSource-style libraries fold away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


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
