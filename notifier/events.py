"""The events the notifier forwards (decoded once), and SSE wire frames."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from shared.schemas import TERMINAL_STATES
from shared.streamids import StreamId, parse_stream_id

_TYPE = re.compile(r"^[A-Za-z_][A-Za-z_.]{0,31}$")  # "batch.completed" too
_LINES = re.compile(r"\r\n|\r|\n")  # SSE's line ends only; str.splitlines knows more
_encode = msgspec.json.Encoder().encode

PING = b": ping\n\n"


class _Head(msgspec.Struct):
    """The only field of a stored event the notifier needs to look at."""

    type: str


_decode_head = msgspec.json.Decoder(_Head).decode


def frame(data: str | bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE message block; multi-line data becomes several ``data:`` lines, as the spec says."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    head = (f"id: {id}\n" if id is not None else "") + (
        f"event: {event}\n" if event is not None else ""
    )
    body = "".join(f"data: {line}\n" for line in _LINES.split(text))
    return f"{head}{body}\n".encode()


def retry_frame(retry_ms: int) -> bytes:
    """Set the client's reconnection delay."""
    return f"retry: {retry_ms}\n\n".encode()


def id_ping(last_id: str) -> bytes:
    """A heartbeat that also moves the client's Last-Event-ID (no event is dispatched)."""
    return f": ping\nid: {last_id}\n\n".encode()


def reconnect_frame(reason: str, retry_ms: int | None = None) -> bytes:
    """Why the server ends the stream; EventSource then reconnects with Last-Event-ID."""
    head = retry_frame(retry_ms)[:-1] if retry_ms is not None else b""
    return head + frame(_encode({"reason": reason}), event="reconnect")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One scan event: its entry id (the SSE id), type, stored JSON and ready-made SSE frame."""

    id: str
    key: StreamId
    type: str
    data: str
    wire: bytes
    partition: int = 0
    """Which partition's stream it came from (tenant streams track one id per partition)."""

    @property
    def terminal(self) -> bool:
        """Whether nothing can follow this event for its scan."""
        return self.type in TERMINAL_STATES


def decode_event(entry_id: bytes, payload: bytes | None, partition: int = 0) -> StreamEvent:
    """Build a StreamEvent from an entry; raises ValueError when the entry is malformed."""
    sid = entry_id.decode("ascii")
    key = parse_stream_id(sid)
    if key is None:
        raise ValueError(f"not a stream id: {sid!r}")
    if payload is None:
        raise ValueError("entry has no 'event' field")
    try:
        head = _decode_head(payload)
        data = payload.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"event is not valid JSON: {exc}") from exc
    if not _TYPE.match(head.type):
        raise ValueError(f"event type is not a name: {head.type!r}")
    # Encoded once here, shared by every connection the event goes to.
    return StreamEvent(
        id=sid,
        key=key,
        type=head.type,
        data=data,
        wire=frame(data, event=head.type, id=sid),
        partition=partition,
    )
