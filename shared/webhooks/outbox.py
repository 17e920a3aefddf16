"""Stage one of webhook delivery: each partition's outbox turned into delivery records.

The terminal Lua scripts append a finished scan (marked ``webhook``) to its
partition's outbox stream, and a batch marked ``webhook`` when its last scan ends
(an entry with ``batch_id``: one ``batch.completed``, whose ``data`` is the batch
as ``GET /api/batches/{id}`` shows it when the entry is read). A consumer group
(``webhooks``) reads it; an entry is acknowledged only after its deliveries
exist, and their ids follow from the entry, so an entry reclaimed from a dead
reader (``XAUTOCLAIM`` after the lease) creates nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError, ResponseError

from shared.batchstore import BatchStore
from shared.clock import iso
from shared.connection import RedisClient
from shared.keys import WEBHOOK_GROUP, Keys, Partition
from shared.webhooks.deliveries import DeliveryStore, callback_owner, delivery_id, event_id
from shared.webhooks.endpoints import EndpointStore
from shared.webhooks.events import (
    BATCH_COMPLETED,
    BatchWebhookEvent,
    WebhookEvent,
    encode_event,
    types_of,
)
from shared.webhooks.models import DeliveryDoc

log = structlog.get_logger("webhooks")

BLOCK_MS = 1_000
BATCH_PAGE = 100
"""Scan ids a ``batch.completed`` lists: the first page, as ``GET /api/batches/{id}``."""


class Outbox:
    """Reads the outboxes as one consumer and fans each entry out into deliveries."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        reader: RedisClient,
        keys: Keys,
        scans: BatchStore,
        endpoints: EndpointStore,
        deliveries: DeliveryStore,
        consumer: str,
        lease_ms: int,
        on_created: Callable[[], None],
    ) -> None:
        self.redis = redis
        self.reader = reader
        """Blocks in XREADGROUP: a connection per partition."""
        self.keys = keys
        self.scans = scans
        self.endpoints = endpoints
        self.deliveries = deliveries
        self.consumer = consumer
        self._lease_ms = lease_ms
        self._on_created = on_created

    async def ensure_groups(self) -> None:
        """Create the consumer group on every partition's outbox (idempotent)."""
        for part in self.keys.partitions:
            try:
                await self.redis.xgroup_create(part.outbox, WEBHOOK_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, part: Partition) -> None:
        """Fan out ``part``'s outbox until cancelled."""
        last_reclaim = 0.0
        while True:
            try:
                if time.monotonic() - last_reclaim > self._lease_ms / 1000:
                    last_reclaim = time.monotonic()
                    await self._reclaim(part)
                reply: Any = await self.reader.xreadgroup(
                    WEBHOOK_GROUP, self.consumer, {part.outbox: ">"}, count=32, block=BLOCK_MS
                )
                for _, entries in reply or ():
                    # Independent entries: fanned out together, each acknowledged on its own.
                    await asyncio.gather(
                        *(self._fan_out(part, e.decode(), fields) for e, fields in entries)
                    )
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                log.warning("outbox read failed; retrying", error=str(exc), partition=part.index)
                await asyncio.sleep(1)

    async def _reclaim(self, part: Partition) -> None:
        # Entries a dead deliverer read but never acknowledged.
        reply: Any = await self.redis.xautoclaim(
            part.outbox,
            WEBHOOK_GROUP,
            self.consumer,
            min_idle_time=self._lease_ms,
            start_id="0-0",
            count=64,
        )
        for entry_id, fields in reply[1]:
            if fields:
                log.warning("reclaimed outbox entry", entry_id=entry_id.decode())
                await self._fan_out(part, entry_id.decode(), fields)

    async def _fan_out(self, part: Partition, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Create the entry's deliveries, then acknowledge it."""
        if b"batch_id" in fields:
            created = await self._batch(part, entry_id, fields)
        else:
            created = await self._scan(part, entry_id, fields)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(part.outbox, WEBHOOK_GROUP, entry_id)
        pipe.xdel(part.outbox, entry_id)
        await pipe.execute()
        if created:
            self._on_created()

    async def _scan(self, part: Partition, entry_id: str, fields: dict[bytes, bytes]) -> int:
        """A scan's end: its events for the subscribed endpoints, and its callback_url."""
        scan_id = fields.get(b"scan_id", b"").decode()
        tenant = fields.get(b"tenant", b"").decode()
        state = fields.get(b"state", b"").decode()
        at_ms = int(entry_id.split("-", maxsplit=1)[0])
        found = await self.scans.read(scan_id)
        created = 0
        if found is not None:
            record, detail = found
            targets = [e for e, _ in await self.endpoints.of_tenant(tenant) if e.enabled]
            for n, kind in enumerate(types_of(state)):
                event = event_id(self.keys.prefix, part.outbox, entry_id, kind)
                body = encode_event(
                    WebhookEvent(id=event, type=kind, created_at=iso(at_ms), data=detail)
                )
                base = DeliveryDoc(
                    id="",
                    event_id=event,
                    type=kind,
                    tenant=tenant,
                    scan_id=scan_id,
                    created_ms=at_ms,
                )
                for endpoint in targets:
                    if kind in endpoint.events:
                        created += await self._enqueue(base, body, endpoint_id=endpoint.id)
                # A callback gets the scan's main event only (failed, not also dead_lettered).
                if n == 0 and record.job.callback_url:
                    created += await self._enqueue(base, body, callback=record.job.callback_url)
        else:
            log.warning("outbox entry of an expired scan skipped", scan_id=scan_id)
        return created

    async def _batch(self, part: Partition, entry_id: str, fields: dict[bytes, bytes]) -> int:
        """A batch's end: ``batch.completed`` for the endpoints subscribed to it."""
        batch_id = fields[b"batch_id"].decode()
        tenant = fields.get(b"tenant", b"").decode()
        at_ms = int(entry_id.split("-", maxsplit=1)[0])
        head = await self.scans.head(batch_id)
        if head is None:
            log.warning("outbox entry of an expired batch skipped", batch_id=batch_id)
            return 0
        targets = [
            e
            for e, _ in await self.endpoints.of_tenant(tenant)
            if e.enabled and BATCH_COMPLETED in e.events
        ]
        if not targets:
            return 0
        event = event_id(self.keys.prefix, part.outbox, entry_id, BATCH_COMPLETED)
        status = await self.scans.status(head, 0, BATCH_PAGE)
        body = encode_event(
            BatchWebhookEvent(id=event, type=BATCH_COMPLETED, created_at=iso(at_ms), data=status)
        )
        base = DeliveryDoc(
            id="",
            event_id=event,
            type=BATCH_COMPLETED,
            tenant=tenant,
            batch_id=batch_id,
            created_ms=at_ms,
        )
        created = 0
        for endpoint in targets:
            created += await self._enqueue(base, body, endpoint_id=endpoint.id)
        return created

    async def _enqueue(
        self,
        base: DeliveryDoc,
        body: bytes,
        *,
        endpoint_id: str | None = None,
        callback: str | None = None,
    ) -> int:
        target = endpoint_id or f"callback {callback}"
        doc = msgspec.structs.replace(
            base,
            id=delivery_id(base.event_id, target),
            endpoint_id=endpoint_id,
            callback_url=callback,
        )
        owner = endpoint_id or callback_owner(base.tenant)
        return int(await self.deliveries.enqueue(doc, body, owner))
