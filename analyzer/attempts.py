"""Scan state in Redis as an analyzer sees it: one attempt's transitions, each atomic.

Every write after the claim carries the attempt's token; a script refuses it
once the attempt no longer owns the scan (cancelled, reclaimed, handed back).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec

from shared import events, scripts
from shared.clock import now_ms
from shared.keys import GROUP, Partition
from shared.schemas import Progress, ScanError, ScanJob, ScanResult
from shared.store import StoreBase

encode = msgspec.json.Encoder().encode

DEFER_MS = 250
"""How long a scan waits when its tenant is at its cap of active scans."""

PAUSE_DEFER_MS = 500
"""How long a paused scan waits in the schedule before its pause is checked again:
a resume takes effect within this plus the controls' refresh (about a second)."""

RECOUNTS = 3
"""Claims tried when the entry's attempt count is stale (a reclaimed entry)."""


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt that now owns a scan."""

    job: ScanJob
    entry_id: str
    stream: str
    token: str
    attempt: int
    image: bytes | None
    exhausted: bool = False


class AttemptStore(StoreBase):
    """Claim, progress, finish, retry, hand back and promote scans."""

    async def claim(
        self,
        job: ScanJob,
        entry_id: str,
        stream: str,
        consumer: str,
        progress: Progress | tuple[Progress, Progress],
        *,
        attempts: int = -1,
    ) -> Claim | None:
        """Own the scan for a new attempt; None when it must not run (finished, superseded).

        ``progress``: the attempt's first progress, or a pair whose second is
        published too when the image is already stored (its fetch is instant), which
        saves the attempt a round trip. ``attempts`` is the count the entry was
        queued with (-1: unknown); the events are built for the next attempt.
        """
        first, then = progress if isinstance(progress, tuple) else (progress, None)
        sid = job.scan_id
        k = self.keys.of_scan(sid)
        token = uuid.uuid4().hex
        live = await self.controls.current()
        cap = live.limits.tenant_max_active
        pause = live.paused(job.tenant, job.priority)
        keys = scripts.ClaimKeys(
            scan=k.scan(sid),
            events=k.events,
            history=k.scan_events(sid),
            stream=stream,
            image=k.image(sid),
            tenant_active=k.tenant_active,
            delayed=k.delayed,
        )
        for _ in range(RECOUNTS):
            now = now_ms()
            deferred = b""
            if cap:
                deferred = events.event(
                    sid, "scheduled", "scheduled", events.deferred(cap), max(attempts, 0)
                )
            paused_event = b""
            if pause is not None:
                paused_event = events.event(
                    sid, "scheduled", "scheduled", events.paused(pause.describe()), max(attempts, 0)
                )
            reply = await self.run(
                scripts.CLAIM,
                keys,
                scripts.ClaimArgs(
                    scan_id=sid,
                    tenant=job.tenant,
                    entry_id=entry_id,
                    group=GROUP,
                    consumer=consumer,
                    token=token,
                    now_ms=now,
                    attempts=attempts,
                    max_attempts=self.settings.max_attempts,
                    event=events.event(sid, "progress", "active", first, attempts + 1),
                    then_event=(
                        events.event(sid, "progress", "active", then, attempts + 1)
                        if then is not None
                        else b""
                    ),
                    tenant_cap=cap,
                    defer_until_ms=now + DEFER_MS,
                    deferred_event=deferred,
                    pause=pause.field if pause is not None else "",
                    pause_until_ms=now + PAUSE_DEFER_MS,
                    paused_event=paused_event,
                    maxlen=self.maxlen,
                    scan_maxlen=self.scan_maxlen,
                ),
            )
            if isinstance(reply, scripts.Recount):
                attempts = reply.attempts
                continue
            if isinstance(reply, scripts.Skipped):
                return None
            return Claim(
                job=job,
                entry_id=entry_id,
                stream=stream,
                token=token,
                attempt=reply.attempt,
                image=reply.image,
                exhausted=reply.exhausted,
            )
        return None  # the scan keeps moving under us: whoever moves it runs it

    async def progress(self, claim: Claim, progress: Progress) -> bool:
        """Publish progress; False when this attempt no longer owns the scan."""
        sid = claim.job.scan_id
        return await self.run(
            scripts.PROGRESS,
            self.event_keys(sid),
            scripts.ProgressArgs(
                scan_id=sid,
                tenant=claim.job.tenant,
                token=claim.token,
                event=events.event(sid, "progress", "active", progress, claim.attempt),
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
            ),
        )

    def _held(self, claim: Claim, held: Progress | None) -> bytes:
        """The event of a progress report held back to go out with the attempt's end."""
        if held is None:
            return b""
        return events.event(claim.job.scan_id, "progress", "active", held, claim.attempt)

    async def complete(
        self, claim: Claim, result: ScanResult, held: Progress | None = None
    ) -> bool:
        """Write the result and finish the scan (publishing ``held`` first); False for a
        stale attempt."""
        ev = events.event(
            claim.job.scan_id,
            "completed",
            "completed",
            events.COMPLETED,
            claim.attempt,
            verdict=result.analysis.verdict,
        )
        return await self._finish(claim, "completed", encode(result), ev, self._held(claim, held))

    async def fail(
        self, claim: Claim, error: ScanError, stage_pct: int, held: Progress | None = None
    ) -> bool:
        """Mark the scan failed and dead-letter it (publishing ``held`` first); False for a
        stale attempt."""
        progress = Progress(stage="failed", percentage=stage_pct, message=error.message)
        ev = events.event(
            claim.job.scan_id, "failed", "failed", progress, claim.attempt, error=error
        )
        return await self._finish(claim, "failed", encode(error), ev, self._held(claim, held))

    async def _finish(
        self, claim: Claim, state: str, outcome: bytes, ev: bytes, held: bytes
    ) -> bool:
        sid = claim.job.scan_id
        k = self.keys.of_scan(sid)
        batch, batch_events, batch_scans = self.batch_of(sid, claim.job.batch)
        return await self.run(
            scripts.FINISH,
            scripts.FinishKeys(
                scan=k.scan(sid),
                events=k.events,
                history=k.scan_events(sid),
                stream=claim.stream,
                stats=k.stats,
                image=k.image(sid),
                dead=k.dead,
                tenant_active=k.tenant_active,
                batch=batch,
                batch_events=batch_events,
                batch_scans=batch_scans,
                outbox=k.outbox,
            ),
            scripts.FinishArgs(
                scan_id=sid,
                tenant=claim.job.tenant,
                token=claim.token,
                now_ms=now_ms(),
                state=state,
                outcome=outcome,
                attempt=claim.attempt,
                held=held,
                event=ev,
                group=GROUP,
                entry_id=claim.entry_id,
                retention_ttl=self.history_ttl,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
                dead_maxlen=self.settings.dead_maxlen,
                batch_id=claim.job.batch or "",
            ),
        )

    async def retry(
        self, claim: Claim, error: ScanError, delay_s: float, held: Progress | None = None
    ) -> bool:
        """Acknowledge and schedule the next attempt ``delay_s`` from now, atomically
        (publishing ``held`` first)."""
        sid = claim.job.scan_id
        k = self.keys.of_scan(sid)
        progress = events.retrying(claim.attempt, error, delay_s)
        return await self.run(
            scripts.RETRY,
            scripts.RetryKeys(
                scan=k.scan(sid),
                events=k.events,
                history=k.scan_events(sid),
                stream=claim.stream,
                delayed=k.delayed,
                tenant_active=k.tenant_active,
            ),
            scripts.RetryArgs(
                scan_id=sid,
                tenant=claim.job.tenant,
                token=claim.token,
                due_ms=now_ms() + int(delay_s * 1000),
                error=encode(error),
                held=self._held(claim, held),
                event=events.event(
                    sid, "retrying", "retrying", progress, claim.attempt, error=error
                ),
                group=GROUP,
                entry_id=claim.entry_id,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
            ),
        )

    async def release(
        self, job: ScanJob, entry_id: str, stream: str, claim: Claim | None = None
    ) -> bool:
        """Hand an entry back for immediate redelivery (``claim`` None if never started)."""
        sid = job.scan_id
        k = self.keys.of_scan(sid)
        ev = b""
        if claim is not None:
            ev = events.event(sid, "queued", "queued", events.HANDED_BACK, claim.attempt)
        return await self.run(
            scripts.RELEASE,
            scripts.ReleaseKeys(
                scan=k.scan(sid),
                events=k.events,
                history=k.scan_events(sid),
                stream=stream,
                tenant_active=k.tenant_active,
            ),
            scripts.ReleaseArgs(
                scan_id=sid,
                tenant=job.tenant,
                token=claim.token if claim is not None else "",
                entry_id=entry_id,
                event=ev,
                group=GROUP,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
            ),
        )

    async def renew(self, stream: str, consumer: str, entry_ids: list[str]) -> int:
        """Reset the idle time of this consumer's in-flight entries; returns how many."""
        if not entry_ids:
            return 0
        return await self.run(
            scripts.RENEW,
            scripts.RenewKeys(stream=stream),
            scripts.RenewArgs(group=GROUP, consumer=consumer, entry_ids=tuple(entry_ids)),
        )

    async def promote(self, k: Partition, limit: int = 200) -> tuple[int, int | None]:
        """Queue ``k``'s due retries and scheduled scans; returns (promoted, next due ms)."""
        now = now_ms()
        due: Any = await self.redis.zrangebyscore(k.delayed, "-inf", now, 0, limit)
        promoted = 0
        if due:
            pipe = self.redis.pipeline(transaction=False)
            for raw_id in due:
                pipe.hmget(k.scan(raw_id.decode()), ["tenant", "priority", "attempts"])
            found: list[list[Any]] = await pipe.execute()
            due, found = await self._hold_paused(k, due, found, now)
            # Gathered, so the runner sends every scan's script in one pipeline.
            done = await asyncio.gather(
                *(
                    self._promote_one(k, raw_id.decode(), fields, now)
                    for raw_id, fields in zip(due, found, strict=True)
                )
            )
            promoted = sum(done)
        head: Any = await self.redis.zrange(k.delayed, 0, 0, withscores=True)
        return promoted, (int(head[0][1]) if head else None)

    async def _hold_paused(
        self, k: Partition, due: list[Any], found: list[list[Any]], now: int
    ) -> tuple[list[Any], list[list[Any]]]:
        """Keep paused scans in the schedule (see ``hold.lua``); return the others.

        A stale view of a pause (at most a second old) is caught by the claim.
        """
        live = await self.controls.current()
        if not live.pauses:
            return due, found
        keep: list[Any] = []
        kept: list[list[Any]] = []
        holds = []
        for raw_id, fields in zip(due, found, strict=True):
            tenant = (fields[0] or b"default").decode()
            pause = live.paused(tenant, (fields[1] or b"normal").decode())
            if pause is None:
                keep.append(raw_id)
                kept.append(fields)
                continue
            sid, made = raw_id.decode(), int(fields[2] or 0)
            holds.append(
                self.run(
                    scripts.HOLD,
                    scripts.HoldKeys(
                        delayed=k.delayed,
                        scan=k.scan(sid),
                        events=k.events,
                        history=k.scan_events(sid),
                    ),
                    scripts.HoldArgs(
                        scan_id=sid,
                        tenant=tenant,
                        attempts=made,
                        until_ms=now + PAUSE_DEFER_MS,
                        pause=pause.field,
                        event=events.event(
                            sid, "scheduled", "scheduled", events.paused(pause.describe()), made
                        ),
                        maxlen=self.maxlen,
                        scan_maxlen=self.scan_maxlen,
                    ),
                )
            )
        # Gathered, so the runner sends them in one pipeline.
        await asyncio.gather(*holds)
        return keep, kept

    async def _promote_one(self, k: Partition, sid: str, fields: list[Any], now: int) -> bool:
        tenant, priority, attempts = fields
        made = int(attempts or 0)
        return await self.run(
            scripts.PROMOTE,
            scripts.PromoteKeys(
                delayed=k.delayed,
                scan=k.scan(sid),
                events=k.events,
                history=k.scan_events(sid),
                stream=k.requests((priority or b"normal").decode()),  # type: ignore[arg-type]
            ),
            scripts.PromoteArgs(
                scan_id=sid,
                tenant=(tenant or b"default").decode(),
                now_ms=now,
                attempts=made,
                event=events.event(sid, "queued", "queued", events.QUEUED, made),
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
            ),
        )
