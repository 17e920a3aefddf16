"""Who is calling: API keys held hashed, compared in constant time, limited per tenant."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import msgspec
import structlog
from starlette.requests import Request

from shared import scripts
from shared.clock import now_ms
from shared.controls import LiveControls
from shared.http.errors import ApiError
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.settings import Settings, SettingsError

log = structlog.get_logger("gateway")


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller; ``tenant`` None means auth is off (sees everything)."""

    tenant: str | None
    admin: bool

    @property
    def scope(self) -> str | None:
        """The tenant whose data this caller may see; None for all."""
        return None if self.admin else self.tenant

    def owns(self, tenant: str | None) -> bool:
        """Whether this caller may see a resource of ``tenant``."""
        return self.admin or self.tenant == tenant


def hash_key(key: str) -> bytes:
    """The stored form of an API key (SHA-256; keys are long random strings, not passwords)."""
    return hashlib.sha256(key.encode()).digest()


def load_keys(settings: Settings) -> list[tuple[bytes, str]]:
    """(key hash, tenant) pairs from LABELSCAN_API_KEYS and LABELSCAN_API_KEYS_FILE."""
    ring = [(hash_key(key.value), tenant) for tenant, key in settings.api_keys]
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise SettingsError(f"LABELSCAN_API_KEYS_FILE={path}: {exc.strerror}") from None
        for number, raw_line in enumerate(lines, 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            tenant, _, digest = line.partition(":")
            try:
                raw = bytes.fromhex(digest)
            except ValueError:
                raw = b""
            if len(raw) != 32 or not tenant:
                raise SettingsError(
                    f"LABELSCAN_API_KEYS_FILE line {number}: expected tenant:<sha256 hex>"
                )
            ring.append((raw, tenant))
    return ring


class Guard:
    """Authenticates requests and applies each tenant's requests-per-second limit."""

    def __init__(
        self, settings: Settings, run: ScriptRunner, keys: Keys, controls: LiveControls
    ) -> None:
        self.settings = settings
        self._controls = controls
        self._run = run
        self._keys = keys
        self._ring: list[tuple[bytes, str]] = []
        if settings.auth:
            self._ring = load_keys(settings)
            if not self._ring:
                raise SettingsError(
                    "no API keys: set LABELSCAN_API_KEYS or LABELSCAN_API_KEYS_FILE "
                    "(or LABELSCAN_AUTH=off for local experiments)"
                )
            if not settings.event_keys:
                raise SettingsError("LABELSCAN_EVENT_KEYS is required when auth is on")
        else:
            log.warning(
                "authentication is OFF (LABELSCAN_AUTH=off): every caller sees "
                "every scan; never run this way in production"
            )

    def tenant_for(self, key: str) -> str | None:
        """The tenant of ``key``; every entry is compared so timing tells nothing."""
        digest = hash_key(key)
        found = None
        for stored, tenant in self._ring:
            if hmac.compare_digest(stored, digest):
                found = tenant
        return found

    async def caller(self, request: Request) -> Caller:
        """The caller of ``request``; ApiError 401 or 429 if refused."""
        if not self.settings.auth:
            return Caller(tenant=None, admin=True)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        tenant = self.tenant_for(key.strip()) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise ApiError(
                401,
                "unauthorized",
                "send Authorization: Bearer <API key>",
                "authorization",
                {"www-authenticate": 'Bearer realm="labelscan"'},
            )
        # The rate is an argument of each call, so a change at runtime applies at once.
        rps = (await self._controls.current()).limits.tenant_rps
        if rps:
            wait_ms = await self._run(
                scripts.TENANT_RATE,
                scripts.TenantRateKeys(tat=self._keys.tenant_rate(tenant)),
                scripts.TenantRateArgs(
                    now_ms=now_ms(), interval_ms=max(1, round(1000 / rps)), burst=max(1, round(rps))
                ),
            )
            if wait_ms:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"over {rps:g} requests per second for this key",
                    headers={"retry-after": str(max(1, -(-int(wait_ms) // 1000)))},
                )
        return Caller(tenant=tenant, admin=tenant in self.settings.admin_tenants)
