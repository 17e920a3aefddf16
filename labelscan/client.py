"""Sync and async clients for the gateway's API and the notifier's event streams.

Both clients build the same requests and decode the same answers (``labelscan.api``);
they differ only in how they send them. Answers are the services' own msgspec
structs, and every refusal is raised as a typed ``ApiError`` with the API's
``error``, ``detail`` and ``field``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from labelscan import errors
from labelscan.api import Image, LongPolls, Requests, decode, default_name, http_args
from labelscan.sse import Resumable, batch_item, ends_scan, scan_item
from shared.schemas import (
    BatchAccepted,
    BatchCancelled,
    BatchEvent,
    BatchRetried,
    BatchStatus,
    CancelResult,
    DeadLetters,
    EventsLink,
    QueueStats,
    ScanAccepted,
    ScanDetail,
    ScanEvent,
    ScanStatus,
)

if TYPE_CHECKING:
    from notifier.reset import ScanReset

__all__ = ["AsyncClient", "Client", "Image"]

T = TypeVar("T")


class AsyncClient:
    """The API from asyncio code: ``async with AsyncClient(url, api_key) as client: ...``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(**http_args(url, api_key, timeout), transport=transport)
        self._build = Requests(self._http)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, request: httpx.Request, into: type[T]) -> T:
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise errors.ConnectionLost(f"{request.url}: {exc!r}") from exc
        return decode(response, into)

    async def scan(
        self,
        image: Image,
        *,
        category: str,
        marketplaces: Sequence[str],
        product_name: str | None = None,
        priority: str = "normal",
        idempotency_key: str | None = None,
    ) -> ScanAccepted:
        """Submit one label (a path, bytes or URL); answers at once with its id and links."""
        name = product_name or default_name(image)
        request = self._build.scan(
            image,
            category=category,
            marketplaces=marketplaces,
            product_name=name,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return await self._send(request, ScanAccepted)

    async def batch(
        self,
        images: Sequence[Image],
        *,
        category: str,
        marketplaces: Sequence[str],
        product_names: Sequence[str] | None = None,
        priority: str = "normal",
        idempotency_key: str | None = None,
    ) -> BatchAccepted:
        """Submit many labels as one batch: all accepted, or none (``errors`` per item)."""
        request = self._build.batch(
            images,
            category=category,
            marketplaces=marketplaces,
            product_names=product_names,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return await self._send(request, BatchAccepted)

    async def get(self, scan_id: str) -> ScanDetail:
        """The scan's state, progress and, once finished, its result or error."""
        return await self._send(self._build.get(f"/api/scans/{scan_id}"), ScanDetail)

    async def status(self, scan_id: str) -> ScanStatus:
        """The scan's state and progress, without the result."""
        return await self._send(self._build.get(f"/api/scans/{scan_id}/status"), ScanStatus)

    # The deadline also shortens the last long poll's `wait=`, which asyncio.timeout cannot.
    async def wait(self, scan_id: str, timeout: float | None = None) -> ScanDetail:  # noqa: ASYNC109
        """The scan once finished: long polls, or polls with backoff if the API answers at once."""
        polls = LongPolls(scan_id, timeout)
        while True:
            detail = await self._send(polls.request(self._build), ScanDetail)
            pause = polls.pause_after(detail)
            if pause is None:
                return detail
            await asyncio.sleep(pause)

    async def events_link(self, scan_id: str) -> EventsLink:
        """A fresh token and URL for the scan's event stream."""
        return await self._send(self._build.get(f"/api/scans/{scan_id}/events-url"), EventsLink)

    async def _follow(
        self,
        stream: Resumable,
        relink: Callable[[], Awaitable[str]] | None,
        max_failures: int,
        what: str,
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """Every event of ``stream``, reconnecting from the last id seen until the server
        says it is over (``204``); ``relink`` gives a fresh URL for a refused token."""
        failures = 0
        while True:
            pause = min(stream.delay_s, 5.0)
            try:
                async with aconnect_sse(
                    self._http, "GET", stream.url, headers=stream.headers()
                ) as source:
                    answer = source.response
                    if answer.status_code == 204:  # the notifier says we have seen the end
                        return
                    if answer.status_code in (401, 403) and relink is not None:
                        failures += 1  # the token expired: a fresh one
                        stream.url = await relink()
                    elif not answer.is_success:
                        await answer.aread()
                        raise errors.from_response(answer)
                    else:
                        failures = 0
                        async for message in stream.read(source):
                            yield message
            except (httpx.TransportError, errors.ServerError, errors.RateLimited) as exc:
                failures += 1
                if isinstance(exc, errors.ApiError) and exc.retry_after is not None:
                    pause = max(pause, exc.retry_after)
            if failures > max_failures:
                raise errors.ConnectionLost(f"{what}: {failures} failed connections in a row")
            # The server's `retry:` delay, longer after repeated failures.
            await asyncio.sleep(pause * min(failures + 1, 4))

    async def events(
        self,
        scan_id: str,
        *,
        events_url: str | None = None,
        last_event_id: str | None = None,
        max_failures: int = 10,
    ) -> AsyncIterator[ScanEvent | ScanReset]:
        """The scan's events, history first, until its terminal one.

        A dropped connection is resumed from the last event id seen (``Last-Event-ID``),
        so nothing is missed or repeated; an expired token is renewed. A ``ScanReset``
        stands for events the notifier no longer holds. After ``max_failures`` failed
        connections in a row it raises ``ConnectionLost``.
        """

        async def relink() -> str:
            return (await self.events_link(scan_id)).events_url

        url = events_url or await relink()
        follow = self._follow(Resumable(url, last_event_id), relink, max_failures, scan_id)
        async with contextlib.aclosing(follow) as messages:
            async for message in messages:
                item = scan_item(message)
                if item is not None:
                    yield item
                    if ends_scan(item):
                        return

    async def batch_events(
        self, events_url: str, *, last_event_id: str | None = None, max_failures: int = 10
    ) -> AsyncIterator[BatchEvent | ScanEvent]:
        """A batch's events (``events_url`` of ``batch()``), resumed after drops: its
        progress (``batch``), each scan's terminal event, and last ``batch.completed``."""
        follow = self._follow(Resumable(events_url, last_event_id), None, max_failures, "batch")
        async with contextlib.aclosing(follow) as messages:
            async for message in messages:
                item = batch_item(message)
                if item is not None:
                    yield item
                    if isinstance(item, BatchEvent) and item.type == "batch.completed":
                        return

    async def batch_status(self, batch_id: str, cursor: str | None = None) -> BatchStatus:
        """The batch's counts per state, progress, a page of scan ids, and its aggregate."""
        params: dict[str, str | int] = {"cursor": cursor} if cursor else {}
        return await self._send(self._build.get(f"/api/batches/{batch_id}", **params), BatchStatus)

    async def cancel_batch(self, batch_id: str) -> BatchCancelled:
        """Cancel every scan of the batch that has not finished."""
        request = self._build.send("DELETE", f"/api/batches/{batch_id}")
        return await self._send(request, BatchCancelled)

    async def retry_batch(self, batch_id: str) -> BatchRetried:
        """Replay the batch's failed scans (the ids of those queued again)."""
        request = self._build.send("POST", f"/api/batches/{batch_id}/retry")
        return await self._send(request, BatchRetried)

    async def cancel(self, scan_id: str) -> CancelResult:
        """Cancel a scan that has not finished (``ConflictError`` once it has)."""
        return await self._send(self._build.send("DELETE", f"/api/scans/{scan_id}"), CancelResult)

    async def retry(self, scan_id: str) -> ScanAccepted:
        """Replay a failed scan (also how a dead letter is retried)."""
        request = self._build.send("POST", f"/api/scans/{scan_id}/retry")
        return await self._send(request, ScanAccepted)

    async def stats(self) -> QueueStats:
        """The queue's counts (waiting, active, finished, consumers, rate limiter)."""
        return await self._send(self._build.get("/api/queue/stats"), QueueStats)

    async def dead_letters(self, count: int = 50, before: str | None = None) -> DeadLetters:
        """A page of dead letters, newest first; pass its ``next`` as ``before`` for older."""
        params: dict[str, str | int] = {"count": count}
        if before is not None:
            params["before"] = before
        return await self._send(self._build.get("/api/dead", **params), DeadLetters)


class Client:
    """The API from plain code: ``with Client(url, api_key) as client: ...``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**http_args(url, api_key, timeout), transport=transport)
        self._build = Requests(self._http)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, request: httpx.Request, into: type[T]) -> T:
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise errors.ConnectionLost(f"{request.url}: {exc!r}") from exc
        return decode(response, into)

    def scan(
        self,
        image: Image,
        *,
        category: str,
        marketplaces: Sequence[str],
        product_name: str | None = None,
        priority: str = "normal",
        idempotency_key: str | None = None,
    ) -> ScanAccepted:
        """Submit one label (a path, bytes or URL); answers at once with its id and links."""
        name = product_name or default_name(image)
        request = self._build.scan(
            image,
            category=category,
            marketplaces=marketplaces,
            product_name=name,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return self._send(request, ScanAccepted)

    def batch(
        self,
        images: Sequence[Image],
        *,
        category: str,
        marketplaces: Sequence[str],
        product_names: Sequence[str] | None = None,
        priority: str = "normal",
        idempotency_key: str | None = None,
    ) -> BatchAccepted:
        """Submit many labels as one batch: all accepted, or none (``errors`` per item)."""
        request = self._build.batch(
            images,
            category=category,
            marketplaces=marketplaces,
            product_names=product_names,
            priority=priority,
            idempotency_key=idempotency_key,
        )
        return self._send(request, BatchAccepted)

    def get(self, scan_id: str) -> ScanDetail:
        """The scan's state, progress and, once finished, its result or error."""
        return self._send(self._build.get(f"/api/scans/{scan_id}"), ScanDetail)

    def status(self, scan_id: str) -> ScanStatus:
        """The scan's state and progress, without the result."""
        return self._send(self._build.get(f"/api/scans/{scan_id}/status"), ScanStatus)

    def wait(self, scan_id: str, timeout: float | None = None) -> ScanDetail:
        """The scan once finished: long polls, or polls with backoff if the API answers at once."""
        polls = LongPolls(scan_id, timeout)
        while True:
            detail = self._send(polls.request(self._build), ScanDetail)
            pause = polls.pause_after(detail)
            if pause is None:
                return detail
            time.sleep(pause)

    def batch_status(self, batch_id: str, cursor: str | None = None) -> BatchStatus:
        """The batch's counts per state, progress, a page of scan ids, and its aggregate."""
        params: dict[str, str | int] = {"cursor": cursor} if cursor else {}
        return self._send(self._build.get(f"/api/batches/{batch_id}", **params), BatchStatus)

    def cancel_batch(self, batch_id: str) -> BatchCancelled:
        """Cancel every scan of the batch that has not finished."""
        return self._send(self._build.send("DELETE", f"/api/batches/{batch_id}"), BatchCancelled)

    def retry_batch(self, batch_id: str) -> BatchRetried:
        """Replay the batch's failed scans (the ids of those queued again)."""
        request = self._build.send("POST", f"/api/batches/{batch_id}/retry")
        return self._send(request, BatchRetried)

    def cancel(self, scan_id: str) -> CancelResult:
        """Cancel a scan that has not finished (``ConflictError`` once it has)."""
        return self._send(self._build.send("DELETE", f"/api/scans/{scan_id}"), CancelResult)

    def retry(self, scan_id: str) -> ScanAccepted:
        """Replay a failed scan (also how a dead letter is retried)."""
        return self._send(self._build.send("POST", f"/api/scans/{scan_id}/retry"), ScanAccepted)

    def stats(self) -> QueueStats:
        """The queue's counts (waiting, active, finished, consumers, rate limiter)."""
        return self._send(self._build.get("/api/queue/stats"), QueueStats)

    def dead_letters(self, count: int = 50, before: str | None = None) -> DeadLetters:
        """A page of dead letters, newest first; pass its ``next`` as ``before`` for older."""
        params: dict[str, str | int] = {"count": count}
        if before is not None:
            params["before"] = before
        return self._send(self._build.get("/api/dead", **params), DeadLetters)
