"""Queue statistics read from Redis in one round trip: correct while replicas run."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from shared.clock import iso
from shared.keys import GROUP, Keys
from shared.schemas import PRIORITIES, LimiterStats, QueueStats
from shared.settings import Settings


async def queue_stats(redis: Redis, keys: Keys, settings: Settings) -> QueueStats:
    """Waiting, active, delayed and finished counts; the rate limiter's state if one is set."""
    pipe = redis.pipeline(transaction=False)
    for stream in keys.request_streams:
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
    pipe.hgetall(keys.stats)
    pipe.zcard(keys.delayed)
    pipe.hgetall(keys.tenant_active)
    pipe.zcard(keys.ratelimit("requests"))
    pipe.hgetall(keys.ratelimit("input"))
    pipe.hgetall(keys.ratelimit("output"))
    pipe.hmget(keys.ratelimit("state"), "paused_until", "pause_reason")
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    waiting: dict[str, int] = {}
    active = consumers = 0
    for i, priority in enumerate(PRIORITIES):
        length, groups = replies[2 * i], replies[2 * i + 1]
        length = int(length) if isinstance(length, int) else 0
        group = _find_group(groups)
        if group is None:
            waiting[priority] = length
            continue
        pending = int(group.get("pending", 0))
        # Acknowledged entries are deleted, so what the stream still holds is
        # either pending (being worked on) or waiting. The group's `lag` would
        # count cancelled (deleted) entries that nobody will ever read.
        waiting[priority] = max(length - pending, 0)
        active += pending
        consumers = max(consumers, int(group.get("consumers", 0)))
    counters, delayed, tenants, requests, inputs, outputs, pause = replies[6:]
    counters = counters if isinstance(counters, dict) else {}
    limiter = None
    if settings.rate_limited:
        paused_until = int(pause[0]) if pause and pause[0] else 0
        paused = paused_until > time.time() * 1000
        limiter = LimiterStats(
            requests_last_minute=int(requests or 0),
            requests_per_minute_limit=settings.anthropic_rpm,
            input_tokens_last_minute=_window_sum(inputs),
            input_tokens_per_minute_limit=settings.anthropic_input_tpm,
            output_tokens_last_minute=_window_sum(outputs),
            output_tokens_per_minute_limit=settings.anthropic_output_tpm,
            paused_until=iso(paused_until) if paused else None,
            pause_reason=pause[1].decode() if paused and pause[1] else None,
        )
    return QueueStats(
        waiting=sum(waiting.values()),
        active=active,
        completed=int(counters.get(b"completed", 0)),
        failed=int(counters.get(b"failed", 0)),
        cancelled=int(counters.get(b"cancelled", 0)),
        delayed=int(delayed or 0),
        waiting_by_priority=waiting,
        active_by_tenant={k.decode(): int(v) for k, v in (tenants or {}).items()},
        consumers=consumers,
        limiter=limiter,
    )


def _window_sum(buckets: object) -> int:
    if not isinstance(buckets, dict):
        return 0
    now_s = int(time.time())
    return sum(int(v) for k, v in buckets.items() if int(k) > now_s - 60)


def _find_group(groups: object) -> dict[str, Any] | None:
    if not isinstance(groups, list):
        return None  # the stream does not exist yet
    for group in groups:
        name = group.get("name")
        if name in (GROUP, GROUP.encode()):
            return {k.decode() if isinstance(k, bytes) else k: v for k, v in group.items()}
    return None
