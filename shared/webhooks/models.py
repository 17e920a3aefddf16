"""Webhook records as stored in Redis and as the API shows them."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from shared.schemas import Base, StrictInput, Tenant
from shared.webhooks.events import WebhookEventType

DeliveryStatus = Literal["pending", "succeeded", "failed"]
Url = Annotated[str, Meta(min_length=1, max_length=2048)]
Events = Annotated[list[WebhookEventType], Meta(min_length=1, max_length=16)]
Description = Annotated[str, Meta(max_length=500)]

# --- stored --------------------------------------------------------------------------


class Endpoint(Base, frozen=True, kw_only=True):
    """A tenant's endpoint, the ``doc`` field of its hash (secrets included: never shown)."""

    id: str
    tenant: str
    url: str
    events: list[WebhookEventType]
    description: str = ""
    enabled: bool = True
    created_ms: int = 0
    secret: str
    previous_secret: str | None = None
    previous_until_ms: int = 0
    """Until then the previous secret signs too (a rotation's grace period)."""
    disabled_reason: str | None = None
    disabled_ms: int = 0

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The secrets that sign a delivery sent now: the current one, and the previous
        one while its grace period lasts."""
        if self.previous_secret and now_ms < self.previous_until_ms:
            return [self.secret, self.previous_secret]
        return [self.secret]


class Health(Base, frozen=True, kw_only=True):
    """An endpoint's failure tracking, kept beside its document (updated per attempt)."""

    failures: int = 0
    """Failed attempts since its last success."""
    failing_since_ms: int = 0
    """When its current run of failures started; 0 when its last attempt succeeded."""


class DeliveryDoc(Base, frozen=True, kw_only=True):
    """What a delivery is: one event for one endpoint (or a scan's callback_url)."""

    id: str
    event_id: str
    type: WebhookEventType
    tenant: str
    scan_id: str = ""
    """The scan that ended; empty for ``batch.completed``."""
    batch_id: str | None = None
    """The batch that ended (``batch.completed`` only)."""
    endpoint_id: str | None = None
    callback_url: str | None = None
    created_ms: int


class Attempts(Base, frozen=True, kw_only=True):
    """Where a delivery stands, the other fields of its hash."""

    status: DeliveryStatus = "pending"
    attempts: int = 0
    window_ms: int = 0
    """Start of its retry window (creation, or the last manual redelivery)."""
    next_ms: int = 0
    last_status: int = 0
    last_latency_ms: int = 0
    last_error: str = ""
    updated_ms: int = 0


# --- HTTP API ----------------------------------------------------------------------


class EndpointCreate(StrictInput, frozen=True, kw_only=True):
    """Body of ``POST /api/webhooks``."""

    url: Url
    events: Events
    description: Description = ""
    tenant: Tenant = "default"
    """Only without authentication; with it, the tenant comes from the API key."""


class EndpointPatch(StrictInput, frozen=True, kw_only=True):
    """Body of ``PATCH /api/webhooks/{id}``: the fields to change. ``enabled: true``
    re-enables an endpoint that was disabled for failing, and resets its failures."""

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None


class EndpointView(Base, frozen=True, kw_only=True):
    """An endpoint as ``GET /api/webhooks/{id}`` shows it (no secret)."""

    id: str
    tenant: str
    url: str
    events: list[WebhookEventType]
    description: str
    enabled: bool
    created_at: str
    disabled_reason: str | None = None
    disabled_at: str | None = None
    failures: int = 0
    failing_since: str | None = None
    previous_secret_expires_at: str | None = None


class EndpointCreated(EndpointView, frozen=True, kw_only=True):
    """Answer of ``POST /api/webhooks``: the endpoint and its secret, shown this once."""

    secret: str


class EndpointList(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/webhooks``."""

    items: list[EndpointView]


class SecretRotated(Base, frozen=True, kw_only=True):
    """Answer of ``POST /api/webhooks/{id}/rotate-secret``."""

    id: str
    secret: str
    previous_secret_expires_at: str | None


class DeliveryView(Base, frozen=True, kw_only=True):
    """One delivery in an endpoint's log."""

    id: str
    event_id: str
    type: WebhookEventType
    scan_id: str | None = None
    """The scan that ended (``scan.*`` events)."""
    batch_id: str | None = None
    """The batch that ended (``batch.completed``)."""
    status: DeliveryStatus
    attempts: int
    created_at: str
    updated_at: str
    next_attempt_at: str | None = None
    last_status_code: int | None = None
    last_latency_ms: int | None = None
    last_error: str | None = None


class DeliveryPage(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/webhooks/{id}/deliveries``: newest first; ``next`` is the cursor."""

    items: list[DeliveryView]
    next: str | None = None
