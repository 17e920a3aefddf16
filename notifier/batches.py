"""A batch's events as SSE: its scans' ends and its progress, resumable by Last-Event-ID.

The batch's own stream holds every entry it ever had (it is not trimmed; a batch
adds about two per scan), and each entry is also on its partition's events
stream under the same id, named by ``batch_id``, so the hub routes it to the
batch's subscribers like a scan's. The stream ends after ``batch.completed``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from notifier import metrics
from notifier.access import check_batch
from notifier.events import PING, StreamEvent, reconnect_frame
from notifier.history import replay
from notifier.hub import StreamLimitError
from notifier.inbox import Subscription
from notifier.sse import EventStream
from notifier.stream import UNAVAILABLE, Source, end_frame
from shared.http.errors import ApiError, not_found
from shared.settings import Settings
from shared.store import is_scan_id
from shared.streamids import StreamId, parse_stream_id

log = structlog.get_logger("notifier")

END = "batch.completed"


def _after(request: Request) -> str | None:
    after = (
        request.headers.get("last-event-id", "").strip()
        or request.query_params.get("last_event_id", "").strip()
        or None
    )
    if after is not None and parse_stream_id(after) is None:
        raise ApiError(
            400,
            "bad_request",
            "Last-Event-ID must be an event id like 1700000000000-0 (ASCII digits)",
            "Last-Event-ID",
        )
    return after


async def stream_batch(
    request: Request, *, come_back: Callable[[Request, str], Response]
) -> Response | EventStream:
    """``GET /api/batches/{batch_id}/events``: the history after Last-Event-ID, then live.

    ``come_back``: the app's answer for "not now" (EventSource gets a 200 saying reconnect).
    """
    batch_id: str = request.path_params["batch_id"]
    if not is_scan_id(batch_id):
        raise not_found("batch")
    src: Source = request.state.source
    settings: Settings = request.state.settings
    part = src.keys.of_scan(batch_id)
    raw: Any = await src.redis.hmget(part.batch(batch_id), ["tenant", "total", "finished_ms"])
    tenant, total, finished = raw
    if total is None:
        raise not_found("batch")
    await check_batch(settings, request, batch_id, tenant.decode())
    after = _after(request)
    if src.hub.draining:
        return come_back(request, "shutting down; reconnect")
    if finished is not None and after is not None:
        newer: Any = await src.redis.xrange(part.batch_events(batch_id), min="(" + after, count=1)
        if not newer:
            return Response(status_code=204)  # seen to the end: EventSource stops
    try:
        sub = src.hub.subscribe(batch_id, tenant.decode())
    except StreamLimitError as exc:
        raise ApiError(
            429, "too_many_streams", f"{exc}; close one first", "token", {"retry-after": "5"}
        ) from None
    return EventStream(src.hub, sub, batch_stream(src, sub, batch_id, after), src.retry_ms)


async def batch_stream(
    src: Source, sub: Subscription, batch_id: str, after: str | None
) -> AsyncGenerator[bytes, None]:
    """Entries of the batch's stream after ``after``; live ones until ``batch.completed``."""
    last = parse_stream_id(after) if after is not None else None
    part = src.keys.of_scan(batch_id)
    try:
        await src.hub.wait_ready()
        if sub.ended:
            yield end_frame(sub.reason, src.retry_ms)
            return
        # Read before the history: a finished batch's history already holds its end.
        finished = await src.redis.hget(part.batch(batch_id), "finished_ms") is not None
        ended = False
        async for page in replay(src.redis, part.batch_events(batch_id), after):
            if sub.ended:
                return  # overflowed or shutting down: the client resumes by id
            metrics.replayed(len(page))
            last = page[-1].key
            # The batch may have ended since it was read as running: then its end is the
            # history's last entry, and the live copy would be skipped as already sent.
            ended = page[-1].type == END
            yield b"".join(event.wire for event in page)
        if finished or ended:
            return
        async for chunk in _live(src, sub, last):
            yield chunk
    except RedisError as exc:
        log.warning("batch stream ended by a redis error", batch_id=batch_id, error=str(exc))
        yield reconnect_frame(UNAVAILABLE)


async def _live(
    src: Source, sub: Subscription, last: StreamId | None
) -> AsyncGenerator[bytes, None]:
    while not sub.ended:
        events, ping = await sub.batch()
        sent: list[StreamEvent] = []
        for event in events:
            if last is not None and event.key <= last:
                continue
            sent.append(event)
            last = event.key
            if event.type == END:
                metrics.delivered(sent)
                yield b"".join(e.wire for e in sent)
                return
        out = [e.wire for e in sent] + ([PING] if ping else [])
        if out:
            metrics.delivered(sent)
            yield b"".join(out)
    if tail := end_frame(sub.reason, src.retry_ms):
        yield tail
