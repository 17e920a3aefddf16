"""Open provider Message Batches in Redis: which scans each holds, its id, who polls it.

A batch's record is a fleet-wide hash (``{prefix}:msgbatch:<record id>``): one
field per scan (the attempt that owns it: token, entry, stream), the provider's
batch id once created, and the replica that owns it. The owner renews a lease
(a sorted set scored by expiry); when it stops (killed), another replica takes
the lease over and carries on from the record: it polls a created batch by its
id, or hands back the scans of one never sent. The scans' own side lives in
their partitions: ``batch_park`` acknowledges a scan's stream entry while the
attempt keeps its token, so no replica reclaims and runs it again; the attempt
ends through ``finish`` or ``retry``, guarded by that token, exactly once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from analyzer.attempts import AttemptStore, Claim
from shared import events, scripts
from shared.clock import now_ms
from shared.keys import GROUP
from shared.schemas import ImageSent, Progress, ScanJob

_SCAN = "scan:"
_BATCH_ID = "batch_id"


class BatchedScan(msgspec.Struct, frozen=True, kw_only=True):
    """A scan's attempt as a batch record holds it: enough to finish it from any replica."""

    job: ScanJob
    entry_id: str
    stream: str
    token: str
    attempt: int
    image: ImageSent | None = None
    claimed_ms: int = 0

    @classmethod
    def of(cls, claim: Claim, image: ImageSent) -> BatchedScan:
        """The record of a claimed attempt."""
        return cls(
            job=claim.job,
            entry_id=claim.entry_id,
            stream=claim.stream,
            token=claim.token,
            attempt=claim.attempt,
            image=image,
            claimed_ms=now_ms(),
        )

    @property
    def claim(self) -> Claim:
        """The attempt, to finish, retry or hand back through the usual scripts."""
        return Claim(
            job=self.job,
            entry_id=self.entry_id,
            stream=self.stream,
            token=self.token,
            attempt=self.attempt,
            image=None,
        )


class BatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One open batch: its scans by id and, once created, the provider's batch id."""

    scans: dict[str, BatchedScan]
    batch_id: str | None = None


_encode = msgspec.json.Encoder().encode
_decode_scan = msgspec.json.Decoder(BatchedScan).decode


class BatchRegistry:
    """Records and leases of the open provider batches, shared by every replica."""

    def __init__(self, store: AttemptStore, owner: str, lease_s: float) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.owner = owner
        self.lease_ms = int(lease_s * 1000)

    async def add(self, record_id: str, scan: BatchedScan) -> None:
        """Write ``scan`` into the record (made if new), leased to this replica."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.msgbatch(record_id),
            mapping={"owner": self.owner, _SCAN + scan.job.scan_id: _encode(scan)},
        )
        pipe.zadd(self.keys.msgbatch_leases, {record_id: now_ms() + self.lease_ms})
        await pipe.execute()

    async def drop(self, record_id: str, scan_ids: list[str]) -> None:
        """Take scans out of the record (never sent: cancelled, or handed back)."""
        if scan_ids:
            await self.redis.hdel(self.keys.msgbatch(record_id), *(_SCAN + s for s in scan_ids))

    async def sent(self, record_id: str, batch_id: str) -> None:
        """The provider accepted the batch: from now on it is polled, never sent again."""
        await self.redis.hset(self.keys.msgbatch(record_id), _BATCH_ID, batch_id)

    async def close(self, record_id: str) -> None:
        """Forget a batch whose every scan has an outcome (or was handed back)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.msgbatch(record_id))
        pipe.zrem(self.keys.msgbatch_leases, record_id)
        await pipe.execute()

    async def load(self, record_id: str) -> BatchRecord | None:
        """The record, or None when it is gone."""
        raw: Any = await self.redis.hgetall(self.keys.msgbatch(record_id))
        if not raw:
            return None
        scans = {
            key.decode().removeprefix(_SCAN): _decode_scan(value)
            for key, value in raw.items()
            if key.startswith(_SCAN.encode())
        }
        batch_id = raw.get(_BATCH_ID.encode())
        return BatchRecord(scans=scans, batch_id=batch_id.decode() if batch_id else None)

    async def lease(self, record_id: str, *, release: bool = False) -> int:
        """Renew (or take over an expired) lease: 1 held, 0 another's, -1 gone.

        ``release``: keep ownership but let the lease lapse now, so another replica
        takes the batch at once (a stopping replica).
        """
        now = now_ms()
        return await self.store.run(
            scripts.MSGBATCH_LEASE,
            scripts.LeaseKeys(
                leases=self.keys.msgbatch_leases, record=self.keys.msgbatch(record_id)
            ),
            scripts.LeaseArgs(
                record_id=record_id,
                owner=self.owner,
                now_ms=now,
                until_ms=0 if release else now + self.lease_ms,
            ),
        )

    async def expired(self, limit: int = 20) -> list[str]:
        """Records whose lease has lapsed: their owner died, stalled or stopped."""
        ids: Any = await self.redis.zrangebyscore(
            self.keys.msgbatch_leases, "-inf", now_ms(), 0, limit
        )
        return [raw.decode() for raw in ids]

    async def park(self, claim: Claim, progress: Progress) -> bool:
        """Acknowledge the attempt's entry (its request is in a batch); False if not owned."""
        sid = claim.job.scan_id
        part = self.keys.of_scan(sid)
        return await self.store.run(
            scripts.BATCH_PARK,
            scripts.ParkKeys(
                scan=part.scan(sid),
                events=part.events,
                history=part.scan_events(sid),
                stream=claim.stream,
            ),
            scripts.ParkArgs(
                scan_id=sid,
                tenant=claim.job.tenant,
                token=claim.token,
                entry_id=claim.entry_id,
                group=GROUP,
                event=events.event(sid, "progress", "active", progress, claim.attempt),
                maxlen=self.store.maxlen,
                scan_maxlen=self.store.scan_maxlen,
            ),
        )

    async def owned(self, scans: list[BatchedScan]) -> list[bool]:
        """Whether each attempt still owns its scan (not cancelled since it was collected)."""
        pipe = self.redis.pipeline(transaction=False)
        for scan in scans:
            pipe.hget(self.keys.scan(scan.job.scan_id), "token")
        tokens: list[Any] = await pipe.execute()
        return [t is not None and t.decode() == s.token for t, s in zip(tokens, scans, strict=True)]
