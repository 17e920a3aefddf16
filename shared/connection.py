"""Redis connections with the timeouts and retries every service wants, in every mode.

``REDIS_MODE`` picks the client, always one of redis-py's own:

- ``standalone``: ``Redis.from_url(REDIS_URL)`` (``redis://``, ``rediss://``, ``unix://``);
- ``sentinel``: ``Sentinel(REDIS_SENTINELS).master_for(REDIS_SENTINEL_MASTER)``, which
  asks the sentinels where the primary is whenever a connection is (re)made, so a
  failover is followed without a restart;
- ``cluster``: ``RedisCluster.from_url(REDIS_URL)``: one node named, the rest discovered,
  MOVED/ASK followed.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.settings import Settings

RedisClient: TypeAlias = Redis | RedisCluster
"""What :func:`connect` returns: a cluster client in ``cluster`` mode, else ``Redis``."""


class SentinelRedis(Redis):
    """The ``master_for`` client; closing it also closes its connections to the sentinels.

    redis-py leaves the ``Sentinel`` object's own clients open when the master's
    client closes; a service that closes its client would leak them.
    """

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, its pool and the sentinel clients it discovers through."""
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def connect(
    settings: Settings, *, max_connections: int = 64, socket_timeout: float | None = None
) -> RedisClient:
    """A client for ``settings`` in its ``redis_mode``; connects lazily.

    Every read has a timeout (a paused or partitioned server must surface as an
    error, not a hung request); only connection failures are retried, briefly.
    ``max_connections`` is per node in cluster mode.
    """
    options = _options(settings, max_connections, socket_timeout)
    if settings.redis_mode == "cluster":
        # Settings refused unix:// and a db other than 0 for cluster mode.
        return RedisCluster.from_url(settings.redis_url, **options)
    return _single_node(settings, options)


def _single_node(settings: Settings, options: dict[str, Any]) -> Redis:
    if settings.redis_mode == "sentinel":
        return _sentinel_master(settings, options)
    return Redis.from_url(settings.redis_url, **options)


def _options(
    settings: Settings, max_connections: int, socket_timeout: float | None
) -> dict[str, Any]:
    timeout = socket_timeout if socket_timeout is not None else settings.redis_timeout_s
    options: dict[str, Any] = {
        "decode_responses": False,
        "max_connections": max_connections,
        "socket_connect_timeout": min(timeout, 2.0),
        "socket_timeout": timeout,
        "health_check_interval": 15,
        # Only a failed connection is retried: a timed-out script may have run, and
        # running it again would not be the same (redis-py also retries timeouts
        # by default, which doubled a paused server's 503 time).
        "retry": Retry(
            EqualJitterBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
    }
    if not settings.redis_url.startswith("unix://"):
        # A unix socket connection refuses TCP options (TypeError at first use).
        options["socket_keepalive"] = True
    return options


def _sentinel_master(settings: Settings, options: dict[str, Any]) -> Redis:
    """``master_for`` with REDIS_URL's credentials, TLS and db; its host is not used."""
    from_url = parse_url(settings.redis_url)
    from_url.pop("host", None)
    from_url.pop("port", None)
    ssl = from_url.pop("connection_class", None) is SSLConnection
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        list(settings.redis_sentinels),
        # Sentinels have their own (usually no) credentials; only the timeouts carry over.
        sentinel_kwargs={
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
            "socket_keepalive": True,
        },
    )
    master: Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        redis_class=SentinelRedis,
        ssl=ssl,
        # Options in REDIS_URL's query string win, as with Redis.from_url.
        **{**options, **from_url},
    )
    return master
