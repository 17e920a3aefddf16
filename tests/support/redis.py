"""Assertions about what a test left in Redis."""

from __future__ import annotations

from redis.asyncio import Redis


async def prefix_keys(redis: Redis, prefix: str) -> set[bytes]:
    """Every key under ``prefix``."""
    return {k async for k in redis.scan_iter(match=f"{{{prefix}}}:*")}
