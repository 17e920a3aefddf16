"""Scan state in Redis as the gateway sees it: accept, read, cancel, replay, count."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from shared import events, scripts
from shared.clock import iso, now_ms
from shared.connection import RedisClient
from shared.controls import LiveControls
from shared.keys import GROUP, Keys, Partition
from shared.luascript import ScriptRunner
from shared.record import ScanRecord, decode_record, latest_event
from shared.scanlist import index_horizon_ms
from shared.schemas import (
    DeadLetter,
    DeadLetters,
    Priority,
    ScanDetail,
    ScanError,
    ScanEvent,
    ScanJob,
)
from shared.scripts import OverQuota
from shared.settings import Settings
from shared.streamids import parse_stream_id
from shared.tracing import trace_id_of

__all__ = ["CancelOutcome", "Duplicate", "OverQuota", "ScanStore", "StoreBase", "new_scan_id"]

_SCAN_ID = re.compile(r"^[0-9a-f]{32}$")
encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(ScanJob).decode
_decode_error = msgspec.json.Decoder(ScanError).decode

RECOUNTS = 5
"""Tries of an operator action whose event must carry an attempt count that moved."""


def new_scan_id() -> str:
    """A fresh, unguessable scan id."""
    return uuid.uuid4().hex


def is_scan_id(value: str) -> bool:
    """Whether ``value`` has the shape of a scan id (cheap 404 before any Redis call)."""
    return bool(_SCAN_ID.match(value))


class Duplicate(msgspec.Struct, frozen=True):
    """An idempotency key seen before: the scan it made, and whether the body matched."""

    scan_id: str
    same_body: bool


class CancelOutcome(msgspec.Struct, frozen=True):
    """What cancelling found: ``ok`` with the previous state, ``terminal``, or ``missing``."""

    outcome: str
    state: str | None


class StoreBase:
    """Keys, the script runner and the per-deployment limits every store shares."""

    def __init__(self, redis: RedisClient, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.prefix, settings.partitions)
        self.run = ScriptRunner(redis)
        self.maxlen = settings.events_maxlen
        self.scan_maxlen = settings.scan_events_maxlen
        self.history_ttl = settings.result_ttl_s
        # Pauses and limits as operators set them at runtime (the settings are defaults).
        self.controls = LiveControls(redis, self.keys, settings)

    def event_keys(self, scan_id: str) -> scripts.EventKeys:
        """The scan's hash, its partition's events stream and the scan's history."""
        part = self.keys.of_scan(scan_id)
        return scripts.EventKeys(
            scan=part.scan(scan_id), events=part.events, history=part.scan_events(scan_id)
        )

    def batch_of(self, scan_id: str, batch: str | None) -> tuple[str, str, str]:
        """The keys of a scan's batch (its hash, events, scan list) for a terminal script.

        A scan without a batch gets names in its partition that the script leaves alone
        (a key outside the slot would be refused by a cluster).
        """
        part = self.keys.of_scan(scan_id)
        name = batch or ""
        return part.batch(name), part.batch_events(name), part.batch_scans(name)

    async def record(self, scan_id: str) -> ScanRecord | None:
        """The scan's hash, decoded; None when unknown or expired."""
        if not is_scan_id(scan_id):
            return None
        # redis-py types replies loosely; with decode_responses off they are bytes.
        raw: Any = await self.redis.hgetall(self.keys.scan(scan_id))
        return decode_record(raw)


class ScanStore(StoreBase):
    """The gateway's reads and writes of scans under one prefix."""

    def new_scan_id(self, idempotency_key: str | None = None) -> str:
        """A fresh scan id; with an idempotency key, in that key's partition (one slot)."""
        if idempotency_key is None:
            return self.keys.new_scan_id()
        return self.keys.new_scan_id(self.keys.of_idempotency(idempotency_key))

    async def submit(
        self,
        job: ScanJob,
        image: bytes | None,
        *,
        idempotency: tuple[str, str] | None = None,
        due_ms: int = 0,
        webhook: bool = False,
    ) -> Duplicate | OverQuota | None:
        """Store the image, create the scan and queue (or schedule) it.

        Returns a Duplicate instead when the idempotency key was used before, or
        OverQuota when the tenant has no scans left today; then nothing is written.
        """
        sid = job.scan_id
        k = self.keys.of_scan(sid)
        idem_key, body_hash = idempotency or ("", "")
        if idempotency is not None and self.keys.of_idempotency(idem_key) is not k:
            raise ValueError("a scan with an idempotency key needs an id from new_scan_id(key)")
        quota = (await self.controls.current()).limits.tenant_scans_per_day
        if quota:
            over = await self._take_quota(job.tenant, quota)
            if over is not None:
                seen = await self._seen(k, idempotency)
                return seen if seen is not None else over
        if due_ms > job.submitted_at_ms:
            ev = events.event(sid, "scheduled", "scheduled", events.scheduled(due_ms), 0)
        else:
            due_ms = 0
            ev = events.event(sid, "queued", "queued", events.QUEUED, 0)
        run = self.run.run_durable if self.settings.durability == "strict" else self.run
        reply = await run(
            scripts.SUBMIT,
            scripts.SubmitKeys(
                scan=k.scan(sid),
                stream=k.requests(job.priority),
                events=k.events,
                history=k.scan_events(sid),
                image=k.image(sid),
                idempotency=k.idempotency(idem_key),
                delayed=k.delayed,
                scan_index=k.scan_index,
                tenant_scan_index=k.tenant_scan_index(job.tenant),
            ),
            scripts.SubmitArgs(
                scan_id=sid,
                tenant=job.tenant,
                priority=job.priority,
                job=encode(job),
                now_ms=job.submitted_at_ms,
                due_ms=due_ms,
                event=ev,
                image=image or b"",
                image_ttl=self.settings.image_ttl_s,
                history_ttl=self.history_ttl,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
                body_hash=body_hash,
                idempotency_ttl=self.settings.idempotency_ttl_s,
                index_horizon_ms=index_horizon_ms(self.settings),
                index_max=self.settings.scan_index_max,
                webhook=int(webhook),
            ),
        )
        if isinstance(reply, scripts.Duplicate):
            if quota:  # a replay does not spend the day's quota
                await self.redis.decr(self._quota_key(job.tenant))
            return Duplicate(reply.scan_id, reply.body_hash == body_hash)
        return None

    def _quota_key(self, tenant: str) -> str:
        return self.keys.tenant_quota(tenant, time.strftime("%Y%m%d", time.gmtime()))

    async def _take_quota(self, tenant: str, per_day: int) -> OverQuota | None:
        # Fleet-wide, so not inside the submit script (whose keys live in the scan's
        # partition): taken first, given back if the submit turns out a replay.
        taken = await self.run(
            scripts.TAKE_QUOTA,
            scripts.QuotaKeys(quota=self._quota_key(tenant)),
            scripts.QuotaArgs(per_day=per_day, ttl=2 * 86400),
        )
        return None if taken.ok else OverQuota(taken.used)

    async def _seen(self, part: Partition, idempotency: tuple[str, str] | None) -> Duplicate | None:
        if idempotency is None:
            return None
        key, body_hash = idempotency
        seen: Any = await self.redis.get(part.idempotency(key))
        if not seen:
            return None
        scan_id, _, stored_hash = seen.decode().partition(" ")
        return Duplicate(scan_id, stored_hash == body_hash)

    async def get(self, scan_id: str) -> ScanDetail | None:
        """The scan's state, progress, result and error; None when unknown or expired."""
        found = await self.read(scan_id)
        return None if found is None else found[1]

    async def read(self, scan_id: str) -> tuple[ScanRecord, ScanDetail] | None:
        """The scan's hash and, from the same read, its detail (what ``get`` answers)."""
        if not is_scan_id(scan_id):
            return None
        pipe = self.redis.pipeline(transaction=True)  # hash and history agree
        pipe.hgetall(self.keys.scan(scan_id))
        pipe.xrevrange(self.keys.scan_events(scan_id), count=1)
        raw, tail = await pipe.execute()
        record = decode_record(raw)
        if record is None:
            return None
        return record, _detail(scan_id, record, latest_event(tail))

    async def cancel(self, scan_id: str) -> CancelOutcome:
        """Cancel a scan that has not finished."""
        if not is_scan_id(scan_id):
            return CancelOutcome("missing", None)
        for _ in range(RECOUNTS):
            record = await self.record(scan_id)
            if record is None:
                return CancelOutcome("missing", None)
            reply = await self.run_cancel(
                scan_id, record.tenant, record.attempts, record.priority, record.batch or ""
            )
            if reply.outcome != "recount":
                return CancelOutcome(reply.outcome, reply.state)
        raise ResponseError(f"scan {scan_id} kept changing; cancel again")

    async def run_cancel(
        self, scan_id: str, tenant: str, attempts: int, priority: Priority, batch_id: str
    ) -> scripts.Outcome:
        """One call of the cancel script, for a scan as last read (``recount`` if it moved)."""
        k = self.keys.of_scan(scan_id)
        batch, batch_events, batch_scans = self.batch_of(scan_id, batch_id)
        return await self.run(
            scripts.CANCEL,
            scripts.CancelKeys(
                scan=k.scan(scan_id),
                events=k.events,
                history=k.scan_events(scan_id),
                stream=k.requests(priority),
                delayed=k.delayed,
                stats=k.stats,
                image=k.image(scan_id),
                tenant_active=k.tenant_active,
                batch=batch,
                batch_events=batch_events,
                batch_scans=batch_scans,
                outbox=k.outbox,
            ),
            scripts.CancelArgs(
                scan_id=scan_id,
                tenant=tenant,
                attempts=attempts,
                event=events.event(scan_id, "cancelled", "cancelled", events.CANCELLED, attempts),
                group=GROUP,
                history_ttl=self.history_ttl,
                channel=self.keys.control,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
                batch_id=batch_id,
                now_ms=now_ms(),
            ),
        )

    async def requeue(self, scan_id: str) -> CancelOutcome:
        """Replay a failed scan with fresh attempts: ``ok``, ``state`` or ``missing``."""
        record = await self.record(scan_id)
        if record is None:
            return CancelOutcome("missing", None)
        reply = await self.run_requeue(scan_id, record.tenant, record.priority, record.batch or "")
        return CancelOutcome(reply.outcome, reply.state)

    async def run_requeue(
        self, scan_id: str, tenant: str, priority: Priority, batch_id: str
    ) -> scripts.Outcome:
        """One call of the requeue script: ``ok`` when the failed scan was queued again."""
        k = self.keys.of_scan(scan_id)
        batch, batch_events, batch_scans = self.batch_of(scan_id, batch_id)
        return await self.run(
            scripts.REQUEUE,
            scripts.RequeueKeys(
                scan=k.scan(scan_id),
                events=k.events,
                history=k.scan_events(scan_id),
                stream=k.requests(priority),
                dead=k.dead,
                stats=k.stats,
                batch=batch,
                batch_events=batch_events,
                batch_scans=batch_scans,
            ),
            scripts.RequeueArgs(
                scan_id=scan_id,
                tenant=tenant,
                event=events.event(scan_id, "queued", "queued", events.REPLAYED, 0),
                history_ttl=self.history_ttl,
                maxlen=self.maxlen,
                scan_maxlen=self.scan_maxlen,
                batch_id=batch_id,
                now_ms=now_ms(),
            ),
        )

    async def dead_letters(
        self, count: int, before: str | None, tenant: str | None = None
    ) -> DeadLetters:
        """Dead letters, newest first, ``count`` at a time (``before`` is exclusive).

        With ``tenant``, only that tenant's; entries that are not scans (poison
        entries with no readable job) are shown to operators only (tenant None).
        Every partition's stream is read newest first and merged; the cursor is
        always the id of an entry returned to this caller, never another tenant's.
        The streams are capped (``DEAD_LETTERS_MAXLEN``), so a page reads at most
        all of them.
        """
        page = max(count, DEAD_PAGE)
        start = f"({before}" if before else "+"
        feeds = [_DeadFeed(part.dead, start) for part in self.keys.partitions]
        items: list[DeadLetter] = []
        while len(items) < count:
            await asyncio.gather(*(f.refill(self.redis, page) for f in feeds if f.wants_more))
            live = [f for f in feeds if f.buffer]
            if not live:
                return DeadLetters(items=items, next=None)
            newest = max(live, key=lambda f: f.head)
            entry_id, fields = newest.pop()
            letter = dead_letter(entry_id, fields)
            if tenant is None or letter.tenant == tenant:
                items.append(letter)
        more = any(f.buffer or f.wants_more for f in feeds)
        return DeadLetters(items=items, next=items[-1].id if more else None)


DEAD_PAGE = 200


class _DeadFeed:
    """One partition's dead letters, newest first, read a page at a time."""

    __slots__ = ("buffer", "end", "exhausted", "key")

    def __init__(self, key: str, end: str) -> None:
        self.key = key
        self.end = end
        self.buffer: list[tuple[bytes, dict[bytes, bytes]]] = []
        self.exhausted = False

    @property
    def wants_more(self) -> bool:
        return not self.buffer and not self.exhausted

    @property
    def head(self) -> tuple[int, int]:
        return parse_stream_id(self.buffer[-1][0].decode()) or (0, 0)

    async def refill(self, redis: RedisClient, page: int) -> None:
        raw: Any = await redis.xrevrange(self.key, max=self.end, min="-", count=page)
        self.exhausted = len(raw) < page
        if raw:
            self.end = "(" + raw[-1][0].decode()
        self.buffer = list(reversed(raw))  # popped from the end: newest first

    def pop(self) -> tuple[bytes, dict[bytes, bytes]]:
        return self.buffer.pop()


def _detail(scan_id: str, record: ScanRecord, event: ScanEvent | None) -> ScanDetail:
    job = record.job
    return ScanDetail(
        scan_id=scan_id,
        state=record.state,
        progress=event.progress if event is not None else events.QUEUED,
        attempts=record.attempts,
        created_at=iso(record.created_ms),
        updated_at=iso(event.at_ms if event is not None else record.created_ms),
        next_attempt_at=iso(record.due_ms) if record.due_ms else None,
        trace_id=trace_id_of(job.trace),
        category=job.category,
        marketplaces=job.marketplaces,
        product_name=job.product_name,
        tenant=job.tenant,
        result=record.result,
        error=record.error,
        batch_id=record.batch,
    )


def dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
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
