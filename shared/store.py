"""Scan state in Redis as the gateway sees it: accept, read, cancel, replay, count."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import scripts
from shared.clock import iso, now_ms
from shared.keys import GROUP, Keys
from shared.schemas import (
    DeadLetter,
    DeadLetters,
    EventType,
    Progress,
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
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(ScanJob).decode
_decode_result = msgspec.json.Decoder(ScanResult).decode
_decode_error = msgspec.json.Decoder(ScanError).decode

QUEUED = Progress(stage="queued", percentage=0, message="Waiting for an analyzer")


def new_scan_id() -> str:
    """A fresh, unguessable scan id."""
    return uuid.uuid4().hex


def is_scan_id(value: str) -> bool:
    """Whether ``value`` has the shape of a scan id (cheap 404 before any Redis call)."""
    return bool(_SCAN_ID.match(value))


def is_stream_id(value: str) -> bool:
    """Whether ``value`` is a concrete stream entry id (``ms-seq``)."""
    return bool(_STREAM_ID.match(value))


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
    # Drop the default attempt so the script can close the object with the real one.
    return encode(event).replace(b',"attempt":0', b"", 1)


class Duplicate(msgspec.Struct, frozen=True):
    """An idempotency key seen before: the scan it made, and whether the body matched."""

    scan_id: str
    same_body: bool


class OverQuota(msgspec.Struct, frozen=True):
    """The tenant has used its scans for today."""

    used: int


class CancelOutcome(msgspec.Struct, frozen=True):
    """What cancelling found: ``ok`` with the previous state, ``terminal``, or ``missing``."""

    outcome: str
    state: str | None


class StoreBase:
    """Keys, the script runner and the constant arguments both stores share."""

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


class ScanStore(StoreBase):
    """The gateway's reads and writes of scans under one prefix."""

    async def submit(
        self,
        job: ScanJob,
        image: bytes | None,
        *,
        idempotency: tuple[str, str] | None = None,
        due_ms: int = 0,
    ) -> Duplicate | OverQuota | None:
        """Store the image, create the scan and queue (or schedule) it.

        Returns a Duplicate instead when the idempotency key was used before, or
        OverQuota when the tenant has no scans left today; then nothing is written.
        """
        k = self.keys
        sid = job.scan_id
        idem_key, body_hash = idempotency or ("", "")
        if due_ms > job.submitted_at_ms:
            ev = event_json(
                sid,
                "scheduled",
                "scheduled",
                Progress(stage="scheduled", percentage=0, message=f"Scheduled for {iso(due_ms)}"),
            )
        else:
            ev = event_json(sid, "queued", "queued", QUEUED)
        reply = await self.run(
            scripts.SUBMIT,
            [
                k.scan(sid),
                k.requests(job.priority),
                k.events,
                k.scan_events(sid),
                k.image(sid),
                k.idempotency(idem_key),
                k.delayed,
                k.tenant_quota(job.tenant, time.strftime("%Y%m%d", time.gmtime())),
            ],
            [
                sid,
                encode(job),
                job.submitted_at_ms,
                ev,
                *self._limits,
                image or b"",
                self.settings.image_ttl_s,
                self._history_ttl,
                job.priority,
                body_hash,
                self.settings.idempotency_ttl_s,
                job.tenant,
                due_ms,
                self.settings.tenant_scans_per_day,
            ],
        )
        if reply[0] == b"duplicate":
            return Duplicate(reply[1].decode(), reply[2].decode() == body_hash)
        if reply[0] == b"quota":
            return OverQuota(int(reply[1]))
        if self.settings.durability == "strict":
            await self.wait_durable()
        return None

    async def wait_durable(self) -> None:
        """Block until the last write is in the append-only file (WAITAOF)."""
        local, _ = await self.redis.execute_command("WAITAOF", 1, 0, 5000)  # type: ignore[no-untyped-call]
        if int(local) < 1:
            raise ResponseError("WAITAOF: write not fsynced locally (is appendonly on?)")

    async def get(self, scan_id: str) -> ScanDetail | None:
        """The scan's state, result and error; None when unknown or expired."""
        if not is_scan_id(scan_id):
            return None
        # redis-py types replies loosely; with decode_responses off they are bytes.
        raw: Any = await self.redis.hgetall(self.keys.scan(scan_id))
        if not raw or b"job" not in raw:
            return None
        return _detail(scan_id, raw)

    async def cancel(self, scan_id: str) -> CancelOutcome:
        """Cancel a scan that has not finished."""
        if not is_scan_id(scan_id):
            return CancelOutcome("missing", None)
        progress = Progress(stage="cancelled", percentage=0, message="Cancelled")
        reply = await self.run(
            scripts.CANCEL,
            [
                *self._event_keys(scan_id),
                self.keys.delayed,
                self.keys.stats,
                self.keys.image(scan_id),
                self.keys.tenant_active,
            ],
            [
                scan_id,
                now_ms(),
                event_json(scan_id, "cancelled", "cancelled", progress),
                *self._limits,
                self._group,
                self._history_ttl,
                self.keys.control,
            ],
        )
        state = reply[1].decode() if len(reply) > 1 else None
        return CancelOutcome(reply[0].decode(), state)

    async def requeue(self, scan_id: str) -> CancelOutcome:
        """Replay a failed scan with fresh attempts: ``ok``, ``state`` or ``missing``."""
        if not is_scan_id(scan_id):
            return CancelOutcome("missing", None)
        progress = Progress(
            stage="queued", percentage=0, message="Replayed; waiting for an analyzer"
        )
        reply = await self.run(
            scripts.REQUEUE,
            [*self._event_keys(scan_id), self.keys.dead, self.keys.stats],
            [
                scan_id,
                now_ms(),
                event_json(scan_id, "queued", "queued", progress),
                *self._limits,
                self._history_ttl,
                "{" + self.keys.prefix + "}",
            ],
        )
        state = reply[1].decode() if len(reply) > 1 else None
        return CancelOutcome(reply[0].decode(), state)

    async def dead_letters(
        self, count: int, before: str | None, tenant: str | None = None
    ) -> DeadLetters:
        """Dead letters, newest first, ``count`` at a time (``before`` is exclusive).

        With ``tenant``, only that tenant's; entries that are not scans (poison
        entries with no readable job) are shown to operators only (tenant None).
        """
        items: list[DeadLetter] = []
        end = f"({before}" if before else "+"
        for _ in range(20):  # bounded scan when most entries belong to other tenants
            raw: Any = await self.redis.xrevrange(self.keys.dead, max=end, min="-", count=count)
            for entry_id, fields in raw:
                letter = _dead_letter(entry_id, fields)
                if tenant is None or letter.tenant == tenant:
                    items.append(letter)
                    if len(items) == count:
                        return DeadLetters(items=items, next=letter.id)
            if len(raw) < count:
                return DeadLetters(items=items, next=None)
            end = "(" + raw[-1][0].decode()
        return DeadLetters(items=items, next=end[1:])


def _detail(scan_id: str, raw: dict[bytes, bytes]) -> ScanDetail:
    job = _decode_job(raw[b"job"])
    due = raw.get(b"due_ms")
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
        next_attempt_at=iso(int(due)) if due else None,
        category=job.category,
        marketplaces=job.marketplaces,
        product_name=job.product_name,
        tenant=job.tenant,
        result=_decode_result(raw[b"result"]) if b"result" in raw else None,
        error=_decode_error(raw[b"error"]) if b"error" in raw else None,
    )


def _dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    if b"job" not in fields:
        # A poison entry: nothing decodable behind it, only what the stream held.
        return DeadLetter(
            id=entry_id.decode(),
            scan_id=fields.get(b"scan_id", b"").decode(errors="replace"),
            error=ScanError(kind="poison", message=fields.get(b"reason", b"").decode()),
            attempts=0,
            failed_at=iso(int(entry_id.split(b"-")[0])),
            history=[],
            raw_entry=fields.get(b"fields", b"").decode(errors="replace"),
        )
    job = _decode_job(fields[b"job"])
    history = [_decode_error(line) for line in fields.get(b"history", b"").splitlines() if line]
    return DeadLetter(
        id=entry_id.decode(),
        scan_id=fields[b"scan_id"].decode(),
        error=_decode_error(fields[b"error"]),
        attempts=int(fields.get(b"attempts", b"0")),
        failed_at=iso(int(fields[b"failed_ms"])),
        history=history,
        category=job.category,
        marketplaces=job.marketplaces,
        product_name=job.product_name,
        tenant=job.tenant,
    )


def _stage(raw: bytes) -> Stage:
    return raw.decode()  # type: ignore[return-value]
