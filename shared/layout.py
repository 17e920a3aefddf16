"""The partition count, recorded in Redis at first start and checked at every start.

Scans are found by their id's partition, so services started with different
``SCAN_PARTITIONS`` on one keyspace would each see part of it: a split brain.
The first service to start records its count; one started with another refuses.
"""

from __future__ import annotations

import asyncio

import structlog
from redis.exceptions import RedisError

from shared.connection import connect
from shared.keys import Keys
from shared.settings import Settings, SettingsError

log = structlog.get_logger("labelscan")


class LayoutMismatchError(SettingsError):
    """``SCAN_PARTITIONS`` differs from the count this deployment's keys were written with."""


async def check_layout(settings: Settings) -> None:
    """Record the partition count if none is; LayoutMismatchError if another one is.

    An unreachable Redis is not a reason not to start (the services wait for it):
    the check is then skipped, with a warning.
    """
    keys = Keys(settings.prefix, settings.partitions)
    redis = connect(settings, max_connections=2)
    try:
        await redis.set(keys.layout, settings.partitions, nx=True)
        recorded = await redis.get(keys.layout)
    except RedisError as exc:
        log.warning("could not check SCAN_PARTITIONS against Redis", error=str(exc))
        return
    finally:
        await redis.aclose()
    if recorded is not None and int(recorded) != settings.partitions:
        raise LayoutMismatchError(
            f"SCAN_PARTITIONS={settings.partitions}, but prefix {settings.prefix!r} was "
            f"started with {int(recorded)} partitions; scans would be looked up in the "
            f"wrong place. Start with SCAN_PARTITIONS={int(recorded)} (changing it needs "
            "a new LABELSCAN_PREFIX)"
        )


def ensure_layout(settings: Settings) -> None:
    """:func:`check_layout` from synchronous start-up code."""
    asyncio.run(check_layout(settings))
