"""Redis connections with the timeouts and retries every service wants."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.settings import Settings


def connect(settings: Settings, *, max_connections: int = 64) -> Redis:
    """A client for ``settings.redis_url``; connects lazily, retries transient faults."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        max_connections=max_connections,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(EqualJitterBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
