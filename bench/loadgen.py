"""A small HTTP/1.1 load generator on raw asyncio streams (httpx is slower than the server).

Run in its own process so it never shares an interpreter with the server it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import msgspec
import uvloop


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one load run measured."""

    mode: str
    sent: int
    ok: int
    errors: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _summary(mode: str, latencies: list[float], errors: int, seconds: float) -> LoadResult:
    ok = len(latencies)
    ordered = sorted(latencies) or [0.0]
    return LoadResult(
        mode=mode,
        sent=ok + errors,
        ok=ok,
        errors=errors,
        seconds=round(seconds, 3),
        rate=round(ok / seconds, 1) if seconds else 0.0,
        p50_ms=round(statistics.median(ordered) * 1000, 3),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        max_ms=round(ordered[-1] * 1000, 3),
    )


async def fixed_rate(
    host: str,
    port: int,
    path: str,
    body: bytes,
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    expect: int = 202,
) -> LoadResult:
    """Open loop: send at ``rate``/s; latency counts from the scheduled send time."""
    raw = _request(host, port, path, body)
    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(_Conn(*await asyncio.open_connection(host, port)))
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.request(raw)
        finally:
            pool.put_nowait(conn)
        if status == expect:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().writer.close()
    return _summary("fixed_rate", latencies, errors, elapsed)


async def max_rate(
    host: str,
    port: int,
    path: str,
    body: bytes,
    *,
    seconds: float,
    connections: int = 32,
    expect: int = 202,
) -> LoadResult:
    """Closed loop: ``connections`` clients send back to back for ``seconds``."""
    raw = _request(host, port, path, body)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        conn = _Conn(*await asyncio.open_connection(host, port))
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status = await conn.request(raw)
                if status == expect:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1
        finally:
            conn.writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return _summary("max_rate", latencies, errors, time.perf_counter() - start)


def main() -> None:
    """``python -m bench.loadgen MODE HOST PORT PATH BODYFILE RATE SECONDS``: JSON on stdout."""
    import sys

    mode, host, port, path, body_file, rate, seconds = sys.argv[1:8]
    body = open(body_file, "rb").read()  # noqa: SIM115
    if mode == "fixed":
        coro = fixed_rate(host, int(port), path, body, rate=float(rate), seconds=float(seconds))
    else:
        coro = max_rate(host, int(port), path, body, seconds=float(seconds))
    result = uvloop.run(coro)
    sys.stdout.buffer.write(msgspec.json.encode(result))


if __name__ == "__main__":
    main()
