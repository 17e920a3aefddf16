"""Sync and async clients for the gateway's API and the notifier's event streams.

Each operation of the API is described once, in ``labelscan.api``: the request it
sends and the struct its answer decodes to. ``Operation`` makes it a method of both
clients, which differ only in how they send: ``Client`` with ``httpx.Client``,
``AsyncClient`` with ``httpx.AsyncClient`` (its methods are coroutine functions).
Only what waits between requests is written for each: ``wait()``'s polls, and the
async client's event streams. Answers are the services' own msgspec structs, and
every refusal is raised as a typed ``ApiError`` with the API's ``error``, ``detail``
and ``field``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, get_args, overload

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from labelscan import api, errors
from labelscan.api import Image
from labelscan.sse import Resumable, batch_item, ends_scan, scan_item
from shared.schemas import BatchEvent, ScanDetail, ScanEvent

if TYPE_CHECKING:
    from notifier.reset import ScanReset

__all__ = ["AsyncClient", "Client", "Image"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


class Operation(Generic[P, T]):
    """A method of both clients made from one operation of ``labelscan.api``: it takes
    the operation's parameters and returns (``Client``) or awaits (``AsyncClient``) the
    struct its answer decodes to."""

    def __init__(self, build: Callable[P, api.Request[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        # What help() and inspect show: the operation's parameters and its answer's type.
        signature = inspect.signature(build, eval_str=True)
        answer = get_args(signature.return_annotation)[0]
        self.signature = signature.replace(return_annotation=answer)

    @overload
    def __get__(self, client: None, owner: type[object] | None = None) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[object] | None = None) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncClient, owner: type[object] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(
        self, client: Client | AsyncClient | None, owner: type[object] | None = None
    ) -> Self | Callable[P, T] | Callable[P, Coroutine[Any, Any, T]]:
        if client is None:
            return self
        # One branch per client, as each client's _method has its own return type.
        if isinstance(client, AsyncClient):
            return self._dress(client._method(self.build))
        return self._dress(client._method(self.build))

    @overload
    def __call__(self, client: Client, /, *args: P.args, **kwargs: P.kwargs) -> T: ...
    @overload
    def __call__(
        self, client: AsyncClient, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]: ...
    def __call__(
        self, client: Client | AsyncClient, /, *args: P.args, **kwargs: P.kwargs
    ) -> T | Coroutine[Any, Any, T]:
        """Called on the class (``Client.get(client, scan_id)``), as a method can be."""
        return self.__get__(client)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<operation {self.build.__name__}{self.signature}>"

    def _dress(self, method: F) -> F:
        """``method`` named, documented and signed as the operation, for help() and inspect."""
        functools.update_wrapper(method, self.build)
        vars(method)["__signature__"] = self.signature  # inspect reads it before __wrapped__
        return method


class _Operations:
    """The API's one-request operations: the same methods on both clients, each made
    from its function in ``labelscan.api`` (parameters, docstring, answer's type)."""

    scan = Operation(api.scan)
    batch = Operation(api.batch)
    get = Operation(api.get)
    status = Operation(api.status)
    cancel = Operation(api.cancel)
    retry = Operation(api.retry)
    batch_status = Operation(api.batch_status)
    cancel_batch = Operation(api.cancel_batch)
    retry_batch = Operation(api.retry_batch)
    stats = Operation(api.stats)
    dead_letters = Operation(api.dead_letters)


class AsyncClient(_Operations):
    """The API from asyncio code: ``async with AsyncClient(url, api_key) as client: ...``."""

    events_link = Operation(api.events_link)

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(**api.http_args(url, api_key, timeout), transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, request: api.Request[T]) -> T:
        sent = request.build(self._http)
        with api.reaching(sent):
            return api.decode(await self._http.send(sent), request.answer)

    def _method(self, build: Callable[P, api.Request[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self._send(build(*args, **kwargs))

        return method

    # The deadline also shortens the last long poll's `wait=`, which asyncio.timeout cannot.
    async def wait(self, scan_id: str, timeout: float | None = None) -> ScanDetail:  # noqa: ASYNC109
        """The scan once finished: long polls, or polls with backoff if the API answers at once."""
        polls = api.LongPolls(scan_id, timeout)
        while True:
            detail = await self._send(polls.request())
            pause = polls.pause_after(detail)
            if pause is None:
                return detail
            await asyncio.sleep(pause)

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


class Client(_Operations):
    """The API from plain code: ``with Client(url, api_key) as client: ...``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(**api.http_args(url, api_key, timeout), transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, request: api.Request[T]) -> T:
        sent = request.build(self._http)
        with api.reaching(sent):
            return api.decode(self._http.send(sent), request.answer)

    def _method(self, build: Callable[P, api.Request[T]]) -> Callable[P, T]:
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return self._send(build(*args, **kwargs))

        return method

    def wait(self, scan_id: str, timeout: float | None = None) -> ScanDetail:
        """The scan once finished: long polls, or polls with backoff if the API answers at once."""
        polls = api.LongPolls(scan_id, timeout)
        while True:
            detail = self._send(polls.request())
            pause = polls.pause_after(detail)
            if pause is None:
                return detail
            time.sleep(pause)
