"""The script runner: calls of one loop turn go in one batch, and each gets its own reply."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from shared import scripts
from shared.connection import connect
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.settings import Settings


def _progress(
    keys: Keys, scan_id: str, token: str
) -> tuple[scripts.EventKeys, scripts.ProgressArgs]:
    part = keys.of_scan(scan_id)
    return (
        scripts.EventKeys(
            scan=part.scan(scan_id), events=part.events, history=part.scan_events(scan_id)
        ),
        scripts.ProgressArgs(
            scan_id=scan_id,
            tenant="default",
            token=token,
            event=b'{"type":"progress"}',
            maxlen=100,
            scan_maxlen=10,
        ),
    )


async def test_a_batch_answers_each_call_and_an_error_is_its_callers_alone(
    settings: Settings, redis: Redis
) -> None:
    """Owners publish, a stale token is refused, a broken key fails only its own call."""
    keys = Keys(settings.prefix, settings.partitions)
    ids = [f"{i:032x}" for i in range(6)]
    for sid in ids[:4]:
        await redis.hset(keys.of_scan(sid).scan(sid), "token", "t")
    broken = ids[5]
    await redis.set(keys.of_scan(broken).scan(broken), "not a hash")
    client = connect(settings, max_connections=4)
    run = ScriptRunner(client)
    try:
        calls = [run(scripts.PROGRESS, *_progress(keys, sid, "t")) for sid in ids]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert replies[:5] == [True, True, True, True, False]
        assert isinstance(replies[5], ResponseError) and "WRONGTYPE" in str(replies[5])
        history = keys.of_scan(ids[0]).scan_events(ids[0])
        assert await redis.xlen(history) == 1
        # The connection is still in step: the next call reads its own reply.
        assert await run(scripts.PROGRESS, *_progress(keys, ids[1], "t")) is True
    finally:
        await client.aclose()


async def test_an_emptied_script_cache_is_loaded_again(settings: Settings, redis: Redis) -> None:
    """After SCRIPT FLUSH (a restarted server) every waiting call still runs, once."""
    keys = Keys(settings.prefix, settings.partitions)
    ids = [f"{i + 100:032x}" for i in range(3)]
    for sid in ids:
        await redis.hset(keys.of_scan(sid).scan(sid), "token", "t")
    client = connect(settings, max_connections=4)
    run = ScriptRunner(client)
    try:
        await redis.script_flush()
        replies = await asyncio.gather(
            *(run(scripts.PROGRESS, *_progress(keys, sid, "t")) for sid in ids)
        )
        assert replies == [True, True, True]
        for sid in ids:
            assert await redis.xlen(keys.of_scan(sid).scan_events(sid)) == 1
    finally:
        await client.aclose()


async def test_a_cancelled_call_leaves_no_connection_behind(
    settings: Settings, redis: Redis
) -> None:
    """A caller cancelled while its pipeline waits for a connection, then its client
    closed: the script never runs, and the server sees no connection of that client
    (the pipeline used to outlive its caller and connect again on the closed pool)."""
    keys = Keys(settings.prefix, settings.partitions)
    sid = f"{200:032x}"
    await redis.hset(keys.of_scan(sid).scan(sid), "token", "t")
    name = f"{settings.prefix}-runner"
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=1, timeout=5, client_name=name
    )
    client = Redis.from_pool(pool)
    run = ScriptRunner(client)
    held = await pool.get_connection()
    caller = asyncio.create_task(run(scripts.PROGRESS, *_progress(keys, sid, "t")))
    await asyncio.sleep(0.2)  # its pipeline waits for the pool's one connection
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    await client.aclose()
    await pool.release(held)  # the connection the pipeline waited for comes free
    await asyncio.sleep(0.3)
    assert [c for c in await redis.client_list() if c.get("name") == name] == []
    assert await redis.xlen(keys.of_scan(sid).scan_events(sid)) == 0


async def test_a_cancelled_call_leaves_its_batch_to_the_other_callers(
    settings: Settings, redis: Redis
) -> None:
    """Of two calls in one pipeline, cancelling one leaves the other its reply."""
    keys = Keys(settings.prefix, settings.partitions)
    ids = [f"{i + 300:032x}" for i in range(2)]
    for sid in ids:
        await redis.hset(keys.of_scan(sid).scan(sid), "token", "t")
    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=1, timeout=5)
    client = Redis.from_pool(pool)
    run = ScriptRunner(client)
    try:
        held = await pool.get_connection()
        gone, kept = (
            asyncio.create_task(run(scripts.PROGRESS, *_progress(keys, sid, "t"))) for sid in ids
        )
        await asyncio.sleep(0.2)  # their pipeline waits for the pool's one connection
        gone.cancel()
        await pool.release(held)
        assert await kept is True
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        assert await redis.xlen(keys.of_scan(ids[1]).scan_events(ids[1])) == 1
    finally:
        await client.aclose()
