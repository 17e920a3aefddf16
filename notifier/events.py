"""Stream entry ids and the events the notifier forwards, decoded once."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from shared.schemas import TERMINAL_STATES

StreamId = tuple[int, int]

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_U64_MAX = 2**64 - 1


class _Head(msgspec.Struct):
    """The only field of a stored event the notifier needs to look at."""

    type: str


_decode_head = msgspec.json.Decoder(_Head).decode


def parse_stream_id(raw: str) -> StreamId | None:
    """``"<ms>-<seq>"`` as an orderable tuple; None unless it is a full, valid entry id."""
    match = _ID.match(raw)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64_MAX or seq > _U64_MAX:
        return None
    return ms, seq


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One scan event: its entry id (the SSE id), its type and its JSON as stored."""

    id: str
    key: StreamId
    type: str
    data: str

    @property
    def terminal(self) -> bool:
        """Whether nothing can follow this event for its scan."""
        return self.type in TERMINAL_STATES


def decode_event(entry_id: bytes, payload: bytes | None) -> StreamEvent:
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
    return StreamEvent(id=sid, key=key, type=head.type, data=data)
