"""Webhook delivery metrics (in the notifier's ``/metrics``, which hosts the deliverer)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ATTEMPTS = Counter(
    "labelscan_webhook_attempts_total",
    "Webhook delivery attempts by outcome: succeeded, retrying (will be tried again) or "
    "failed (given up: permanent answer, refused URL, retry window over, endpoint gone).",
    ["outcome"],
)
REQUEST = Histogram(
    "labelscan_webhook_request_seconds",
    "Time a receiver took to answer one delivery attempt (or to fail it).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG = Histogram(
    "labelscan_webhook_delivery_seconds",
    "From a scan's end (its outbox entry) to the delivery's success, retries included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
