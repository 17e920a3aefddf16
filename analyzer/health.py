"""The analyzer's health endpoint: liveness means the read loop keeps turning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /healthz``."""

    status: str
    last_turn_s: float
    in_flight: int
    processed: int
    reclaimed: int


async def serve_health(host: str, port: int, snapshot: Callable[[], Health]) -> asyncio.Server:
    """Serve ``GET /healthz`` (200 alive, 503 stalled) and ``/readyz`` on ``host:port``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b""):
                pass
            parts = request.split()
            path = parts[1].decode() if len(parts) > 1 else "/"
            health = snapshot()
            if path in ("/healthz", "/readyz"):
                body = msgspec.json.encode(health)
                status = "200 OK" if health.status == "ok" else "503 Service Unavailable"
            else:
                body, status = b'{"error":"not_found"}', "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a client that went away or never spoke; nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


def liveness(last_turn: float, timeout_s: float) -> tuple[str, float]:
    """("ok" or "stalled", seconds since the read loop last turned)."""
    age = time.monotonic() - last_turn
    return ("ok" if age <= timeout_s else "stalled"), round(age, 3)
