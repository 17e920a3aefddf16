"""Scan events, built in one place.

An event is encoded whole in Python, attempt number included, and passed to a
script as one value: the script appends it to the streams and stores it as the
scan's latest event, so ``/status`` and the SSE frame say the same words.
"""

from __future__ import annotations

import msgspec

from shared.clock import iso, now_ms
from shared.schemas import EventType, Progress, ScanError, ScanEvent, ScanState, Verdict

_encode = msgspec.json.Encoder().encode

QUEUED = Progress(stage="queued", percentage=0, message="Waiting for an analyzer")
HANDED_BACK = Progress(stage="queued", percentage=0, message="Handed back by a stopping analyzer")
REPLAYED = Progress(stage="queued", percentage=0, message="Replayed; waiting for an analyzer")
CANCELLED = Progress(stage="cancelled", percentage=0, message="Cancelled")
COMPLETED = Progress(stage="completed", percentage=100, message="Analysis complete")


def scheduled(due_ms: int) -> Progress:
    """Progress of a scan that waits for its time."""
    return Progress(stage="scheduled", percentage=0, message=f"Scheduled for {iso(due_ms)}")


def deferred(cap: int) -> Progress:
    """Progress of a scan whose tenant is at its cap of active scans."""
    return Progress(
        stage="scheduled",
        percentage=0,
        message=f"Waiting: this tenant already has {cap} scans running",
    )


def paused(what: str) -> Progress:
    """Progress of a scan held by an operator's pause (``what``: "tenant acme", ...)."""
    return Progress(
        stage="paused", percentage=0, message=f"Paused by an operator ({what}); stays queued"
    )


def retrying(attempt: int, error: ScanError, delay_s: float) -> Progress:
    """Progress of a scan whose attempt failed and will run again."""
    message = f"Attempt {attempt} failed ({error.kind}); retrying in {delay_s:.1f}s"
    return Progress(stage="retrying", percentage=0, message=message)


def event(
    scan_id: str,
    type_: EventType,
    state: ScanState,
    progress: Progress,
    attempt: int,
    *,
    error: ScanError | None = None,
    verdict: Verdict | None = None,
) -> bytes:
    """One event, encoded as it is stored, streamed and shown."""
    return _encode(
        ScanEvent(
            scan_id=scan_id,
            type=type_,
            state=state,
            progress=progress,
            attempt=attempt,
            at_ms=now_ms(),
            error=error,
            verdict=verdict,
        )
    )


def collected(window_s: float) -> Progress:
    """Progress of a low-priority scan waiting to be sent in a provider batch."""
    return Progress(
        stage="batched",
        percentage=35,
        message=f"Collected for a half-price provider batch; sent within {window_s:g}s",
    )


def batched(batch_id: str, size: int) -> Progress:
    """Progress of a scan whose request is out in a provider Message Batch."""
    return Progress(
        stage="batched",
        percentage=40,
        message=(
            f"In provider batch {batch_id} with {size} scan{'s' if size != 1 else ''} "
            "at half price; results can take minutes to hours"
        ),
    )
