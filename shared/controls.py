"""Operator controls that change at runtime: pauses and limits, in one fleet-wide hash.

The hash ``{prefix}:controls`` holds only what an operator changed: a field per
pause (``pause:<tenant|*>:<priority|*>``) and per overridden limit
(``limit:<name>``). Everything else comes from the settings, so environment
variables stay the defaults and an empty hash means "as configured".

Every replica reads the hash through :class:`LiveControls`, at most every
``REFRESH_S`` and only when it needs it (a claim, an API call, a request): one
``HGETALL`` of a few fields, so a change reaches the whole fleet within a second
with no pub/sub subscription to lose. Every change is appended, with who made
it and when, to the capped stream ``{prefix}:audit``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shared.clock import now_ms
from shared.connection import RedisClient
from shared.keys import Keys
from shared.schemas import Priority, Tenant
from shared.settings import Settings

REFRESH_S = 0.5
"""How old a replica's copy of the controls may get: changes apply within a second."""
AUDIT_MAXLEN = 10_000

# Bounded so every value stays exact in Lua's doubles.
NonNegative = Annotated[int, Meta(ge=0, le=10**12)]
NonNegativeFloat = Annotated[float, Meta(ge=0, le=10**6)]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The limits in force (0: off)."""

    anthropic_rpm: int
    """Fleet-wide Claude requests per minute."""
    anthropic_input_tpm: int
    anthropic_output_tpm: int
    tenant_max_active: int
    """Scans one tenant may have running at once."""
    tenant_rps: float
    """Requests per second per API key at the gateway."""
    tenant_scans_per_day: int
    """Scans per API key per UTC day."""


LIMIT_NAMES: tuple[str, ...] = Limits.__struct_fields__


class LimitsPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /api/admin/limits``: the limits to change; a null restores the setting."""

    anthropic_rpm: NonNegative | msgspec.UnsetType | None = msgspec.UNSET
    anthropic_input_tpm: NonNegative | msgspec.UnsetType | None = msgspec.UNSET
    anthropic_output_tpm: NonNegative | msgspec.UnsetType | None = msgspec.UNSET
    tenant_max_active: NonNegative | msgspec.UnsetType | None = msgspec.UNSET
    tenant_rps: NonNegativeFloat | msgspec.UnsetType | None = msgspec.UNSET
    tenant_scans_per_day: NonNegative | msgspec.UnsetType | None = msgspec.UNSET


class PauseTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to pause or resume: a tenant, a priority, both, or (neither) everything."""

    tenant: Tenant | None = None
    priority: Priority | None = None

    @property
    def field(self) -> str:
        return f"pause:{self.tenant or '*'}:{self.priority or '*'}"

    def describe(self) -> str:
        """Words for the scan's progress message."""
        if self.tenant and self.priority:
            return f"tenant {self.tenant}, priority {self.priority}"
        if self.tenant:
            return f"tenant {self.tenant}"
        if self.priority:
            return f"priority {self.priority}"
        return "all scans"


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    """A pause in force."""

    tenant: str | None
    priority: str | None
    by: str
    at_ms: int


class ControlsView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/admin/controls`` and the answer of pause, resume and limit changes."""

    pauses: list[Pause]
    limits: Limits
    overridden: list[str]
    """Limits set at runtime; the others are the service's settings."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One operator action."""

    id: str
    at_ms: int
    who: str
    action: str
    detail: str
    """The action's parameters, JSON."""


class AuditLog(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[AuditEntry]


def defaults(settings: Settings) -> Limits:
    """The limits the settings give (environment variables)."""
    return Limits(**{name: getattr(settings, name) for name in LIMIT_NAMES})


class Controls:
    """One replica's copy of the controls hash."""

    __slots__ = ("limits", "overridden", "pauses")

    def __init__(self, raw: dict[bytes, bytes], settings: Settings) -> None:
        self.pauses: dict[tuple[str, str], Pause] = {}
        base = {name: getattr(settings, name) for name in LIMIT_NAMES}
        overridden: list[str] = []
        for key, value in raw.items():
            kind, _, rest = key.decode().partition(":")
            if kind == "pause":
                tenant, _, priority = rest.rpartition(":")
                meta = msgspec.json.decode(value) if value.startswith(b"{") else {}
                self.pauses[(tenant, priority)] = Pause(
                    tenant=None if tenant == "*" else tenant,
                    priority=None if priority == "*" else priority,
                    by=str(meta.get("by", "")),
                    at_ms=int(meta.get("at_ms", 0)),
                )
            elif kind == "limit" and rest in base:
                # Written by ControlStore from a validated patch; a value set by hand
                # that does not parse is ignored rather than stopping every claim.
                try:
                    base[rest] = type(base[rest])(value.decode())
                except ValueError:
                    continue
                overridden.append(rest)
        self.limits = Limits(**base)
        self.overridden = sorted(overridden)

    def paused(self, tenant: str, priority: str) -> PauseTarget | None:
        """The pause that holds a scan of ``tenant`` at ``priority``, if any."""
        for t, p in ((tenant, priority), (tenant, "*"), ("*", priority), ("*", "*")):
            if (t, p) in self.pauses:
                return PauseTarget(
                    tenant=None if t == "*" else t,
                    priority=None if p == "*" else p,  # type: ignore[arg-type]
                )
        return None

    def view(self) -> ControlsView:
        return ControlsView(
            pauses=list(self.pauses.values()), limits=self.limits, overridden=self.overridden
        )


class LiveControls:
    """The controls as this replica sees them, refreshed when older than ``REFRESH_S``.

    Read lazily: a replica that does nothing sends nothing, and concurrent callers
    share one ``HGETALL``.
    """

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self._redis = redis
        self._key = keys.controls
        self._settings = settings
        self._current = Controls({}, settings)
        self._read_at = -REFRESH_S
        self._reading: asyncio.Future[Controls] | None = None

    async def current(self) -> Controls:
        """The controls, at most ``REFRESH_S`` old (RedisError if they cannot be read)."""
        if time.monotonic() - self._read_at < REFRESH_S:
            return self._current
        # One read shared by every caller, who all resume in the same loop turn (a lock
        # would wake them one turn each, and their scripts would go in as many pipelines).
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(self._read_done)
        return await asyncio.shield(self._reading)

    async def _read(self) -> Controls:
        started = time.monotonic()
        raw: Any = await self._redis.hgetall(self._key)
        self._current = Controls(raw, self._settings)
        self._read_at = started
        return self._current

    def _read_done(self, _: asyncio.Future[Controls]) -> None:
        self._reading = None

    def invalidate(self) -> None:
        """Read again at the next use (after this replica changed them)."""
        self._read_at = -REFRESH_S


class ControlStore:
    """Change the controls, each change audited in the same transaction."""

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings

    async def read(self) -> Controls:
        raw: Any = await self.redis.hgetall(self.keys.controls)
        return Controls(raw, self.settings)

    async def pause(self, target: PauseTarget, who: str) -> Controls:
        meta = msgspec.json.encode({"by": who, "at_ms": now_ms()})
        return await self._change(who, "pause", target, hset={target.field: meta})

    async def resume(self, target: PauseTarget, who: str) -> Controls:
        return await self._change(who, "resume", target, hdel=[target.field])

    async def set_limits(self, patch: LimitsPatch, who: str) -> Controls:
        hset: dict[str, bytes] = {}
        hdel: list[str] = []
        for name in LIMIT_NAMES:
            value = getattr(patch, name)
            if value is msgspec.UNSET:
                continue
            if value is None:
                hdel.append(f"limit:{name}")
            else:
                hset[f"limit:{name}"] = str(value).encode()
        return await self._change(who, "limits", patch, hset=hset, hdel=hdel)

    async def _change(
        self,
        who: str,
        action: str,
        detail: msgspec.Struct,
        *,
        hset: dict[str, bytes] | None = None,
        hdel: list[str] | None = None,
    ) -> Controls:
        # Both keys share the {prefix} tag: one transaction, also on a cluster.
        pipe = self.redis.pipeline(transaction=True)
        if hset:
            pipe.hset(self.keys.controls, mapping=hset)  # type: ignore[arg-type]
        if hdel:
            pipe.hdel(self.keys.controls, *hdel)
        audit_entry(pipe, self.keys, who, action, detail)
        pipe.hgetall(self.keys.controls)
        replies = await pipe.execute()
        # Analyzers listening on the control channel read again at once; the others
        # (and any that missed it) at their next refresh.
        await self.redis.publish(self.keys.control, "controls")
        return Controls(replies[-1], self.settings)

    async def audit(self, count: int) -> AuditLog:
        """The latest ``count`` operator actions, newest first."""
        raw: Any = await self.redis.xrevrange(self.keys.audit, count=count)
        return AuditLog(
            entries=[
                AuditEntry(
                    id=entry_id.decode(),
                    at_ms=int(fields.get(b"at_ms", b"0")),
                    who=fields.get(b"who", b"").decode(),
                    action=fields.get(b"action", b"").decode(),
                    detail=fields.get(b"detail", b"{}").decode(),
                )
                for entry_id, fields in raw
            ]
        )

    async def record(self, who: str, action: str, detail: msgspec.Struct) -> None:
        """Audit an action that changed no control (a bulk action, a drain)."""
        pipe = self.redis.pipeline(transaction=False)
        audit_entry(pipe, self.keys, who, action, detail)
        await pipe.execute()


def audit_entry(pipe: Any, keys: Keys, who: str, action: str, detail: msgspec.Struct) -> None:
    """Queue one audit entry on ``pipe``."""
    pipe.xadd(
        keys.audit,
        {
            "at_ms": now_ms(),
            "who": who,
            "action": action,
            "detail": msgspec.json.encode(detail),
        },
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )
