"""Batches in Redis: accept hundreds of scans in one script call, read, cancel and replay them.

A batch lives in one partition, with its scans: its id and theirs carry that
partition's tag (:meth:`shared.keys.Keys.new_scan_id`), so the accept is one
Lua call and every script that ends a scan (finish, cancel, requeue) updates
the batch's hash and stream in the same atomic step (the hash's fields:
:mod:`shared.batchrecord`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import msgspec

from shared import events, scripts
from shared.batchrecord import BatchHead, decode_head, summarize
from shared.clock import iso, now_ms
from shared.keys import Partition
from shared.replies import text
from shared.scanlist import index_horizon_ms
from shared.schemas import (
    TERMINAL_STATES,
    BatchAggregate,
    BatchCancelled,
    BatchCounts,
    BatchEvent,
    BatchRetried,
    BatchStatus,
    Priority,
    ScanJob,
    ScanResult,
)
from shared.store import Duplicate, OverQuota, ScanStore, encode, is_scan_id

_decode_result = msgspec.json.Decoder(ScanResult).decode
_decode_aggregate = msgspec.json.Decoder(BatchAggregate).decode


class BatchItem(msgspec.Struct, frozen=True, kw_only=True):
    """One validated scan of a batch, ready to store."""

    job: ScanJob
    image: bytes | None
    due_ms: int = 0


class BatchStore(ScanStore):
    """The gateway's reads and writes of batches."""

    def new_ids(self, count: int, idempotency_key: str | None) -> tuple[str, list[str]]:
        """A batch id and ``count`` scan ids, all in one partition (the key's, if any)."""
        if idempotency_key is not None:
            part = self.keys.of_idempotency(idempotency_key)
        else:
            part = self.keys.of_scan(self.keys.new_scan_id())
        return self.keys.new_scan_id(part), [self.keys.new_scan_id(part) for _ in range(count)]

    async def submit_batch(
        self,
        batch_id: str,
        tenant: str,
        items: list[BatchItem],
        *,
        idempotency: tuple[str, str] | None = None,
        webhook: bool = False,
    ) -> Duplicate | OverQuota | None:
        """Accept every scan of the batch in one script call, or none.

        ``webhook``: the tenant has endpoints, so each scan's end and the batch's end
        are appended to the outbox (as ``POST /api/scans`` marks a single scan).

        The day's quota is spent for all of them first (and given back for a replay):
        OverQuota, with nothing written, when it cannot cover the batch.
        """
        part = self.keys.of_scan(batch_id)
        idem_key, body_hash = idempotency or ("", "")
        quota = (await self.controls.current()).limits.tenant_scans_per_day
        if quota:
            taken = await self.run(
                scripts.TAKE_QUOTA_N,
                scripts.QuotaKeys(quota=self._quota_key(tenant)),
                scripts.TakeQuotaArgs(per_day=quota, ttl=2 * 86400, count=len(items)),
            )
            if not taken.ok:
                seen = await self._seen(part, idempotency)
                return seen if seen is not None else OverQuota(taken.used)
        now = now_ms()
        scan_keys: list[str] = []
        args: list[bytes | str | int] = []
        for item in items:
            sid = item.job.scan_id
            if self.keys.of_scan(sid) is not part:
                raise ValueError("a batch's scans need ids from new_ids()")
            due = item.due_ms if item.due_ms > now else 0
            if due:
                ev = events.event(sid, "scheduled", "scheduled", events.scheduled(due), 0)
            else:
                ev = events.event(sid, "queued", "queued", events.QUEUED, 0)
            scan_keys += [part.scan(sid), part.scan_events(sid), part.image(sid)]
            args += [sid, item.job.priority, encode(item.job), due, ev, item.image or b""]
        first = BatchEvent(
            type="batch",
            batch_id=batch_id,
            total=len(items),
            counts=BatchCounts(pending=len(items)),
            progress=0,
            at_ms=now,
        )
        run = self.run.run_durable if self.settings.durability == "strict" else self.run
        reply = await run(
            scripts.SUBMIT_BATCH,
            scripts.SubmitBatchKeys(
                batch=part.batch(batch_id),
                batch_events=part.batch_events(batch_id),
                batch_scans=part.batch_scans(batch_id),
                events=part.events,
                idempotency=part.idempotency(idem_key),
                delayed=part.delayed,
                stream_high=part.requests("high"),
                stream_normal=part.requests("normal"),
                stream_low=part.requests("low"),
                scan_index=part.scan_index,
                tenant_scan_index=part.tenant_scan_index(tenant),
                scans=tuple(scan_keys),
            ),
            scripts.SubmitBatchArgs(
                batch_id=batch_id,
                tenant=tenant,
                now_ms=now,
                image_ttl=self.settings.image_ttl_s,
                history_ttl=self.history_ttl,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
                body_hash=body_hash,
                idempotency_ttl=self.settings.idempotency_ttl_s,
                batch_event=encode(first),
                index_horizon_ms=index_horizon_ms(self.settings),
                index_max=self.settings.scan_index_max,
                webhook=int(webhook),
                items=tuple(args),
            ),
        )
        if isinstance(reply, scripts.Duplicate):
            if quota:  # a replay does not spend the day's quota
                await self.redis.decrby(self._quota_key(tenant), len(items))
            return Duplicate(reply.scan_id, reply.body_hash == body_hash)
        return None

    async def head(self, batch_id: str) -> BatchHead | None:
        """The batch's hash; None when unknown or expired."""
        if not is_scan_id(batch_id):
            return None
        raw: Any = await self.redis.hgetall(self.keys.of_scan(batch_id).batch(batch_id))
        return decode_head(batch_id, raw)

    async def scan_ids(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """The batch's scan ids from ``start`` to ``stop`` (inclusive), in the order sent."""
        raw: Any = await self.redis.lrange(
            self.keys.of_scan(batch_id).batch_scans(batch_id), start, stop
        )
        return [item.decode() for item in raw]

    async def _states(self, part: Partition, scan_ids: list[str], *fields: str) -> list[Any]:
        """``HMGET fields`` of every scan, in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        for sid in scan_ids:
            pipe.hmget(part.scan(sid), list(fields))
        return list(await pipe.execute())

    async def counts(self, head: BatchHead) -> BatchCounts:
        """Scans per state: from the hash once finished, else from every scan's state."""
        ended = head.completed + head.failed + head.cancelled
        if head.finished_ms is not None:
            return BatchCounts(
                completed=head.completed, failed=head.failed, cancelled=head.cancelled
            )
        part = self.keys.of_scan(head.batch_id)
        states = Counter(
            text(state)
            for (state,) in await self._states(part, await self.scan_ids(head.batch_id), "state")
        )
        return BatchCounts(
            scheduled=states["scheduled"],
            queued=states["queued"],
            active=states["active"],
            retrying=states["retrying"],
            completed=head.completed,
            failed=head.failed,
            cancelled=head.cancelled,
            pending=head.total - ended,
        )

    async def aggregate(self, head: BatchHead) -> BatchAggregate:
        """The finished batch's aggregate, computed once per finish and cached in its hash."""
        stamp = f"{head.finished_ms} ".encode()
        if head.aggregate is not None and head.aggregate.startswith(stamp):
            return _decode_aggregate(head.aggregate[len(stamp) :])
        part = self.keys.of_scan(head.batch_id)
        raw = await self._states(part, await self.scan_ids(head.batch_id), "result")
        made = summarize([_decode_result(result) for (result,) in raw if result])
        # Stamped with the finish it describes: a replay (requeue) makes it stale.
        await self.redis.hset(part.batch(head.batch_id), "aggregate", stamp + encode(made))
        return made

    async def status(self, head: BatchHead, cursor: int, limit: int) -> BatchStatus:
        """The batch's counts, progress, one page of scan ids and, once finished, its aggregate."""
        ended = head.completed + head.failed + head.cancelled
        page = await self.scan_ids(head.batch_id, cursor, cursor + limit - 1)
        return BatchStatus(
            batch_id=head.batch_id,
            state=head.state,  # type: ignore[arg-type]  # one of the three
            total=head.total,
            counts=await self.counts(head),
            progress=ended * 100 // head.total,
            scan_ids=page,
            next_cursor=str(cursor + limit) if cursor + limit < head.total else None,
            created_at=iso(head.created_ms),
            finished_at=iso(head.finished_ms) if head.finished_ms is not None else None,
            aggregate=await self.aggregate(head) if head.finished_ms is not None else None,
        )

    async def cancel_batch(self, head: BatchHead) -> BatchCancelled:
        """Cancel every scan of the batch that has not ended; one pipeline of scripts."""
        part = self.keys.of_scan(head.batch_id)
        ids = await self.scan_ids(head.batch_id)
        rows = await self._states(part, ids, "state", "attempts", "priority")
        open_ = [
            (sid, int(attempts or 0), _priority(priority))
            for sid, (state, attempts, priority) in zip(ids, rows, strict=True)
            if state is not None and text(state) not in TERMINAL_STATES
        ]
        if open_:
            # Before the cancels: the last one's `batch.completed` then says "cancelled".
            await self.redis.hset(part.batch(head.batch_id), "cancelled_ms", now_ms())
        replies = await asyncio.gather(
            *(
                self.run_cancel(sid, head.tenant, attempts, priority, head.batch_id)
                for sid, attempts, priority in open_
            )
        )
        stopped = 0
        for (sid, _, _), reply in zip(open_, replies, strict=True):
            outcome = reply.outcome
            if outcome == "recount":  # it moved on meanwhile: the one-scan path retries
                outcome = (await self.cancel(sid)).outcome
            stopped += outcome == "ok"
        if open_ and not stopped:  # every one ended on its own meanwhile: not a cancelled batch
            await self.redis.hdel(part.batch(head.batch_id), "cancelled_ms")
        after = await self.head(head.batch_id) or head
        return BatchCancelled(
            batch_id=head.batch_id,
            state=after.state,  # type: ignore[arg-type]
            cancelled=stopped,
            counts=await self.counts(after),
        )

    async def retry_batch(self, head: BatchHead) -> BatchRetried:
        """Replay every failed scan of the batch with fresh attempts (their dead letters go)."""
        part = self.keys.of_scan(head.batch_id)
        ids = await self.scan_ids(head.batch_id)
        rows = await self._states(part, ids, "state", "priority")
        failed = [
            (sid, _priority(priority))
            for sid, (state, priority) in zip(ids, rows, strict=True)
            if text(state) == "failed"
        ]
        replies = await asyncio.gather(
            *(
                self.run_requeue(sid, head.tenant, priority, head.batch_id)
                for sid, priority in failed
            )
        )
        retried = [
            sid for (sid, _), reply in zip(failed, replies, strict=True) if reply.outcome == "ok"
        ]
        return BatchRetried(batch_id=head.batch_id, scan_ids=retried)


def _priority(raw: Any) -> Priority:
    return cast("Priority", text(raw) or "normal")  # as stored by the submit script
