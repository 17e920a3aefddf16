"""Scan state in Redis as an analyzer sees it: one attempt's transitions, each atomic.

Every write after the claim carries the attempt's token; a script refuses it
once the attempt no longer owns the scan (cancelled, reclaimed, handed back).
"""

from __future__ import annotations

import uuid

import msgspec

from shared import scripts
from shared.clock import now_ms
from shared.schemas import Progress, ScanError, ScanJob, ScanResult, ScanState
from shared.store import QUEUED, ScanStore, encode, event_json


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt that now owns a scan."""

    job: ScanJob
    entry_id: str
    stream: str
    token: str
    attempt: int
    image: bytes | None
    exhausted: bool = False


DEFER_MS = 250
"""How long a scan waits when its tenant is at its cap of active scans."""


class AttemptStore(ScanStore):
    """Claim, progress, finish, retry and hand back scans."""

    @property
    def _defer_message(self) -> str:
        cap = self.settings.tenant_max_active
        return f"Waiting: this tenant already has {cap} scans running"

    async def claim(
        self, job: ScanJob, entry_id: str, stream: str, consumer: str, progress: Progress
    ) -> Claim | None:
        """Own the scan for a new attempt; None when it must not run (finished, superseded)."""
        token = uuid.uuid4().hex
        sid = job.scan_id
        cap = self.settings.tenant_max_active
        deferred = b""
        if cap:
            deferred = event_json(
                sid,
                "scheduled",
                "scheduled",
                Progress(stage="scheduled", percentage=0, message=self._defer_message),
            )
        reply = await self.run(
            scripts.CLAIM,
            [
                *self._event_keys(sid),
                stream,
                self.keys.image(sid),
                self.keys.tenant_active,
                self.keys.delayed,
            ],
            [
                sid,
                entry_id,
                consumer,
                token,
                now_ms(),
                event_json(sid, "progress", "active", progress),
                *self._limits,
                self._group,
                progress.stage,
                progress.percentage,
                progress.message,
                self._history_ttl,
                self.settings.max_attempts,
                cap,
                DEFER_MS,
                deferred,
                self._defer_message,
            ],
        )
        if reply[0] in (b"skip", b"deferred"):
            return None
        return Claim(
            job=job,
            entry_id=entry_id,
            stream=stream,
            token=token,
            attempt=int(reply[1]),
            image=reply[2] or None,
            exhausted=reply[0] == b"exhausted",
        )

    async def progress(self, claim: Claim, progress: Progress) -> bool:
        """Publish progress; False when this attempt no longer owns the scan."""
        sid = claim.job.scan_id
        reply = await self.run(
            scripts.PROGRESS,
            self._event_keys(sid),
            [
                sid,
                claim.token,
                now_ms(),
                progress.stage,
                progress.percentage,
                progress.message,
                event_json(sid, "progress", "active", progress),
                *self._limits,
                self._history_ttl,
            ],
        )
        return bool(reply)

    async def complete(self, claim: Claim, result: ScanResult) -> bool:
        """Write the result and finish the scan; False for a stale attempt."""
        progress = Progress(stage="completed", percentage=100, message="Analysis complete")
        ev = event_json(
            claim.job.scan_id, "completed", "completed", progress, verdict=result.analysis.verdict
        )
        return await self._finish(claim, "completed", ("result", encode(result)), ev, progress)

    async def fail(self, claim: Claim, error: ScanError, stage_pct: int) -> bool:
        """Mark the scan failed and dead-letter it; False for a stale attempt."""
        progress = Progress(stage="failed", percentage=stage_pct, message=error.message)
        ev = event_json(claim.job.scan_id, "failed", "failed", progress, error=error)
        return await self._finish(claim, "failed", ("error", encode(error)), ev, progress)

    async def _finish(
        self,
        claim: Claim,
        state: ScanState,
        outcome: tuple[str, bytes],
        ev: bytes,
        progress: Progress,
    ) -> bool:
        sid = claim.job.scan_id
        reply = await self.run(
            scripts.FINISH,
            [
                *self._event_keys(sid),
                claim.stream,
                self.keys.stats,
                self.keys.image(sid),
                self.keys.dead,
                self.keys.tenant_active,
            ],
            [
                sid,
                claim.token,
                now_ms(),
                state,
                *outcome,
                ev,
                *self._limits,
                self._group,
                claim.entry_id,
                self._history_ttl,
                progress.message,
                self.settings.dead_maxlen,
            ],
        )
        return bool(reply)

    async def retry(self, claim: Claim, error: ScanError, delay_s: float) -> bool:
        """Acknowledge and schedule the next attempt ``delay_s`` from now, atomically."""
        sid = claim.job.scan_id
        now = now_ms()
        due = now + int(delay_s * 1000)
        message = f"Attempt {claim.attempt} failed ({error.kind}); retrying in {delay_s:.1f}s"
        progress = Progress(stage="retrying", percentage=0, message=message)
        reply = await self.run(
            scripts.RETRY,
            [*self._event_keys(sid), claim.stream, self.keys.delayed, self.keys.tenant_active],
            [
                sid,
                claim.token,
                now,
                due,
                encode(error),
                event_json(sid, "retrying", "retrying", progress, error=error),
                *self._limits,
                self._group,
                claim.entry_id,
                self._history_ttl,
                message,
            ],
        )
        return bool(reply)

    async def release(self, job: ScanJob, entry_id: str, stream: str, token: str = "") -> bool:
        """Hand an entry back for immediate redelivery (``token`` empty if never started)."""
        sid = job.scan_id
        progress = Progress(stage="queued", percentage=0, message="Handed back; waiting again")
        reply = await self.run(
            scripts.RELEASE,
            [*self._event_keys(sid), stream, self.keys.tenant_active],
            [
                sid,
                token,
                entry_id,
                now_ms(),
                event_json(sid, "queued", "queued", progress),
                *self._limits,
                self._group,
                self._history_ttl,
            ],
        )
        return bool(reply)

    async def renew(self, stream: str, consumer: str, entry_ids: list[str]) -> int:
        """Reset the idle time of this consumer's in-flight entries; returns how many."""
        if not entry_ids:
            return 0
        return int(await self.run(scripts.RENEW, [stream], [self._group, consumer, *entry_ids]))

    async def promote(self, limit: int = 200) -> tuple[int, int | None]:
        """Queue due retries and scheduled scans; returns (promoted, next due ms or None)."""
        head, tail = _split_event()
        reply = await self.run(
            scripts.PROMOTE,
            [self.keys.delayed, self.keys.events],
            [
                now_ms(),
                limit,
                "{" + self.keys.prefix + "}",
                *self._limits,
                self._history_ttl,
                head,
                tail,
            ],
        )
        nxt = int(reply[1])
        return int(reply[0]), (nxt if nxt >= 0 else None)


_MARK = "0" * 32


def _split_event() -> tuple[bytes, bytes]:
    # The promote script knows which scans are due only inside Redis: send the
    # queued event cut around its scan id, to be joined there.
    raw = event_json(_MARK, "queued", "queued", QUEUED)
    head, _, tail = raw.partition(_MARK.encode())
    return head, tail
