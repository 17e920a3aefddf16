"""Operator bulk actions: retry or purge dead letters by filter, cancel a tenant's queue.

Each action first finds its matches (a dry run stops there and answers the
count), then acts on each through the same script a single action uses (the
replay of ``requeue``, ``cancel``), so a bulk action is exactly many single
ones: a scan that moved on in between is left alone and not counted as done.
Dead letters are read per partition, within the time range only (stream ids
are times), a page at a time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shared.schemas import Tenant
from shared.store import ScanStore, dead_letter

PAGE = 500
CONCURRENCY = 32
"""Single actions in flight at once: a bulk action must not crowd out the API."""

WAITING = (b"queued", b"scheduled", b"retrying")
"""States of a scan that waits to run (a paused one is ``scheduled``)."""

AwareDatetime = Annotated[datetime, Meta(tz=True)]


class DeadFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which dead letters: all of the given conditions hold."""

    tenant: Tenant | None = None
    kind: str | None = None
    """The error kind (``timeout``, ``invalid_image``, ``poison``...)."""
    failed_after: AwareDatetime | None = None
    failed_before: AwareDatetime | None = None
    dry_run: bool = False
    """Only count the matches."""


class CancelQueued(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Cancel every scan of ``tenant`` that waits (queued, scheduled, retrying, paused)."""

    tenant: Tenant
    dry_run: bool = False


class BulkResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a bulk action found and did."""

    matched: int
    done: int
    """0 on a dry run; less than ``matched`` when some moved on meanwhile."""
    dry_run: bool


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


class BulkActions:
    """Bulk operator actions on one deployment's scans."""

    def __init__(self, store: ScanStore) -> None:
        self.store = store
        self.redis = store.redis

    async def _dead_matches(self, where: DeadFilter) -> list[tuple[str, str, str, bool]]:
        """(dead stream, entry id, scan id, is a scan) of every matching dead letter."""
        after, before = _ms(where.failed_after), _ms(where.failed_before)
        out: list[tuple[str, str, str, bool]] = []
        if before is not None and before <= 0:
            return out  # nothing failed before 1970 (and "(0-0" is no valid end)
        low = f"{max(after, 0)}-0" if after is not None else "-"
        high = f"({before}-0" if before is not None else "+"
        for part in self.store.keys.partitions:
            start = low
            while True:
                raw: Any = await self.redis.xrange(part.dead, min=start, max=high, count=PAGE)
                for entry_id, fields in raw:
                    letter = dead_letter(entry_id, fields)
                    if where.tenant is not None and letter.tenant != where.tenant:
                        continue
                    if where.kind is not None and letter.error.kind != where.kind:
                        continue
                    out.append((part.dead, letter.id, letter.scan_id, b"job" in fields))
                if len(raw) < PAGE:
                    break
                start = "(" + raw[-1][0].decode()
        return out

    async def retry_dead(self, where: DeadFilter) -> BulkResult:
        """Replay every matching failed scan (poison entries hold no scan to replay)."""
        matches = [m for m in await self._dead_matches(where) if m[3]]
        if where.dry_run:
            return BulkResult(matched=len(matches), done=0, dry_run=True)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(scan_id: str) -> bool:
            async with gate:
                return (await self.store.requeue(scan_id)).outcome == "ok"

        done = await asyncio.gather(*(one(sid) for _, _, sid, _ in matches))
        return BulkResult(matched=len(matches), done=sum(done), dry_run=False)

    async def purge_dead(self, where: DeadFilter) -> BulkResult:
        """Delete every matching dead letter (the failed scans stay until they expire)."""
        matches = await self._dead_matches(where)
        if where.dry_run:
            return BulkResult(matched=len(matches), done=0, dry_run=True)
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _, _ in matches:
            by_stream.setdefault(stream, []).append(entry_id)
        done = 0
        for stream, ids in by_stream.items():
            for i in range(0, len(ids), PAGE):
                done += int(await self.redis.xdel(stream, *ids[i : i + PAGE]))
        return BulkResult(matched=len(matches), done=done, dry_run=False)

    async def _waiting(self, tenant: str) -> list[str]:
        """Ids of ``tenant``'s scans that wait in a request stream or the schedule."""
        found: set[str] = set()
        for part in self.store.keys.partitions:
            candidates: set[str] = set()
            for stream in part.request_streams:
                start = "-"
                while True:
                    raw: Any = await self.redis.xrange(stream, min=start, max="+", count=PAGE)
                    candidates.update(f[b"scan_id"].decode() for _, f in raw if b"scan_id" in f)
                    if len(raw) < PAGE:
                        break
                    start = "(" + raw[-1][0].decode()
            scheduled: Any = await self.redis.zrange(part.delayed, 0, -1)
            candidates.update(m.decode() for m in scheduled)
            ids = sorted(candidates)
            for i in range(0, len(ids), PAGE):
                chunk = ids[i : i + PAGE]
                pipe = self.redis.pipeline(transaction=False)
                for sid in chunk:
                    pipe.hmget(part.scan(sid), ["tenant", "state"])
                for sid, (owner, state) in zip(chunk, await pipe.execute(), strict=True):
                    if owner == tenant.encode() and state in WAITING:
                        found.add(sid)
        return sorted(found)

    async def cancel_queued(self, what: CancelQueued) -> BulkResult:
        """Cancel ``what.tenant``'s waiting scans; running ones are left to finish."""
        ids = await self._waiting(what.tenant)
        if what.dry_run:
            return BulkResult(matched=len(ids), done=0, dry_run=True)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(scan_id: str) -> bool:
            async with gate:
                record = await self.store.record(scan_id)
                # Read again: one that started meanwhile is running, no longer queued.
                if record is None or record.state not in ("queued", "scheduled", "retrying"):
                    return False
                return (await self.store.cancel(scan_id)).outcome == "ok"

        done = await asyncio.gather(*(one(sid) for sid in ids))
        return BulkResult(matched=len(ids), done=sum(done), dry_run=False)
