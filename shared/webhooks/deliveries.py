"""Delivery records in Redis: one hash per (event, endpoint), a due schedule, a log per endpoint.

A delivery's id follows from the outbox entry and its target, so creating it
twice (a fan-out redone after a crash) is one delivery. The schedule is a
sorted set by due time; a sender leases what is due by moving it ahead
(:data:`shared.scripts.WEBHOOK_CLAIM`), so a sender killed mid-request leaves
its deliveries to be sent again when the lease ends. Every attempt of one
delivery carries the same ``webhook-id``: the event's id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

from shared import scripts
from shared.clock import iso, now_ms
from shared.connection import RedisClient
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.settings import Settings
from shared.webhooks.models import Attempts, DeliveryDoc, DeliveryPage, DeliveryView

_decode_doc = msgspec.json.Decoder(DeliveryDoc).decode
_encode = msgspec.json.Encoder().encode

LOG_MAX = 1_000
"""Deliveries kept in an endpoint's log (the newest)."""


def delivery_ttl_s(settings: Settings) -> int:
    """How long a delivery's record is kept: its retry window, then the result retention."""
    return int(settings.webhook_retry_hours * 3600) + settings.result_ttl_s


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def event_id(prefix: str, outbox_key: str, entry_id: str, kind: str) -> str:
    """The id of the event an outbox entry raises: the same however often it is read."""
    return "msg_" + _digest(prefix, outbox_key, entry_id, kind)[:32]


def delivery_id(event: str, target: str) -> str:
    """The id of one event's delivery to one endpoint (or callback URL)."""
    return "wd_" + _digest(event, target)[:24]


def is_delivery_id(value: str) -> bool:
    """Whether ``value`` has the shape of a delivery id."""
    return len(value) == 27 and value.startswith("wd_")


def callback_owner(tenant: str) -> str:
    """The log that holds a tenant's one-off callback deliveries."""
    return f"cb:{tenant}"


def _attempts(raw: dict[bytes, bytes]) -> Attempts:
    def num(name: bytes) -> int:
        return int(raw.get(name, b"0") or 0)

    return Attempts(
        status=raw.get(b"status", b"pending").decode(),  # type: ignore[arg-type]
        attempts=num(b"attempts"),
        window_ms=num(b"window_ms"),
        next_ms=num(b"next_ms"),
        last_status=num(b"last_status"),
        last_latency_ms=num(b"last_latency_ms"),
        last_error=raw.get(b"last_error", b"").decode(errors="replace"),
        updated_ms=num(b"updated_ms"),
    )


def view(doc: DeliveryDoc, state: Attempts) -> DeliveryView:
    """What the API shows of a delivery."""
    tried = state.attempts > 0
    return DeliveryView(
        id=doc.id,
        event_id=doc.event_id,
        type=doc.type,
        scan_id=doc.scan_id or None,
        batch_id=doc.batch_id,
        status=state.status,
        attempts=state.attempts,
        created_at=iso(doc.created_ms),
        updated_at=iso(state.updated_ms or doc.created_ms),
        next_attempt_at=iso(state.next_ms) if state.status == "pending" else None,
        last_status_code=state.last_status or None if tried else None,
        last_latency_ms=state.last_latency_ms if tried else None,
        last_error=state.last_error or None,
    )


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery as loaded for an attempt."""

    doc: DeliveryDoc
    state: Attempts
    body: bytes


class DeliveryStore:
    """Deliveries of every endpoint under one prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.run = ScriptRunner(redis)

    async def enqueue(self, doc: DeliveryDoc, body: bytes, owner: str) -> bool:
        """Create the delivery, due now; False when it existed (a repeated fan-out)."""
        return await self.run(
            scripts.WEBHOOK_ENQUEUE,
            scripts.WebhookEnqueueKeys(
                delivery=self.keys.webhook_delivery(doc.id),
                due=self.keys.webhook_due,
                log=self.keys.webhook_log(owner),
            ),
            scripts.WebhookEnqueueArgs(
                delivery_id=doc.id,
                doc=_encode(doc),
                body=body,
                now_ms=doc.created_ms,
                ttl=self.ttl_s,
                log_max=LOG_MAX,
            ),
        )

    async def claim(self, count: int, lease_ms: int) -> list[str]:
        """Lease up to ``count`` due deliveries for ``lease_ms``."""
        return await self.run(
            scripts.WEBHOOK_CLAIM,
            scripts.WebhookClaimKeys(due=self.keys.webhook_due),
            scripts.WebhookClaimArgs(now_ms=now_ms(), lease_ms=lease_ms, count=count),
        )

    async def load(self, delivery: str) -> Delivery | None:
        """A delivery's document, state and body; None when gone (expired)."""
        raw: Any = await self.redis.hgetall(self.keys.webhook_delivery(delivery))
        if not raw or b"doc" not in raw:
            return None
        return Delivery(doc=_decode_doc(raw[b"doc"]), state=_attempts(raw), body=raw[b"body"])

    async def drop(self, delivery: str) -> None:
        """Take a delivery that no longer exists off the schedule."""
        await self.redis.zrem(self.keys.webhook_due, delivery)

    async def record(self, delivery: str, state: Attempts) -> None:
        """Store an attempt's outcome; pending ones are scheduled at ``next_ms``."""
        key = self.keys.webhook_delivery(delivery)
        pipe = self.redis.pipeline(transaction=True)
        fields: dict[str | bytes, str | int] = {
            name: getattr(state, name) for name in state.__struct_fields__
        }
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's key type is invariant
        if state.status == "pending":
            pipe.zadd(self.keys.webhook_due, {delivery: state.next_ms})
        else:
            pipe.zrem(self.keys.webhook_due, delivery)
        await pipe.execute()

    async def redeliver(self, delivery: Delivery) -> Attempts:
        """Send again now, with the same webhook-id and a fresh retry window."""
        now = now_ms()
        state = msgspec.structs.replace(
            delivery.state, status="pending", window_ms=now, next_ms=now, updated_ms=now
        )
        await self.record(delivery.doc.id, state)
        return state

    async def page(
        self,
        owner: str,
        cursor: str | None,
        limit: int,
        *,
        scan_id: str | None = None,
        since_ms: int | None = None,
    ) -> DeliveryPage:
        """A page of ``owner``'s log, newest first, after ``cursor`` (``<ms>:<id>``).

        With ``scan_id``, only that scan's deliveries: a tenant's callbacks share one
        log, so it is read down to ``since_ms`` (the scan's creation: none of its
        deliveries is older) and the others are skipped.
        """
        log = self.keys.webhook_log(owner)
        top: str | float = "+inf"
        after: tuple[int, str] | None = None
        if cursor:
            ms, _, member = cursor.partition(":")
            after = (int(ms), member)
            top = after[0]
        bottom: str | float = "-inf" if since_ms is None else since_ms
        chunk = limit + 64
        seen: set[str] = set()
        picked: list[tuple[str, int, DeliveryView]] = []
        offset = 0
        while len(picked) <= limit:
            rows: Any = await self.redis.zrevrangebyscore(
                log, top, bottom, start=offset, num=chunk, withscores=True
            )
            offset += len(rows)
            # Same-millisecond deliveries come in reverse member order: skip those seen.
            fresh = [
                (name, at)
                for name, at in ((m.decode(), int(score)) for m, score in rows)
                if not (after is not None and at == after[0] and name >= after[1])
                and name not in seen
            ]
            seen.update(name for name, _ in fresh)
            while fresh and len(picked) <= limit:
                # Unfiltered, only as many as the page still needs are read (more if some
                # expired); filtered, the whole chunk, most of it another scan's.
                take = len(fresh) if scan_id is not None else limit + 1 - len(picked)
                batch, fresh = fresh[:take], fresh[take:]
                views = await self._views(name for name, _ in batch)
                for (name, at), shown in zip(batch, views, strict=True):
                    if shown is not None and (scan_id is None or shown.scan_id == scan_id):
                        picked.append((name, at, shown))
            if len(rows) < chunk:
                break
        more = len(picked) > limit
        picked = picked[:limit]
        nxt = f"{picked[-1][1]}:{picked[-1][0]}" if more and picked else None
        return DeliveryPage(items=[shown for _, _, shown in picked], next=nxt)

    async def _views(self, members: Iterable[str]) -> list[DeliveryView | None]:
        """What the API shows of each delivery (None for one that expired); not the bodies."""
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(self.keys.webhook_delivery(member), _SHOWN)
        shown: list[DeliveryView | None] = []
        for values in await pipe.execute():
            raw = {k: v for k, v in zip(_SHOWN, values, strict=True) if v is not None}
            shown.append(view(_decode_doc(raw[b"doc"]), _attempts(raw)) if b"doc" in raw else None)
        return shown


_SHOWN = (b"doc", *(name.encode() for name in Attempts.__struct_fields__))
"""The fields of a delivery's hash that its view needs (all but the body)."""


def parse_cursor(raw: str) -> bool:
    """Whether ``raw`` is a cursor this store wrote."""
    ms, sep, member = raw.partition(":")
    return bool(sep) and ms.isdigit() and is_delivery_id(member)
