"""Webhook endpoints in Redis: create, read, change, rotate, disable, and who has any.

An endpoint is a hash under the deployment's tag: ``doc`` (its JSON, secrets
included), and its failure tracking (``failures``, ``failing_since_ms``),
updated per attempt without rewriting the document. A tenant's set lists its
endpoint ids; a fleet-wide set lists the tenants that have any.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from shared.clock import iso, now_ms
from shared.connection import RedisClient
from shared.keys import Keys
from shared.settings import Settings
from shared.webhooks.models import Endpoint, EndpointPatch, EndpointView, Health
from shared.webhooks.signing import new_secret

_decode = msgspec.json.Decoder(Endpoint).decode
_encode = msgspec.json.Encoder().encode


def new_endpoint_id() -> str:
    """A fresh endpoint id."""
    return "we_" + secrets.token_hex(12)


def is_endpoint_id(value: str) -> bool:
    """Whether ``value`` has the shape of an endpoint id (a cheap 404 before Redis)."""
    return (
        len(value) == 27
        and value.startswith("we_")
        and all(c in "0123456789abcdef" for c in value[3:])
    )


def view(endpoint: Endpoint, health: Health) -> EndpointView:
    """What the API shows of an endpoint."""
    return EndpointView(
        id=endpoint.id,
        tenant=endpoint.tenant,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        enabled=endpoint.enabled,
        created_at=iso(endpoint.created_ms),
        disabled_reason=endpoint.disabled_reason,
        disabled_at=iso(endpoint.disabled_ms) if endpoint.disabled_ms else None,
        failures=health.failures,
        failing_since=iso(health.failing_since_ms) if health.failing_since_ms else None,
        previous_secret_expires_at=(
            iso(endpoint.previous_until_ms)
            if endpoint.previous_secret and endpoint.previous_until_ms > now_ms()
            else None
        ),
    )


def _health(raw: dict[bytes, bytes]) -> Health:
    return Health(
        failures=int(raw.get(b"failures", b"0")),
        failing_since_ms=int(raw.get(b"failing_since_ms", b"0")),
    )


class EndpointStore:
    """The endpoints of every tenant under one prefix."""

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings

    async def create(self, tenant: str, url: str, events: list[Any], description: str) -> Endpoint:
        """A new enabled endpoint with a fresh secret."""
        endpoint = Endpoint(
            id=new_endpoint_id(),
            tenant=tenant,
            url=url,
            events=list(dict.fromkeys(events)),
            description=description,
            created_ms=now_ms(),
            secret=new_secret(),
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.webhook_endpoint(endpoint.id), "doc", _encode(endpoint))
        pipe.sadd(self.keys.webhook_endpoints(tenant), endpoint.id)
        pipe.sadd(self.keys.webhook_tenants, tenant)
        await pipe.execute()
        return endpoint

    async def count(self, tenant: str) -> int:
        """How many endpoints ``tenant`` has."""
        return int(await self.redis.scard(self.keys.webhook_endpoints(tenant)))

    async def get(self, endpoint_id: str) -> tuple[Endpoint, Health] | None:
        """An endpoint and its failure tracking; None when unknown."""
        if not is_endpoint_id(endpoint_id):
            return None
        raw: Any = await self.redis.hgetall(self.keys.webhook_endpoint(endpoint_id))
        if not raw or b"doc" not in raw:
            return None
        return _decode(raw[b"doc"]), _health(raw)

    async def of_tenant(self, tenant: str) -> list[tuple[Endpoint, Health]]:
        """A tenant's endpoints, oldest first."""
        ids: Any = await self.redis.smembers(self.keys.webhook_endpoints(tenant))
        pipe = self.redis.pipeline(transaction=False)
        for endpoint_id in ids:
            pipe.hgetall(self.keys.webhook_endpoint(endpoint_id.decode()))
        replies = await pipe.execute()
        found = [(_decode(raw[b"doc"]), _health(raw)) for raw in replies if raw and b"doc" in raw]
        return sorted(found, key=lambda pair: (pair[0].created_ms, pair[0].id))

    async def all(self) -> list[tuple[Endpoint, Health]]:
        """Every tenant's endpoints (operators)."""
        tenants: Any = await self.redis.smembers(self.keys.webhook_tenants)
        out: list[tuple[Endpoint, Health]] = []
        for tenant in sorted(t.decode() for t in tenants):
            out.extend(await self.of_tenant(tenant))
        return out

    async def has_enabled(self, tenant: str) -> bool:
        """Whether ``tenant`` has an enabled endpoint (its scans then go to the outbox)."""
        return any(e.enabled for e, _ in await self.of_tenant(tenant))

    async def _save(self, endpoint: Endpoint, *, reset_health: bool = False) -> None:
        key = self.keys.webhook_endpoint(endpoint.id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, "doc", _encode(endpoint))
        if reset_health:
            pipe.hdel(key, "failures", "failing_since_ms")
        await pipe.execute()

    async def update(self, endpoint: Endpoint, patch: EndpointPatch) -> Endpoint:
        """``endpoint`` with the patch's fields; enabling clears a disabled reason."""
        changes: dict[str, Any] = {
            f: getattr(patch, f)
            for f in ("url", "events", "description", "enabled")
            if getattr(patch, f) is not None
        }
        if "events" in changes:
            changes["events"] = list(dict.fromkeys(changes["events"]))
        if changes.get("enabled"):
            changes.update(disabled_reason=None, disabled_ms=0)
        updated = msgspec.structs.replace(endpoint, **changes)
        await self._save(updated, reset_health=bool(changes.get("enabled")))
        return updated

    async def rotate(self, endpoint: Endpoint) -> Endpoint:
        """A new secret; the current one keeps signing for WEBHOOK_ROTATION_GRACE."""
        grace_ms = self.settings.webhook_rotation_grace_s * 1000
        rotated = msgspec.structs.replace(
            endpoint,
            secret=new_secret(),
            previous_secret=endpoint.secret if grace_ms else None,
            previous_until_ms=now_ms() + grace_ms if grace_ms else 0,
        )
        await self._save(rotated)
        return rotated

    async def delete(self, endpoint: Endpoint) -> None:
        """Remove the endpoint; its pending deliveries fail at their next attempt."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.webhook_endpoint(endpoint.id))
        pipe.srem(self.keys.webhook_endpoints(endpoint.tenant), endpoint.id)
        await pipe.execute()

    async def succeeded(self, endpoint_id: str) -> None:
        """An attempt reached it: its run of failures ends."""
        await self.redis.hdel(
            self.keys.webhook_endpoint(endpoint_id), "failures", "failing_since_ms"
        )

    async def failed(self, endpoint: Endpoint, reason: str) -> bool:
        """Count a failed attempt; disable the endpoint once it has failed without a
        success for WEBHOOK_DISABLE_AFTER_HOURS. True when this call disabled it."""
        key = self.keys.webhook_endpoint(endpoint.id)
        now = now_ms()
        # A deleted endpoint must not come back as a hash of counters alone.
        if not await self.redis.hexists(key, "doc"):
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, "failures", 1)
        pipe.hsetnx(key, "failing_since_ms", now)
        pipe.hget(key, "failing_since_ms")
        _, _, since = await pipe.execute()
        if not endpoint.enabled:
            return False
        limit_ms = self.settings.webhook_disable_after_hours * 3_600_000
        if now - int(since or now) < limit_ms:
            return False
        current = await self.get(endpoint.id)
        if current is None or not current[0].enabled:
            return False
        hours = self.settings.webhook_disable_after_hours
        disabled = msgspec.structs.replace(
            current[0],
            enabled=False,
            disabled_ms=now,
            disabled_reason=(
                f"failing for {_span(hours)} without a success since "
                f"{iso(int(since))}; last error: {reason}"
            ),
        )
        await self._save(disabled)
        return True


def _span(hours: float) -> str:
    seconds = hours * 3600
    return f"{hours:g} h" if seconds >= 3600 else f"{seconds:g} s"
