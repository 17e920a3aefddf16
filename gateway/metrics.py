"""The gateway's own metrics: scans accepted and refused at intake."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SUBMITTED = Counter(
    "labelscan_scans_submitted_total",
    "Scans accepted by POST /api/scans (idempotent replays excluded).",
    ["priority", "tenant"],
)
REJECTED = Counter(
    "labelscan_rejected_total", "POST /api/scans answers that refused the scan.", ["reason"]
)

LONG_POLLS = Gauge(
    "labelscan_long_polls_waiting",
    "Requests of this gateway process waiting in a long-poll (?wait=) now.",
)

SUBMIT_ROUTE = "/api/scans"

# Bounded: one reason per status the intake answers with; anything else is "other".
_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    431: "headers_too_large",
    500: "error",
    503: "unavailable",
}


def count_rejection(route: str, method: str, status: int) -> None:
    """Count a refused submission; the request timer calls this for every answer."""
    if route == SUBMIT_ROUTE and method == "POST" and status >= 400:
        REJECTED.labels(_REASONS.get(status, "other")).inc()
