"""The Redis key layout: every key, stream and group name lives here.

The keyspace is split into ``SCAN_PARTITIONS`` partitions. Each partition's
keys share one hash tag, so every Lua script (which touches a scan's hash, its
history and its partition's streams together) stays in one slot of a Redis
Cluster, while different partitions spread over its primaries. A scan's
partition follows from its id; fleet-wide state (rate limits, quotas, the
recorded partition count) lives under the deployment's own tag.

With one partition its tag is the deployment's, ``{prefix}``: the layout of a
single-node deployment is unchanged.
"""

from __future__ import annotations

import secrets
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from shared.schemas import PRIORITIES, Priority
from shared.settings import MAX_PARTITIONS

GROUP = "analyzers"
WEBHOOK_GROUP = "webhooks"
"""The deliverers' consumer group on each partition's outbox."""


def _tag(prefix: str, index: int, count: int) -> str:
    """A hash tag whose slot lies in the ``index``-th of ``count`` equal slot ranges.

    A cluster assigns slots to primaries in ranges, so partitions whose slots are
    spread evenly land evenly on primaries (when ``count`` is a multiple of them);
    tags taken at random would often pile two partitions on one primary.
    """
    if count == 1:
        return "{" + prefix + "}"
    low = index * REDIS_CLUSTER_HASH_SLOTS // count
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    n = 0
    while True:
        tag = f"{prefix}:{index}.{n}"
        if low <= key_slot(tag.encode()) < high:
            return "{" + tag + "}"
        n += 1


class Partition:
    """The keys of one partition: its streams, schedule and the scans it holds."""

    __slots__ = ("_p", "index")

    def __init__(self, tag: str, index: int) -> None:
        self._p = tag
        self.index = index

    @property
    def tag(self) -> str:
        """The partition's hash tag, ``{...}``."""
        return self._p

    def requests(self, priority: Priority) -> str:
        """Request stream for one priority level."""
        return f"{self._p}:requests:{priority}"

    @property
    def request_streams(self) -> tuple[str, ...]:
        """All request streams, highest priority first."""
        return tuple(self.requests(p) for p in PRIORITIES)

    @property
    def events(self) -> str:
        """Capped stream of every event of this partition, read by notifiers."""
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
    def tenant_active(self) -> str:
        """Hash of tenant -> scans of this partition active now (for per-tenant caps)."""
        return f"{self._p}:tenants:active"

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

    @property
    def scan_index(self) -> str:
        """Sorted set of this partition's scans by creation time (admin listing)."""
        return f"{self._p}:list"

    def tenant_scan_index(self, tenant: str) -> str:
        """Sorted set of one tenant's scans of this partition by creation time."""
        return f"{self._p}:list:tenant:{tenant}"

    def batch(self, batch_id: str) -> str:
        """Hash of one batch: total, terminal counts, tenant, when it finished."""
        return f"{self._p}:batch:{batch_id}"

    def batch_events(self, batch_id: str) -> str:
        """One batch's events (its scans' ends and its progress), for replay."""
        return f"{self._p}:batch:{batch_id}:events"

    def batch_scans(self, batch_id: str) -> str:
        """List of a batch's scan ids, in the order they were sent."""
        return f"{self._p}:batch:{batch_id}:scans"

    @property
    def outbox(self) -> str:
        """Stream of finished scans whose webhooks are due, appended by the terminal scripts."""
        return f"{self._p}:outbox"


class Keys:
    """Key names under one deployment prefix, split into ``partitions``."""

    __slots__ = ("_p", "partitions", "prefix")

    def __init__(self, prefix: str, partitions: int = 1) -> None:
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, not {partitions}")
        self.prefix = prefix
        self._p = "{" + prefix + "}"
        self.partitions = tuple(
            Partition(_tag(prefix, i, partitions), i) for i in range(partitions)
        )

    # --- which partition -------------------------------------------------------------

    def of_scan(self, scan_id: str) -> Partition:
        """The partition holding ``scan_id`` (its first 8 hex digits, modulo the count)."""
        n = len(self.partitions)
        if n == 1:
            return self.partitions[0]
        return self.partitions[int(scan_id[:8], 16) % n]

    def of_key(self, key: str) -> Partition:
        """The partition a key of it (a request stream, say) belongs to."""
        for part in self.partitions:
            if key.startswith(part.tag + ":"):
                return part
        raise ValueError(f"{key} is not a partition's key")

    def of_idempotency(self, key: str) -> Partition:
        """The partition where a scan submitted with idempotency key ``key`` is made."""
        return self.partitions[zlib.crc32(key.encode()) % len(self.partitions)]

    def new_scan_id(self, partition: Partition | None = None) -> str:
        """A fresh, unguessable scan id, in ``partition`` or in any (evenly spread)."""
        scan_id = secrets.token_hex(16)
        n = len(self.partitions)
        if partition is None or n == 1:
            return scan_id
        head = int(scan_id[:8], 16)
        head -= head % n - partition.index
        if head >= 1 << 32:
            head -= n
        return f"{head:08x}{scan_id[8:]}"

    # --- one scan's keys, wherever it lives --------------------------------------------

    def scan(self, scan_id: str) -> str:
        """Hash holding one scan's state."""
        return self.of_scan(scan_id).scan(scan_id)

    def scan_events(self, scan_id: str) -> str:
        """One scan's event history, for replay."""
        return self.of_scan(scan_id).scan_events(scan_id)

    def image(self, scan_id: str) -> str:
        """Uploaded image bytes."""
        return self.of_scan(scan_id).image(scan_id)

    # --- fleet-wide -------------------------------------------------------------------

    @property
    def layout(self) -> str:
        """The partition count the deployment was first started with."""
        return f"{self._p}:partitions"

    @property
    def control(self) -> str:
        """Pub/sub channel for control messages to analyzers (cancel)."""
        return f"{self._p}:control"

    @property
    def controls(self) -> str:
        """Hash of operator controls set at runtime: pauses and limit overrides."""
        return f"{self._p}:controls"

    @property
    def audit(self) -> str:
        """Capped stream of operator actions: who, what, when."""
        return f"{self._p}:audit"

    def ratelimit(self, part: str) -> str:
        """Global rate-limit state: ``requests``, ``input``, ``output`` or ``state``."""
        return f"{self._p}:ratelimit:{part}"

    def tenant_rate(self, tenant: str) -> str:
        """GCRA state of a tenant's requests per second."""
        return f"{self._p}:ratelimit:tenant:{tenant}"

    def tenant_quota(self, tenant: str, day: str) -> str:
        """Scans a tenant submitted on ``day`` (YYYYMMDD, UTC)."""
        return f"{self._p}:quota:{tenant}:{day}"

    @property
    def msgbatch_leases(self) -> str:
        """Sorted set of open provider Message Batches by lease expiry (ms)."""
        return f"{self._p}:msgbatches"

    def msgbatch(self, record_id: str) -> str:
        """Hash of one open provider Message Batch: its scans, state and owner."""
        return f"{self._p}:msgbatch:{record_id}"

    # --- webhooks (fleet-wide) -----------------------------------------------------------

    def webhook_endpoint(self, endpoint_id: str) -> str:
        """Hash of one webhook endpoint: its document and failure tracking."""
        return f"{self._p}:webhook:{endpoint_id}"

    def webhook_endpoints(self, tenant: str) -> str:
        """Set of a tenant's webhook endpoint ids."""
        return f"{self._p}:webhooks:tenant:{tenant}"

    @property
    def webhook_tenants(self) -> str:
        """Set of tenants that have webhook endpoints (admin listing)."""
        return f"{self._p}:webhooks:tenants"

    def webhook_delivery(self, delivery_id: str) -> str:
        """Hash of one delivery: its signed body and its attempts."""
        return f"{self._p}:webhook:delivery:{delivery_id}"

    def webhook_log(self, owner: str) -> str:
        """Sorted set of an endpoint's deliveries by creation time (``cb:<tenant>``: callbacks)."""
        return f"{self._p}:webhook:{owner}:deliveries"

    @property
    def webhook_due(self) -> str:
        """Sorted set of deliveries to attempt, by due time (a claim leases one ahead)."""
        return f"{self._p}:webhooks:due"

    # --- the single partition of a one-partition deployment ----------------------------

    @property
    def only(self) -> Partition:
        """The partition of a deployment that has one (tests and tools use it)."""
        if len(self.partitions) != 1:
            raise ValueError("this deployment has several partitions: name one")
        return self.partitions[0]

    def requests(self, priority: Priority) -> str:
        """Request stream of the only partition."""
        return self.only.requests(priority)

    @property
    def request_streams(self) -> tuple[str, ...]:
        """Request streams of the only partition."""
        return self.only.request_streams

    @property
    def events(self) -> str:
        """Events stream of the only partition."""
        return self.only.events

    @property
    def dead(self) -> str:
        """Dead letters of the only partition."""
        return self.only.dead

    @property
    def delayed(self) -> str:
        """Schedule of the only partition."""
        return self.only.delayed

    @property
    def stats(self) -> str:
        """Counters of the only partition."""
        return self.only.stats

    @property
    def tenant_active(self) -> str:
        """Active scans per tenant in the only partition."""
        return self.only.tenant_active

    def idempotency(self, key: str) -> str:
        """Idempotency key -> scan id, in the partition that key maps to."""
        return self.of_idempotency(key).idempotency(key)
