"""Scan state in Redis: every transition the services make, each one atomic."""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import scripts
from shared.clock import iso, now_ms
from shared.keys import GROUP, Keys
from shared.schemas import (
    PRIORITIES,
    EventType,
    Progress,
    QueueStats,
    ScanDetail,
    ScanError,
    ScanEvent,
    ScanJob,
    ScanResult,
    ScanState,
    Stage,
    Verdict,
)
from shared.settings import Settings

_SCAN_ID = re.compile(r"^[0-9a-f]{32}$")
_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(ScanJob).decode
_decode_result = msgspec.json.Decoder(ScanResult).decode
_decode_error = msgspec.json.Decoder(ScanError).decode


def new_scan_id() -> str:
    """A fresh, unguessable scan id."""
    return uuid.uuid4().hex


def is_scan_id(value: str) -> bool:
    """Whether ``value`` has the shape of a scan id (cheap 404 before any Redis call)."""
    return bool(_SCAN_ID.match(value))


def event_json(
    scan_id: str,
    type_: EventType,
    state: ScanState,
    progress: Progress,
    *,
    error: ScanError | None = None,
    verdict: Verdict | None = None,
) -> bytes:
    """Encode an event; the Lua side appends the attempt number it alone knows."""
    event = ScanEvent(
        scan_id=scan_id,
        type=type_,
        state=state,
        progress=progress,
        at_ms=now_ms(),
        error=error,
        verdict=verdict,
    )
    raw = _encode(event)
    # ScanEvent ends with the optional fields; drop the default attempt so Lua can add the real one.
    return raw.replace(b',"attempt":0', b"", 1)


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt that now owns a scan."""

    job: ScanJob
    entry_id: str
    stream: str
    token: str
    attempt: int
    image: bytes | None


class ScanStore:
    """Reads and atomic writes of scans under one prefix."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.run = scripts.ScriptRunner(redis)
        s = settings
        # Arguments every script call repeats, packed once.
        self._limits = (scripts.Packed.of(s.events_maxlen), scripts.Packed.of(s.scan_events_maxlen))
        self._group = scripts.Packed.of(GROUP)
        self._history_ttl = scripts.Packed.of(s.result_ttl_s)

    def _event_keys(self, scan_id: str) -> list[str]:
        return [self.keys.scan(scan_id), self.keys.events, self.keys.scan_events(scan_id)]

    async def submit(self, job: ScanJob, image: bytes | None) -> str:
        """Store the image, create the scan and queue its request; returns the entry id."""
        k = self.keys
        ev = event_json(
            job.scan_id, "queued", "queued",
            Progress(stage="queued", percentage=0, message="Waiting for an analyzer"),
        )
        history_ttl = self.settings.result_ttl_s
        entry_id = await self.run(
            scripts.SUBMIT,
            [k.scan(job.scan_id), k.requests(job.priority), k.events,
             k.scan_events(job.scan_id), k.image(job.scan_id)],
            [job.scan_id, _encode(job), job.submitted_at_ms, ev, *self._limits,
             image or b"", self.settings.image_ttl_s, history_ttl],
        )
        if self.settings.durability == "strict":
            await self.wait_durable()
        return str(entry_id, "ascii") if isinstance(entry_id, bytes) else str(entry_id)

    async def wait_durable(self) -> None:
        """Block until the last write is in the append-only file (WAITAOF)."""
        local, _ = await self.redis.execute_command("WAITAOF", 1, 0, 5000)
        if int(local) < 1:
            raise ResponseError("WAITAOF: write not fsynced locally (is appendonly on?)")

    async def claim(
        self, job: ScanJob, entry_id: str, stream: str, consumer: str, progress: Progress
    ) -> Claim | None:
        """Mark the scan active for a new attempt; None when it must not run."""
        token = uuid.uuid4().hex
        sid = job.scan_id
        ev = event_json(sid, "progress", "active", progress)
        reply = await self.run(
            scripts.CLAIM,
            [*self._event_keys(sid), stream, self.keys.image(sid)],
            [sid, entry_id, consumer, token, now_ms(), ev, *self._limits, self._group,
             progress.stage, progress.percentage, progress.message, self._history_ttl],
        )
        if reply[0] != b"ok":
            return None
        return Claim(
            job=job, entry_id=entry_id, stream=stream, token=token,
            attempt=int(reply[1]), image=reply[2] or None,
        )

    async def progress(self, claim: Claim, progress: Progress) -> bool:
        """Publish progress; False when this attempt no longer owns the scan."""
        sid = claim.job.scan_id
        ev = event_json(sid, "progress", "active", progress)
        reply = await self.run(
            scripts.PROGRESS,
            self._event_keys(sid),
            [sid, claim.token, now_ms(), progress.stage, progress.percentage, progress.message,
             ev, *self._limits, self._history_ttl],
        )
        return bool(reply)

    async def complete(self, claim: Claim, result: ScanResult) -> bool:
        """Write the result and finish the scan; False for a stale attempt."""
        progress = Progress(stage="completed", percentage=100, message="Analysis complete")
        ev = event_json(
            claim.job.scan_id, "completed", "completed", progress, verdict=result.analysis.verdict
        )
        return await self._finish(claim, "completed", "result", _encode(result), ev, progress)

    async def fail(self, claim: Claim, error: ScanError, stage_pct: int) -> bool:
        """Mark the scan failed with ``error``; False for a stale attempt."""
        progress = Progress(stage="failed", percentage=stage_pct, message=error.message)
        ev = event_json(claim.job.scan_id, "failed", "failed", progress, error=error)
        return await self._finish(claim, "failed", "error", _encode(error), ev, progress)

    async def _finish(
        self, claim: Claim, state: ScanState, field: str, outcome: bytes, ev: bytes,
        progress: Progress,
    ) -> bool:
        sid = claim.job.scan_id
        reply = await self.run(
            scripts.FINISH,
            [*self._event_keys(sid), claim.stream, self.keys.stats, self.keys.image(sid)],
            [sid, claim.token, now_ms(), state, field, outcome, ev, *self._limits, self._group,
             claim.entry_id, self._history_ttl, progress.message],
        )
        return bool(reply)

    async def get(self, scan_id: str) -> ScanDetail | None:
        """The scan's state, result and error; None when unknown or expired."""
        if not is_scan_id(scan_id):
            return None
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.scan(scan_id))  # type: ignore[misc]
        if not raw or b"job" not in raw:
            return None
        return _detail(scan_id, raw)

    async def stats(self) -> QueueStats:
        """Waiting, active and finished counts across every replica."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.keys.request_streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        pipe.hgetall(self.keys.stats)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        waiting: dict[str, int] = {}
        active = consumers = 0
        for i, priority in enumerate(PRIORITIES):
            length, groups = replies[2 * i], replies[2 * i + 1]
            group = _find_group(groups)
            if group is None:
                waiting[priority] = int(length) if isinstance(length, int) else 0
                continue
            pending = int(group.get("pending", 0))
            lag = group.get("lag")
            waiting[priority] = int(lag) if lag is not None else max(int(length) - pending, 0)
            active += pending
            consumers = max(consumers, int(group.get("consumers", 0)))
        counters = replies[-1] if isinstance(replies[-1], dict) else {}
        return QueueStats(
            waiting=sum(waiting.values()),
            active=active,
            completed=int(counters.get(b"completed", 0)),
            failed=int(counters.get(b"failed", 0)),
            cancelled=int(counters.get(b"cancelled", 0)),
            waiting_by_priority=waiting,
            consumers=consumers,
        )


def _find_group(groups: object) -> dict[str, Any] | None:
    if not isinstance(groups, list):
        return None  # the stream does not exist yet
    for group in groups:
        name = group.get("name")
        if name in (GROUP, GROUP.encode()):
            return {k.decode() if isinstance(k, bytes) else k: v for k, v in group.items()}
    return None


def _detail(scan_id: str, raw: dict[bytes, bytes]) -> ScanDetail:
    job = _decode_job(raw[b"job"])
    result = _decode_result(raw[b"result"]) if b"result" in raw else None
    error = _decode_error(raw[b"error"]) if b"error" in raw else None
    return ScanDetail(
        scan_id=scan_id,
        state=raw[b"state"].decode(),  # type: ignore[arg-type]
        progress=Progress(
            stage=_stage(raw.get(b"stage", b"queued")),
            percentage=int(raw.get(b"pct", b"0")),
            message=raw.get(b"msg", b"").decode(),
        ),
        attempts=int(raw.get(b"attempts", b"0")),
        created_at=iso(int(raw[b"created_ms"])),
        updated_at=iso(int(raw[b"updated_ms"])),
        category=job.category,
        marketplaces=job.marketplaces,
        product_name=job.product_name,
        result=result,
        error=error,
    )


def _stage(raw: bytes) -> Stage:
    return raw.decode()  # type: ignore[return-value]
