"""The naive design bench.sse compares against: one Redis XREAD BLOCK per SSE connection.

``python -m bench.sse_naive`` serves ``/api/scans/<id>/events`` on uvicorn
(httptools, uvloop, like the notifier) from REDIS_URL / LABELSCAN_PREFIX /
NOTIFIER_PORT. Each connection opens its own Redis connection and blocks on
its scan's history stream: no fan-out, no replay, no resume, on purpose.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from shared.keys import Keys

HEARTBEAT_MS = 15_000
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KEYS = Keys(os.environ.get("LABELSCAN_PREFIX", "labelscan"))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Healthz, and one XREAD BLOCK loop per event stream."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    parts = scope["path"].strip("/").split("/")
    if scope["path"] == "/healthz" or len(parts) != 4 or parts[3] != "events":
        status = 200 if scope["path"] == "/healthz" else 404
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await stream(parts[2], receive, send)


async def stream(scan_id: str, receive: Receive, send: Send) -> None:
    """Block on the scan's history with a connection of its own; forward each entry."""
    redis = Redis.from_url(REDIS_URL, single_connection_client=True, socket_timeout=30)
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    key = KEYS.scan_events(scan_id)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        last = "$"
        while not gone.is_set():
            reply: Any = await redis.xread({key: last}, block=HEARTBEAT_MS, count=100)
            chunks = [b": ping\n\n"] if not reply else []
            for _key, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    chunks.append(b"id: %s\ndata: %s\n\n" % (entry_id, fields[b"event"]))
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
    except RedisError as exc:
        print(f"naive stream ended by redis: {exc}", flush=True)
    finally:
        watcher.cancel()
        await redis.aclose()


def main() -> None:
    """Serve until SIGTERM."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["NOTIFIER_PORT"]),
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        backlog=4096,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
