"""Redis stream entry ids (``<ms>-<seq>``) read from a client or a reply, as orderable tuples."""

from __future__ import annotations

import re

StreamId = tuple[int, int]

# ASCII digits only, matched whole: "\d" and str.isdigit() also take "²" and Arabic-Indic
# digits, which int() reads but Redis refuses, and "$" would let a trailing newline through.
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64_MAX = 2**64 - 1  # Redis parses each half as an unsigned 64-bit integer


def parse_stream_id(raw: str) -> StreamId | None:
    """``"<ms>-<seq>"`` as ``(ms, seq)``; None unless it is a full entry id Redis would accept."""
    match = _ID.fullmatch(raw)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64_MAX or seq > _U64_MAX:
        return None
    return ms, seq
