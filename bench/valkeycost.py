"""What work costs the Valkey server: CPU time and commands, from ``INFO`` deltas.

Scripts' inner commands count in ``commandstats`` too (an ``EVALSHA`` running
three ``XADD``s adds one call to each), so the table says what a scan makes
the server do, however the client batches it.
"""

from __future__ import annotations

from collections import Counter

import msgspec
from redis import Redis


class Snapshot(msgspec.Struct, frozen=True):
    """CPU seconds (user + system), calls per command and memory used, summed over nodes."""

    cpu_s: float
    calls: dict[str, int]
    used_memory: int = 0


class Cost(msgspec.Struct, frozen=True, kw_only=True):
    """Server cost per unit of work (a scan accepted, a scan processed)."""

    units: int
    cpu_us_per_unit: float
    commands_per_unit: float
    script_calls_per_unit: float
    top_commands_per_unit: dict[str, float]
    memory_bytes_per_unit: int
    """Memory the work left behind (finished scans kept until their TTL), per unit."""


def snapshot(*urls: str) -> Snapshot:
    """The servers' CPU time, command counts and memory now, summed (a cluster's primaries)."""
    cpu_s = 0.0
    memory = 0
    calls: Counter[str] = Counter()
    for url in urls:
        client = Redis.from_url(url)
        try:
            cpu = client.info("cpu")
            stats = client.info("commandstats")
            memory += int(client.info("memory")["used_memory"])
        finally:
            client.close()
        cpu_s += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        calls.update(
            {
                name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in stats.items()
                if isinstance(value, dict)
            }
        )
    return Snapshot(cpu_s=cpu_s, calls=dict(calls), used_memory=memory)


def cost(before: Snapshot, after: Snapshot, units: int) -> Cost:
    """Per-unit deltas between two snapshots (``info`` calls themselves excluded)."""
    delta = {
        name: after.calls.get(name, 0) - before.calls.get(name, 0)
        for name in after.calls
        if name not in ("info", "ping", "client|setname", "hello")
    }
    delta = {name: n for name, n in delta.items() if n > 0}
    scripts = sum(n for name, n in delta.items() if name in ("evalsha", "eval", "fcall"))
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:16]
    return Cost(
        units=units,
        cpu_us_per_unit=round((after.cpu_s - before.cpu_s) * 1e6 / units, 1),
        commands_per_unit=round(sum(delta.values()) / units, 2),
        script_calls_per_unit=round(scripts / units, 2),
        top_commands_per_unit={name: round(n / units, 2) for name, n in top},
        memory_bytes_per_unit=(after.used_memory - before.used_memory) // units,
    )
