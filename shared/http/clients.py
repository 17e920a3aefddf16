"""The Redis client a service's request handlers share."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from shared.connection import RedisClient, connect
from shared.settings import Settings


def request_client(
    settings: Settings,
    *,
    socket_timeout: float | None = None,
    waiting_pool: int | None = None,
) -> RedisClient:
    """``connect``'s client; with ``waiting_pool``, on a pool of that many connections that waits.

    A service that may see connect storms (the notifier: thousands of EventSource
    reconnects at once) passes ``waiting_pool``, so a burst queues for a connection
    instead of failing; one that must fail fast when Redis stalls (the gateway)
    keeps the default pool, which refuses at once when every connection is busy.
    Sentinel and cluster clients manage their own pools (per discovered node) and
    keep them.
    """
    client = connect(settings, socket_timeout=socket_timeout)
    if waiting_pool is None or settings.redis_mode != "standalone":
        return client
    assert isinstance(client, Redis)
    wait_s = settings.redis_timeout_s if socket_timeout is None else socket_timeout
    # Same connection settings on a waiting pool; the first client never connected (lazy),
    # so dropping it leaves nothing open.
    pool = BlockingConnectionPool(
        connection_class=client.connection_pool.connection_class,
        max_connections=waiting_pool,
        timeout=wait_s,
        **client.connection_pool.connection_kwargs,
    )
    return Redis.from_pool(pool)
