"""The hub: one reader, reconnects without losing events, slow subscribers cut off alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from notifier.events import StreamEvent
from notifier.hub import Hub, Subscription
from shared.connection import connect
from shared.embedded import EmbeddedValkey
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.notifier.conftest import running_notifier
from tests.notifier.scans import Publisher
from tests.support.sse import open_stream

SCAN = "c" * 32


async def add(redis: Redis, stream: str, n: int, scan_id: str = SCAN) -> str:
    """XADD a progress-shaped event for ``scan_id``; returns its id."""
    event = f'{{"scan_id":"{scan_id}","type":"progress","n":{n}}}'
    entry_id: Any = await redis.xadd(stream, {"scan_id": scan_id, "event": event})
    return str(entry_id.decode())


async def next_of(sub: Subscription, within: float = 5.0) -> StreamEvent | None:
    """The subscription's next event, failing the test if none comes in time."""
    async with asyncio.timeout(within):
        return await sub.get()


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``predicate`` until it is true."""
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def hub(redis: Redis, settings: Settings) -> AsyncIterator[Hub]:
    """A started hub on this test's events stream, with a small queue."""
    hub = Hub(connect(settings), Keys(settings.prefix).events, queue_size=2, block_ms=200)
    hub.start()
    await hub.wait_ready()
    try:
        yield hub
    finally:
        await hub.stop()
        await hub._redis.aclose()


async def test_hub_starts_at_the_tail_and_routes_by_scan(redis: Redis, settings: Settings) -> None:
    """Entries written before start are not re-sent; each subscriber sees only its scan."""
    stream = Keys(settings.prefix).events
    await add(redis, stream, 0)
    async with connect(settings) as client:
        hub = Hub(client, stream)
        hub.start()
        await hub.wait_ready()
        mine, other = hub.subscribe(SCAN), hub.subscribe("d" * 32)
        new_id = await add(redis, stream, 1)
        event = await next_of(mine)
        assert event is not None
        assert (event.id, event.type) == (new_id, "progress")
        assert '"n":1' in event.data
        assert other.pending == 0
        await hub.stop()
        assert await mine.get() is None, "stop ends every subscription"


async def test_overflowing_subscriber_is_ended_alone(
    hub: Hub, redis: Redis, settings: Settings
) -> None:
    """A subscriber that never reads overflows and ends; the other keeps every event."""
    stream = Keys(settings.prefix).events
    slow, fast = hub.subscribe(SCAN), hub.subscribe(SCAN)
    ids = []
    for n in range(5):
        ids.append(await add(redis, stream, n))
        event = await next_of(fast)
        assert event is not None
        assert event.id == ids[-1]
        assert slow.pending <= 2, "memory per subscriber is bounded by the queue size"
    assert slow.overflowed
    assert slow.pending == 0, "an ended inbox lets go of what it held"
    assert await slow.get() is None
    stats = hub.stats()
    assert (stats.overflows, stats.subscribers) == (1, 1)


async def test_hub_survives_client_kill_without_losing_events(
    make_settings: SettingsFactory, redis: Redis, publisher: Publisher
) -> None:
    """CLIENT KILL TYPE normal drops the reader's connection; events written after still arrive."""
    settings = make_settings()
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)
    async with (
        running_notifier(settings) as notifier,
        open_stream(notifier.client, scan_id) as stream,
    ):
        await stream.events(2)
        killed = await redis.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "TYPE", "normal"
        )
        assert int(killed) >= 1
        await publisher.progress(claim, 50)
        await publisher.progress(claim, 70)
        await publisher.complete(claim)
        rest = await stream.rest()
        assert (await notifier.client.get("/readyz")).status_code == 200
    history = await publisher.history(scan_id)
    assert [(e.id, e.data) for e in rest] == history[2:]


async def test_hub_resumes_from_its_last_id_after_redis_restarts(tmp_path: Path) -> None:
    """Redis down, then back: the reader backs off, logs once each way, and misses nothing."""
    server = EmbeddedValkey(tmp_path / "data", log_file=tmp_path / "valkey.log")
    server.start()
    settings = Settings(redis_url=server.url)
    writer = connect(settings)
    client = connect(settings)
    hub = Hub(client, "ev", block_ms=200)
    try:
        hub.start()
        await hub.wait_ready()
        sub = hub.subscribe(SCAN)
        first = await add(writer, "ev", 1)
        assert (await next_of(sub)) is not None
        with capture_logs() as logs:
            server.stop()
            await until(lambda: not hub.stats().connected)
            await asyncio.sleep(0.5)  # several failed retries: still one log line
            server.start()
            assert hub.stats().last_id == first, "the resume point is the concrete last id"
            # Written before the reader reconnects: "$" would skip these, a concrete id must not.
            later = [await add(writer, "ev", n) for n in (2, 3)]
            got = [await next_of(sub, within=10), await next_of(sub, within=10)]
            await until(lambda: hub.stats().connected)
        assert [e.id for e in got if e is not None] == later
        assert later[0] > first
        events = [entry["event"] for entry in logs]
        assert events.count("events reader lost redis; retrying") == 1, logs
        assert events.count("events reader reconnected") == 1, logs
    finally:
        await hub.stop()
        await client.aclose()
        await writer.aclose()
        server.stop()


async def test_slow_client_is_disconnected_without_affecting_another(
    make_settings: SettingsFactory, publisher: Publisher
) -> None:
    """A client that stops reading overflows and its stream ends; the other gets everything.

    The slow client then resumes with Last-Event-ID and loses nothing.
    """
    settings = make_settings()
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)
    big = "x" * 64 * 1024  # fills the socket buffers fast so the slow stream's send blocks
    async with (
        running_notifier(settings, queue_size=4) as notifier,
        open_stream(notifier.client, scan_id) as slow,
        open_stream(notifier.client, scan_id) as fast,
    ):
        await slow.events(2)
        await fast.events(2)
        sent = 0
        while notifier.hub.stats().overflows == 0:
            assert sent < 2000, "the slow client never overflowed"
            await publisher.progress(claim, 50, f"{sent} {big}")
            sent += 1
            event = await fast.next_event()  # the fast client keeps up, one event at a time
            assert event is not None
            assert f'"message":"{sent - 1} x' in (event.data or "")
        # Cut off and forgotten at once: nothing accumulates for it while it is stuck.
        assert notifier.hub.stats().subscribers == 1
        await publisher.complete(claim)
        fast_rest = await fast.rest()
        assert fast_rest[-1].event == "completed"
        slow_rest = await slow.rest(within=20)
    history = await publisher.history(scan_id)
    assert [(e.id, e.data) for e in fast.all if e.data is not None] == history
    *received, told = [e for e in slow.all if e.data is not None]
    assert (told.event, told.id, told.data) == ("reconnect", None, '{"reason":"slow_consumer"}')
    assert received
    assert received[-1].event != "completed", "the slow stream ended early, not at the end"
    assert [(e.id, e.data) for e in received] == history[: len(received)]
    assert slow_rest == [*received[2:], told]
    async with (
        running_notifier(settings) as again,
        open_stream(again.client, scan_id, received[-1].id) as resumed,
    ):
        missed = await resumed.rest()
    assert [(e.id, e.data) for e in received + missed] == history
