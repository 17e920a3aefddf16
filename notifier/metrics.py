"""The notifier's metrics: open streams, events written, why streams end, resumes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from notifier.events import StreamEvent
from notifier.inbox import DISCONNECTED, SHUTDOWN, SLOW

CONNECTIONS = Gauge("labelscan_sse_connections", "Open SSE streams, scan or tenant.", ["stream"])
EVENTS_SENT = Counter("labelscan_sse_events_sent_total", "Events written to SSE streams.")
DISCONNECTS = Counter(
    "labelscan_sse_disconnects_total",
    "SSE streams ended: slow_consumer, shutdown, client, or finished (the scan ended).",
    ["reason"],
)
RESUMES = Counter(
    "labelscan_sse_resumes_total",
    "Streams opened with Last-Event-ID: exact (replayed from there) or reset (state sent).",
    ["result"],
)
DELIVERY = Histogram(
    "labelscan_event_delivery_seconds",
    "From an event's publication (its entry id) to its write on a live stream.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_REASONS = {SLOW: "slow_consumer", SHUTDOWN: "shutdown", DISCONNECTED: "client"}


def stream_kind(tenant: bool) -> str:
    """The ``stream`` label of a subscription."""
    return "tenant" if tenant else "scan"


def ended(reason: str | None) -> None:
    """Count one stream's end by the inbox's reason (None: it ran to its scan's end)."""
    DISCONNECTS.labels(_REASONS.get(reason, "other") if reason else "finished").inc()


def delivered(events: Sequence[StreamEvent]) -> None:
    """Count live events about to be written and how long after publication they go."""
    if not events:
        return
    EVENTS_SENT.inc(len(events))
    now_ms = time.time() * 1000
    for event in events:
        # The entry id's first part is when the analyzer published the event.
        DELIVERY.observe(max(now_ms - event.key[0], 0) / 1000)


def replayed(count: int) -> None:
    """Count history events about to be written (their delivery time is not live)."""
    if count:
        EVENTS_SENT.inc(count)


def resumed(exact: bool) -> None:
    """Count one resume by Last-Event-ID."""
    RESUMES.labels("exact" if exact else "reset").inc()
