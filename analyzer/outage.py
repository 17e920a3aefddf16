"""How the analyzer's long-lived loops ride out a Redis outage of any length.

redis-py's ``Retry`` (``shared/connection.py``) already retries each command on
a dropped connection, briefly (two more tries within about a second): that
covers a blip, and no loop here repeats it. What it cannot cover is an outage
that lasts: a Redis restart, a failover, a paused server. The read loop, the
cancel listener and the maintenance duties must outlive that without exiting
(an analyzer that exits mid-outage turns a Redis restart into a fleet restart),
so each keeps trying on its own, through this one helper: one warning when the
outage starts, one line when it ends, and a jittered exponential pause between
tries (at least half of each step, so a fleet of analyzers neither hammers a
server that is coming back nor retries in lockstep).
"""

from __future__ import annotations

import time

import structlog
from redis.backoff import EqualJitterBackoff

log = structlog.get_logger("analyzer")

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
"""Longest pause between tries: how late a loop may notice that Redis is back."""


class Outage:
    """One loop's view of Redis being unreachable."""

    def __init__(self, loop: str) -> None:
        self.loop = loop
        self.failures = 0
        self._since = 0.0
        self._backoff = EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)

    def failed(self, exc: Exception) -> float:
        """Record a failed try; return the seconds to wait before the next one."""
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
            log.warning("redis unreachable; retrying", loop=self.loop, error=str(exc))
        return self._backoff.compute(self.failures)

    def recovered(self) -> None:
        """Record a successful try; logs the end of an outage once."""
        if self.failures:
            log.info(
                "redis reachable again",
                loop=self.loop,
                failed_tries=self.failures,
                outage_s=round(time.monotonic() - self._since, 3),
            )
            self.failures = 0
