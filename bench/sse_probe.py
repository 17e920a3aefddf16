"""What bench.sse measures on the server under test: RSS and CPU from /proc, and the publisher."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from redis.asyncio import Redis

from shared.keys import Keys

_TICK = os.sysconf("SC_CLK_TCK")

# The shape `emit` (shared/lua/_lib.lua) writes: the global entry with scan and tenant,
# and the same id in the scan's history.
EMIT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
  'scan_id', ARGV[1], 'tenant', ARGV[2], 'event', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, id, 'event', ARGV[3])
return id
"""
TICK_S = 0.005


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuWindow:
    """CPU use of a process over a stretch of wall time, as a fraction of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_s(pid)
        self.wall0 = time.perf_counter()

    def percent(self) -> float:
        """Percent of one core since the window opened."""
        wall = time.perf_counter() - self.wall0
        return round(100 * (cpu_s(self.pid) - self.cpu0) / wall, 1) if wall > 0 else 0.0


def event_json(scan_id: str, sent_ns: int) -> bytes:
    """A progress event like the analyzer's, its message carrying the send time."""
    return (
        b'{"scan_id":"%s","type":"progress","state":"active","progress":{"stage":"analyzing",'
        b'"percentage":50,"message":"t%d"},"attempt":1,"at_ms":%d}'
        % (scan_id.encode(), sent_ns, sent_ns // 1_000_000)
    )


async def publish(
    redis: Redis, prefix: str, scans: list[str], rate: float, seconds: float
) -> dict[str, int]:
    """Publish ``rate`` events per second for ``seconds``, round robin; count per scan."""
    keys = Keys(prefix)
    sha: Any = await redis.script_load(EMIT)
    counts: dict[str, int] = {}
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            pipe = redis.pipeline(transaction=False)
            now = time.time_ns()
            for i in range(sent, sent + due):
                scan = scans[i % len(scans)]
                counts[scan] = counts.get(scan, 0) + 1
                pipe.evalsha(
                    sha,
                    2,
                    keys.events,
                    keys.scan_events(scan),
                    scan,
                    "bench",
                    event_json(scan, now),
                    100_000,
                )
            await pipe.execute()
            sent += due
        await asyncio.sleep(TICK_S)
    return counts
