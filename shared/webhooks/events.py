"""Webhook event types and the payload every delivery carries: one place to extend."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from shared.schemas import Base, ScanDetail

WebhookEventType = Literal["scan.completed", "scan.failed", "scan.cancelled", "scan.dead_lettered"]
"""Every event an endpoint can subscribe to; a new kind (``batch.completed``) is added here."""

EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)

_OF_STATE: dict[str, tuple[WebhookEventType, ...]] = {
    "completed": ("scan.completed",),
    # Every failed scan is copied to the dead-letter stream by the same script, so the two
    # events happen together; an endpoint subscribes to the one it thinks in.
    "failed": ("scan.failed", "scan.dead_lettered"),
    "cancelled": ("scan.cancelled",),
}


def types_of(state: str) -> tuple[WebhookEventType, ...]:
    """The events a scan's terminal ``state`` raises (none for any other state)."""
    return _OF_STATE.get(state, ())


class WebhookEvent(Base, frozen=True, kw_only=True):
    """The JSON body of a delivery: the event's id, type and time, and the scan as
    ``GET /api/scans/{id}`` returns it (with its result or error) under ``data``."""

    id: str
    """Also the ``webhook-id`` header: the same for every attempt and redelivery."""
    type: WebhookEventType
    created_at: str
    data: ScanDetail


encode_event = msgspec.json.Encoder().encode
