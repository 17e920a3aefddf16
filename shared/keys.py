"""The Redis key layout: every key, stream and group name lives here.

Every key carries the same hash tag ``{prefix}`` so that the Lua scripts,
which touch a scan's hash, its events and the shared streams together,
stay valid on Redis Cluster (one slot per deployment, as BullMQ does).
"""

from __future__ import annotations

from shared.schemas import PRIORITIES, Priority

GROUP = "analyzers"


class Keys:
    """Key names under one deployment prefix."""

    __slots__ = ("_p", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._p = "{" + prefix + "}"

    def requests(self, priority: Priority) -> str:
        """Request stream for one priority level."""
        return f"{self._p}:requests:{priority}"

    @property
    def request_streams(self) -> tuple[str, ...]:
        """All request streams, highest priority first."""
        return tuple(self.requests(p) for p in PRIORITIES)

    @property
    def events(self) -> str:
        """Capped stream of every event, read by notifiers."""
        return f"{self._p}:events"

    @property
    def dead(self) -> str:
        """Dead-letter stream."""
        return f"{self._p}:dead"

    @property
    def delayed(self) -> str:
        """Sorted set of retries and scheduled scans by due time."""
        return f"{self._p}:delayed"

    @property
    def stats(self) -> str:
        """Hash of lifetime counters (completed, failed, cancelled)."""
        return f"{self._p}:stats"

    @property
    def control(self) -> str:
        """Pub/sub channel for control messages to analyzers (cancel)."""
        return f"{self._p}:control"

    def ratelimit(self, part: str) -> str:
        """Global rate-limit state: ``requests``, ``input``, ``output`` or ``state``."""
        return f"{self._p}:ratelimit:{part}"

    @property
    def tenant_active(self) -> str:
        """Hash of tenant -> scans active now (for per-tenant caps)."""
        return f"{self._p}:tenants:active"

    def tenant_rate(self, tenant: str) -> str:
        """GCRA state of a tenant's requests per second."""
        return f"{self._p}:ratelimit:tenant:{tenant}"

    def tenant_quota(self, tenant: str, day: str) -> str:
        """Scans a tenant submitted on ``day`` (YYYYMMDD, UTC)."""
        return f"{self._p}:quota:{tenant}:{day}"

    def scan(self, scan_id: str) -> str:
        """Hash holding one scan's state."""
        return f"{self._p}:scan:{scan_id}"

    def scan_events(self, scan_id: str) -> str:
        """One scan's event history, for replay."""
        return f"{self._p}:scan:{scan_id}:events"

    def image(self, scan_id: str) -> str:
        """Uploaded image bytes."""
        return f"{self._p}:scan:{scan_id}:image"

    def idempotency(self, key: str) -> str:
        """Idempotency key -> scan id."""
        return f"{self._p}:idem:{key}"
