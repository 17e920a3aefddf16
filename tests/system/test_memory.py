"""Redis memory returns to its baseline after a burst, once retention has passed."""

from __future__ import annotations

import asyncio
import base64

from redis.asyncio import Redis

from shared.embedded import EmbeddedValkey
from shared.keys import Keys
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.stack import running_stack

BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "food",
    "marketplaces": ["DE", "FR"],
    "product_name": "Muesli",
}


async def used_memory(redis: Redis) -> int:
    """Bytes the server has allocated for data."""
    info = await redis.info("memory")
    return int(info["used_memory"])


async def test_memory_returns_to_baseline_after_2000_scans(
    own_valkey: EmbeddedValkey, make_settings: SettingsFactory
) -> None:
    """2,000 scans with a 2 s retention leave (almost) nothing behind once it has passed."""
    settings = make_settings(
        redis_url=own_valkey.url,
        result_ttl_s=2,
        image_ttl_s=2,
        events_retention_s=2,
        visibility_timeout_s=1,
        worker_concurrency=64,
    )
    redis = Redis.from_url(own_valkey.url)
    keys = Keys(settings.prefix)
    async with running_stack(settings) as stack:
        # Warm up (connections, streams, script cache) so the baseline holds only that.
        warm = (await stack.client.post("/api/scans", json=BODY)).json()["scan_id"]
        await stack.wait_terminal(warm)
        baseline = await used_memory(redis)
        for _ in range(40):
            replies = await asyncio.gather(
                *(stack.client.post("/api/scans", json=BODY) for _ in range(50))
            )
            assert all(r.status_code == 202 for r in replies)
        async with asyncio.timeout(60):
            while (await stack.client.get("/api/queue/stats")).json()["completed"] < 2001:
                await asyncio.sleep(0.1)
        peak = await used_memory(redis)
        async with asyncio.timeout(20):
            while True:
                await asyncio.sleep(0.5)
                left = [
                    k
                    async for k in redis.scan_iter(
                        match=f"{{{settings.prefix}}}:scan:*", count=1000
                    )
                ]
                if not left and await redis.xlen(keys.events) < 200:
                    break
        after = await used_memory(redis)
        leftover = {k: await redis.memory_usage(k) or 0 async for k in redis.scan_iter()}
    await redis.aclose()
    grown = peak - baseline
    assert grown > 1_000_000, f"the burst should be visible in memory (grew {grown} bytes)"
    # What stays: the counters, the empty request streams and a trimmed events tail.
    assert sum(leftover.values()) < 100_000, leftover
    assert after - baseline < 0.05 * grown, (baseline, peak, after)
