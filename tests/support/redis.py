"""Assertions about what a test left in Redis."""

from __future__ import annotations

import collections

import msgspec
from redis.asyncio import Redis

from shared.connection import RedisClient
from shared.keys import Keys
from shared.schemas import ScanEvent


async def prefix_keys(redis: Redis, prefix: str) -> set[bytes]:
    """Every key under ``prefix``."""
    return {k async for k in redis.scan_iter(match=f"{{{prefix}}}:*")}


async def completed_events(redis: RedisClient, keys: Keys) -> collections.Counter[str]:
    """How many ``completed`` events each scan has, over every partition's events stream."""
    counts: collections.Counter[str] = collections.Counter()
    for part in keys.partitions:
        for _, fields in await redis.xrange(part.events):
            event = msgspec.json.decode(fields[b"event"], type=ScanEvent)
            if event.type == "completed":
                counts[event.scan_id] += 1
    return counts
