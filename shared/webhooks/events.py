"""Webhook event types and the payloads deliveries carry: one place to extend."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from shared.schemas import Base, BatchStatus, ScanDetail

ScanEventType = Literal["scan.completed", "scan.failed", "scan.cancelled", "scan.dead_lettered"]
"""The events of one scan's end; their payload is :class:`WebhookEvent`."""

WebhookEventType = Literal[ScanEventType, "batch.completed"]
"""Every event an endpoint can subscribe to; ``batch.completed``'s payload is
:class:`BatchWebhookEvent`."""

EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)

BATCH_COMPLETED: Literal["batch.completed"] = "batch.completed"

_OF_STATE: dict[str, tuple[ScanEventType, ...]] = {
    "completed": ("scan.completed",),
    # Every failed scan is copied to the dead-letter stream by the same script, so the two
    # events happen together; an endpoint subscribes to the one it thinks in.
    "failed": ("scan.failed", "scan.dead_lettered"),
    "cancelled": ("scan.cancelled",),
}


def types_of(state: str) -> tuple[ScanEventType, ...]:
    """The events a scan's terminal ``state`` raises (none for any other state)."""
    return _OF_STATE.get(state, ())


class WebhookEvent(Base, frozen=True, kw_only=True):
    """The JSON body of a scan's delivery: the event's id, type and time, and the scan as
    ``GET /api/scans/{id}`` returns it (with its result or error) under ``data``."""

    id: str
    """Also the ``webhook-id`` header: the same for every attempt and redelivery."""
    type: ScanEventType
    created_at: str
    data: ScanDetail


class BatchWebhookEvent(Base, frozen=True, kw_only=True):
    """The JSON body of a ``batch.completed`` delivery: the batch as
    ``GET /api/batches/{id}`` returns it (counts, first page of scan ids, aggregate)."""

    id: str
    """Also the ``webhook-id`` header; a batch that ends again after a retry is a new event."""
    type: Literal["batch.completed"]
    created_at: str
    data: BatchStatus


encode_event = msgspec.json.Encoder().encode
