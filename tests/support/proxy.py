"""A TCP proxy on loopback whose connections a test can cut, to drop a stream for real."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

from shared.embedded import free_port

_REQUEST_LINE = re.compile(rb"[A-Z]+ /\S* HTTP/1\.[01]\r\n")


class CuttableProxy:
    """Forwards every connection to ``target_port``; ``cut()`` aborts the open ones (an RST)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.requests: list[bytes] = []
        """Each request head the clients sent (with what followed it in its chunk), in order."""
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Abort every open connection, both sides; how many there were."""
        cut = len(self._open)
        for writer in list(self._open):
            writer.transport.abort()
        return cut

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, outbound: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                # A request head starts a chunk: the first on a connection, or the next one
                # on a connection kept alive after an answer (EventSource reuses them).
                if outbound and _REQUEST_LINE.match(data):
                    self.requests.append(data)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._open.update((client_w, upstream_w))
        try:
            await asyncio.gather(
                self._pipe(client_r, upstream_w, True), self._pipe(upstream_r, client_w, False)
            )
        finally:
            self._open.difference_update((client_w, upstream_w))

    async def start(self) -> None:
        """Listen."""

        def spawn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._handle(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._server = await asyncio.start_server(spawn, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and drop whatever is still open."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def cuttable_proxy(target_port: int) -> AsyncIterator[CuttableProxy]:
    """A proxy to ``target_port`` for the block."""
    proxy = CuttableProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
