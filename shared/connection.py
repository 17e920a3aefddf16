"""Redis connections with the timeouts and retries every service wants."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.settings import Settings


def connect(
    settings: Settings, *, max_connections: int = 64, socket_timeout: float | None = None
) -> Redis:
    """A client for ``settings.redis_url``; connects lazily.

    Every read has a timeout (a paused or partitioned server must surface as an
    error, not a hung request); only connection failures are retried, briefly.
    """
    timeout = socket_timeout if socket_timeout is not None else settings.redis_timeout_s
    return Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        max_connections=max_connections,
        socket_connect_timeout=min(timeout, 2.0),
        socket_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(EqualJitterBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError],
    )
