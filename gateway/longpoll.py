"""Status and result answers that carry an ``ETag``, answer ``304``, and can wait (``?wait=``).

``GET /api/scans/{id}?wait=N`` (and ``/status``) answers as soon as the scan has
ended, or after N seconds (at most SCAN_WAIT_LIMIT, 60 by default) with the document
as it is then. With ``If-None-Match`` it waits instead until the document differs from that ETag
(a progress long-poll), and answers ``304`` if it never does. The wait costs no
Redis call: see :mod:`gateway.waiters`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.waiters import ScanWaiters, TooManyWaitersError
from shared.http.errors import ApiError
from shared.schemas import TERMINAL_STATES, ScanStatus

_WAIT = re.compile(r"[0-9]{1,2}")
_encode = msgspec.json.Encoder().encode

# Private to the caller, and to be revalidated on every use: a client may keep the body
# with its ETag and ask again with If-None-Match, no shared cache may keep it at all.
CACHING = {"cache-control": "private, no-cache", "x-content-type-options": "nosniff"}

Load = Callable[[], Awaitable[ScanStatus]]
"""Reads the scan's document now (raises the 404 when it is gone)."""


def parse_wait(request: Request, limit_s: int) -> int | None:
    """The ``wait`` query parameter in seconds (0..limit_s), None if absent; ApiError 400 if bad."""
    raw = request.query_params.get("wait")
    if raw is None:
        return None
    if _WAIT.fullmatch(raw) is None or int(raw) > limit_s:
        raise ApiError(
            400,
            "invalid_parameter",
            f"wait must be whole seconds from 0 to {limit_s}",
            "wait",
        )
    return int(raw)


def etag_of(body: bytes) -> str:
    """A strong ETag of a response body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def none_match(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match: header`` names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if header is None:
        return False
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class _Doc:
    __slots__ = ("body", "etag", "finished")

    def __init__(self, document: ScanStatus) -> None:
        self.body = _encode(document)
        self.etag = etag_of(self.body)
        self.finished = document.state in TERMINAL_STATES


async def answer(request: Request, scan_id: str, load: Load) -> Response:
    """The scan's document, conditional on ``If-None-Match``, after ``?wait=`` if asked."""
    wait_s = parse_wait(request, request.state.settings.scan_wait_limit_s)
    seen = request.headers.get("if-none-match")
    doc = _Doc(await load())
    if wait_s and not _settled(doc, seen):
        doc = await _wait(request.state.waiters, scan_id, load, seen=seen, wait_s=wait_s, doc=doc)
    if none_match(seen, doc.etag):
        return Response(status_code=304, headers={**CACHING, "etag": doc.etag})
    return Response(doc.body, media_type="application/json", headers={**CACHING, "etag": doc.etag})


def _settled(doc: _Doc, seen: str | None) -> bool:
    """Nothing to wait for: the scan has ended, or differs from the version the client has."""
    return doc.finished or (seen is not None and not none_match(seen, doc.etag))


async def _wait(
    waiters: ScanWaiters, scan_id: str, load: Load, *, seen: str | None, wait_s: int, doc: _Doc
) -> _Doc:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    if waiters.draining:
        return doc  # the process is stopping: the client asks again, maybe elsewhere
    try:
        async with waiters.watch(scan_id) as watch:
            if not await watch.ready(deadline):
                return doc
            while True:
                # Cleared before reading: an event from here on wakes the next wait.
                watch.changed.clear()
                doc = _Doc(await load())
                if _settled(doc, seen) or waiters.draining:
                    return doc
                if not await watch.next_change(deadline):
                    return doc
    except TooManyWaitersError:
        raise ApiError(
            503,
            "too_many_waiters",
            "this gateway holds its maximum of waiting requests; retry shortly",
            "wait",
            {"retry-after": "1"},
        ) from None
