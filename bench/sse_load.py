"""The SSE load generator: N raw-socket EventSource clients in one process (for bench.sse).

``python -m bench.sse_load HOST PORT SCANS_FILE N`` opens N connections, each to
``/api/scans/<id>/events`` of one scan of SCANS_FILE (round robin), and prints
one JSON line when they are all open (or the connect phase timed out). It then
counts events and their delivery latency (publish time in the event's message,
as ``time.time_ns()``, against receipt time) until it reads ``mark`` on stdin
and prints them as a second line. Until ``stop`` it then only watches the
server end its streams (a SIGTERM drain: reconnect frames, closed connections)
and prints that as a third line.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from pathlib import Path

import msgspec

IN_FLIGHT = 500  # connects at once: well under the server's listen backlog
CONNECT_TIMEOUT_S = 90.0
MARK = b'"message":"t'


class Connected(msgspec.Struct, frozen=True, kw_only=True):
    """The connect phase."""

    wanted: int
    open: int
    failed: int
    seconds: float
    per_s: float
    errors: dict[str, int]


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """The measurement phase: every latency in microseconds, and what ended early."""

    events: int
    latencies_us: list[int]
    closed_early: int
    reconnect_frames: int


class Drained(msgspec.Struct, frozen=True, kw_only=True):
    """After ``mark``: how the server ended the streams (on SIGTERM, say)."""

    reconnect_frames: int
    closed: int
    still_open: int


class Client(asyncio.Protocol):
    """One SSE connection: a GET, the status line, then data lines scanned for the mark."""

    __slots__ = ("buf", "closed", "head", "load", "ready", "request", "transport")

    def __init__(self, load: Load, request: bytes) -> None:
        self.load = load
        self.request = request
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = True
        self.buf = b""
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data
        if self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[:end].split(b"\r\n", 1)[0]
            if status.split(b" ")[1:2] != [b"200"] and not self.ready.done():
                self.ready.set_exception(RuntimeError(status.decode(errors="replace")))
                return
            self.head = False
            if not self.ready.done():
                self.ready.set_result(None)
            buf = buf[end + 4 :]
        cut = buf.rfind(b"\n")
        self.buf = buf[cut + 1 :]
        if cut >= 0:
            self.load.scan(buf[:cut], now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc) if exc else "closed"))
        elif self.load.measuring:
            self.load.closed_early += 1
        else:
            self.load.closed_after += 1


class Load:
    """Every client, and what they received."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.events = 0
        self.measuring = False
        self.closed_early = 0
        self.closed_after = 0
        self.reconnects = 0

    def scan(self, lines: bytes, now_ns: int) -> None:
        """Count the marked events in complete lines and record their latency."""
        if b"event: reconnect" in lines:
            self.reconnects += lines.count(b"event: reconnect")
        start = lines.find(MARK)
        while start >= 0:
            start += len(MARK)
            end = lines.find(b'"', start)
            self.events += 1
            if self.measuring:
                self.latencies.append((now_ns - int(lines[start:end])) // 1000)
            start = lines.find(MARK, end)


async def open_all(
    host: str, port: int, paths: list[str], load: Load
) -> tuple[list[Client], Connected]:
    """Open every connection, at most IN_FLIGHT connects at a time."""
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    errors: dict[str, int] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(path: str) -> None:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        async with gate:
            try:
                _, client = await loop.create_connection(lambda: Client(load, request), host, port)
                await asyncio.wait_for(client.ready, 30)
                clients.append(client)
            except (OSError, RuntimeError, TimeoutError) as exc:
                key = type(exc).__name__ + ": " + str(exc)[:60]
                errors[key] = errors.get(key, 0) + 1

    started = time.perf_counter()
    tasks = [asyncio.create_task(one(p)) for p in paths]
    _done, pending = await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT_S)
    for task in pending:
        task.cancel()
    seconds = time.perf_counter() - started
    if pending:
        errors["connect phase timed out"] = len(pending)
    return clients, Connected(
        wanted=len(paths),
        open=len(clients),
        failed=len(paths) - len(clients),
        seconds=round(seconds, 3),
        per_s=round(len(clients) / seconds, 1),
        errors=errors,
    )


async def main(host: str, port: int, scans: list[str], n: int) -> None:
    """Connect and report; measure until ``mark`` and report; watch until ``stop``, report."""
    paths = [f"/api/scans/{scans[i % len(scans)]}/events" for i in range(n)]
    load = Load()
    clients, connected = await open_all(host, port, paths, load)
    _report(connected)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # The instrument must not add its own pauses: a full collection over 10,000 clients
    # stalls this loop for tens of milliseconds, which would be billed as delivery latency.
    gc.freeze()
    gc.disable()
    load.measuring = True
    load.events = 0
    await _until(reader, b"mark")
    load.measuring = False
    _report(
        Received(
            events=load.events,
            latencies_us=load.latencies,
            closed_early=load.closed_early,
            reconnect_frames=load.reconnects,
        )
    )
    load.reconnects = 0
    await _until(reader, b"stop")
    still_open = 0
    for client in clients:
        if not client.closed:
            still_open += 1
            if client.transport is not None:
                client.transport.abort()
    _report(
        Drained(reconnect_frames=load.reconnects, closed=load.closed_after, still_open=still_open)
    )


async def _until(reader: asyncio.StreamReader, command: bytes) -> None:
    while (line := await reader.readline()) and line.strip() != command:
        pass


def _report(result: msgspec.Struct) -> None:
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    import uvloop

    # One connection is one fd: the soft limit (often 1,024) would cap N long before memory.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    scans = Path(sys.argv[3]).read_text().split()
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), scans, int(sys.argv[4])))
