"""Queue statistics read from Redis in one round trip: correct while replicas run."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from shared.clock import iso
from shared.connection import RedisClient
from shared.controls import Limits, defaults
from shared.keys import GROUP, Keys
from shared.schemas import PRIORITIES, LimiterStats, QueueStats
from shared.settings import Settings


async def queue_stats(
    redis: RedisClient, keys: Keys, settings: Settings, limits: Limits | None = None
) -> QueueStats:
    """Waiting, active, delayed and finished counts over every partition, and the rate
    limiter's state if one is set; one pipeline (one round trip per node on a cluster).

    ``limits``: the limits in force (changed at runtime); None: the settings'.
    """
    if limits is None:
        limits = defaults(settings)
    pipe = redis.pipeline(transaction=False)
    for part in keys.partitions:
        for stream in part.request_streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        pipe.hgetall(part.stats)
        pipe.zcard(part.delayed)
        pipe.hgetall(part.tenant_active)
    pipe.zcard(keys.ratelimit("requests"))
    pipe.hgetall(keys.ratelimit("input"))
    pipe.hgetall(keys.ratelimit("output"))
    pipe.hmget(keys.ratelimit("state"), "paused_until", "pause_reason")
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    waiting: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    active = consumers = delayed = 0
    counters: Counter[bytes] = Counter()
    tenants: Counter[str] = Counter()
    per_partition = 2 * len(PRIORITIES) + 3
    for p in range(len(keys.partitions)):
        got = replies[p * per_partition : (p + 1) * per_partition]
        for i, priority in enumerate(PRIORITIES):
            length, groups = got[2 * i], got[2 * i + 1]
            length = int(length) if isinstance(length, int) else 0
            group = find_group(groups)
            if group is None:
                waiting[priority] += length
                continue
            pending = int(group.get("pending", 0))
            # Acknowledged entries are deleted, so what the stream still holds is
            # either pending (being worked on) or waiting. The group's `lag` would
            # count cancelled (deleted) entries that nobody will ever read.
            waiting[priority] += max(length - pending, 0)
            active += pending
            consumers = max(consumers, int(group.get("consumers", 0)))
        stats, zcard, active_by_tenant = got[-3:]
        counters.update({k: int(v) for k, v in stats.items()} if isinstance(stats, dict) else {})
        delayed += int(zcard) if isinstance(zcard, int) else 0
        if isinstance(active_by_tenant, dict):
            tenants.update({k.decode(): int(v) for k, v in active_by_tenant.items()})
    requests, inputs, outputs, pause = replies[-4:]
    limiter = None
    if limits.anthropic_rpm or limits.anthropic_input_tpm or limits.anthropic_output_tpm:
        paused_until = int(pause[0]) if pause and pause[0] else 0
        paused = paused_until > time.time() * 1000
        limiter = LimiterStats(
            requests_last_minute=int(requests or 0),
            requests_per_minute_limit=limits.anthropic_rpm,
            input_tokens_last_minute=_window_sum(inputs),
            input_tokens_per_minute_limit=limits.anthropic_input_tpm,
            output_tokens_last_minute=_window_sum(outputs),
            output_tokens_per_minute_limit=limits.anthropic_output_tpm,
            paused_until=iso(paused_until) if paused else None,
            pause_reason=pause[1].decode() if paused and pause[1] else None,
        )
    return QueueStats(
        waiting=sum(waiting.values()),
        active=active,
        completed=counters[b"completed"],
        failed=counters[b"failed"],
        cancelled=counters[b"cancelled"],
        delayed=delayed,
        waiting_by_priority=waiting,
        active_by_tenant={t: n for t, n in tenants.items() if n > 0},
        consumers=consumers,
        limiter=limiter,
    )


def _window_sum(buckets: object) -> int:
    if not isinstance(buckets, dict):
        return 0
    now_s = int(time.time())
    return sum(int(v) for k, v in buckets.items() if int(k) > now_s - 60)


def find_group(groups: object) -> dict[str, Any] | None:
    """The ``analyzers`` group in an ``XINFO GROUPS`` reply, keys as text; None if absent."""
    if not isinstance(groups, list):
        return None  # the stream does not exist yet
    for group in groups:
        name = group.get("name")
        if name in (GROUP, GROUP.encode()):
            return {k.decode() if isinstance(k, bytes) else k: v for k, v in group.items()}
    return None


async def consumer_names(redis: RedisClient, keys: Keys) -> list[str]:
    """Every consumer of the group on any request stream, sorted."""
    pipe = redis.pipeline(transaction=False)
    streams = [s for part in keys.partitions for s in part.request_streams]
    for stream in streams:
        pipe.xinfo_consumers(stream, GROUP)
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    names: set[str] = set()
    for reply in replies:
        if isinstance(reply, list):  # an error for a stream not made yet
            names.update(_text(c["name"]) for c in reply)
    return sorted(names)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
