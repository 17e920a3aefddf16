"""``event: reset``: the current state, for a client whose resume point fell off the history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import msgspec
import structlog

from notifier.events import frame
from notifier.history import Kept
from notifier.position import encode_position
from shared.connection import RedisClient
from shared.events import QUEUED
from shared.keys import Keys
from shared.record import latest_event
from shared.replies import text

log = structlog.get_logger("notifier")

REASON = "history_trimmed"
FOLD_PAGE = 1_000
FOLD_MAX_PAGES = 500  # EVENTS_MAXLEN (100k by default) fits many times over; a bound, not a cap

_encode = msgspec.json.Encoder().encode


class ScanProgress(msgspec.Struct, frozen=True):
    """A scan's progress bar as its hash holds it."""

    stage: str
    percentage: int
    message: str


class ScanReset(msgspec.Struct, frozen=True):
    """The data of a per-scan ``reset`` event."""

    scan_id: str
    state: str | None
    progress: ScanProgress
    attempts: int
    reason: str = REASON


class ScanSnapshot:
    """A scan's hash and its history's retained range, read in one MULTI (so they agree)."""

    __slots__ = ("attempts", "kept", "message", "pct", "scan_id", "stage", "state")

    def __init__(self, scan_id: str, fields: list[Any], kept: Kept, last: Any) -> None:
        state, attempts = fields
        event = latest_event([last] if last else None)
        progress = event.progress if event is not None else QUEUED
        self.scan_id = scan_id
        self.state = text(state)
        self.stage = progress.stage
        self.pct = progress.percentage
        self.message = progress.message
        self.attempts = int(attempts or 0)
        self.kept = kept

    def reset_frame(self) -> bytes:
        """The ``reset`` event; its id is the history's newest, where the client resumes."""
        body = ScanReset(
            scan_id=self.scan_id,
            state=self.state,
            attempts=self.attempts,
            progress=ScanProgress(stage=self.stage, percentage=self.pct, message=self.message),
        )
        return frame(_encode(body), event="reset", id=self.kept.last)


async def scan_snapshot(redis: RedisClient, keys: Keys, scan_id: str) -> ScanSnapshot:
    """The scan's state and history range at one instant (Lua writes both together)."""
    pipe = redis.pipeline(transaction=True)
    pipe.hmget(keys.scan(scan_id), ["state", "attempts"])
    pipe.xinfo_stream(keys.scan_events(scan_id))
    fields, info = await pipe.execute(raise_on_error=False)
    if isinstance(fields, Exception):
        raise fields
    if isinstance(info, Exception) and "no such key" not in str(info).lower():
        raise info
    last = info.get("last-entry") if isinstance(info, dict) else None
    return ScanSnapshot(scan_id, fields, Kept(info), last)


async def tenant_reset(
    redis: RedisClient, streams: list[str], tenant: str, until: list[str]
) -> bytes:
    """Every scan of ``tenant`` still on the events streams, as its latest event up to
    ``until`` (one id per partition's stream).

    The fold reads each retained stream once (bounded); entries after ``until``
    reach the client live, so the snapshot plus what follows has no gap. A scan's
    events are all in its own partition, so the folds do not overlap.
    """
    wanted = tenant.encode()
    latest: dict[bytes, bytes] = {}
    for stream, end in zip(streams, until, strict=True):
        start = "-"
        for _ in range(FOLD_MAX_PAGES):
            entries: Any = await redis.xrange(stream, min=start, max=end, count=FOLD_PAGE)
            for _id, fields in entries:
                if fields.get(b"tenant") == wanted and b"event" in fields:
                    scan = fields.get(b"scan_id", b"")
                    latest.pop(scan, None)  # re-inserted: ordered by latest event
                    latest[scan] = fields[b"event"]
            if len(entries) < FOLD_PAGE:
                break
            start = "(" + entries[-1][0].decode("ascii")
            await asyncio.sleep(0)  # a long fold must not stall every other connection
    head = _encode({"tenant": tenant, "reason": REASON})[:-1]
    body = head + b',"scans":[' + b",".join(_valid(latest.values())) + b"]}"
    return frame(body, event="reset", id=encode_position(until))


def _valid(events: Iterable[bytes]) -> list[bytes]:
    # Spliced verbatim into the reset's JSON, so one malformed entry must not corrupt it.
    good = []
    for raw in events:
        try:
            msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            log.warning("skipping malformed event in a reset", error=str(exc))
            continue
        good.append(raw)
    return good
