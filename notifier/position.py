"""Where a tenant stream stands when events come from several partitions.

A tenant's events are spread over every partition's events stream, whose entry
ids are independent. The resume point of a tenant stream is therefore one id per
partition, ``<id>,<id>,...`` in partition order: each event moves its own
partition's component, so ``Last-Event-ID`` resumes exactly in every partition.
With one partition it is that stream's entry id, as for a scan's stream.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.streamids import StreamId, parse_stream_id

Position = tuple[StreamId, ...]


def encode_position(ids: Sequence[str]) -> str:
    """The SSE id of a position given as entry ids."""
    return ",".join(ids)


def format_position(position: Position) -> str:
    """The SSE id of ``position``."""
    return ",".join(f"{ms}-{seq}" for ms, seq in position)


def parse_position(raw: str, partitions: int) -> Position | None:
    """A position from a client (``Last-Event-ID``); None unless it has one valid id per
    partition (a single id is accepted only with one partition)."""
    parts = raw.split(",")
    if len(parts) != partitions:
        return None
    ids = [parse_stream_id(part) for part in parts]
    if any(i is None for i in ids):
        return None
    return tuple(i for i in ids if i is not None)
