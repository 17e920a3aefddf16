"""The analyzer's metrics: outcomes, attempts, durations, tokens and cost.

Served on the health port (``/metrics`` next to ``/healthz``).
"""

from __future__ import annotations

import functools
import time

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import finished
from shared.schemas import Usage
from shared.settings import Settings

_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

ATTEMPTS = Counter(
    "labelscan_scan_attempts_total",
    "Attempts that ended without an outcome: retried, reclaimed or handed_back.",
    ["result"],
)
SCAN_DURATION = Histogram(
    "labelscan_scan_duration_seconds",
    "From claim to finish of the attempt that decided the scan's outcome.",
    ["backend"],
    buckets=_SLOW,
)
QUEUE_WAIT = Histogram(
    "labelscan_queue_wait_seconds",
    "From accept to the first claim by an analyzer.",
    buckets=(0.005, 0.01, 0.025, *_SLOW),
)
STAGE_DURATION = Histogram(
    "labelscan_stage_duration_seconds",
    "Time spent in each stage of an attempt: fetch, prepare, ratelimit, analyze, finish.",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, *_SLOW),
)
TOKENS = Counter(
    "labelscan_anthropic_tokens_total",
    "Tokens the analyses consumed: input, output, cache_read, cache_creation.",
    ["kind"],
)
COST = Counter(
    "labelscan_anthropic_cost_usd_total",
    "Cost of the analyses in USD, from ANTHROPIC_PRICES.",
    ["model"],
)
RATELIMIT_WAIT = Counter(
    "labelscan_ratelimit_wait_seconds_total",
    "Seconds attempts waited for API capacity, by the limit that held them.",
    ["reason"],
)
__all__ = ["finished"]  # counted here by the analyzer, and by the gateway for cancellations

INFLIGHT = Gauge("labelscan_inflight_scans", "Scans this analyzer is running now.")

_WAIT_REASONS = {
    "requests per minute": "requests",
    "input tokens per minute": "input_tokens",
    "output tokens per minute": "output_tokens",
}


def wait_reason(reason: str) -> str:
    """A bounded label for a limiter's wait reason (a 429 pause names its own cause)."""
    return _WAIT_REASONS.get(reason, "paused")


BATCH_PRICE = 0.5
"""What a Message Batches request costs against the list price: half."""

BATCHES = Counter(
    "labelscan_anthropic_batches_total",
    "Provider Message Batches: created, ended (results read) or failed (not created).",
    ["result"],
)

# A labelled child looked up once, not per scan (``labels`` takes a lock and builds a
# key each call); the label values here are a handful of fixed words.
_stage = functools.lru_cache(maxsize=64)(STAGE_DURATION.labels)
_TOKENS_INPUT, _TOKENS_OUTPUT, _TOKENS_CACHE_READ, _TOKENS_CACHE_CREATION = (
    TOKENS.labels(kind) for kind in ("input", "output", "cache_read", "cache_creation")
)


def cost_usd(settings: Settings, model: str, usage: Usage, *, batch: bool = False) -> float:
    """What ``usage`` of ``model`` costs in USD (0 for an unpriced model); half in a batch."""
    price = settings.price_of(model)
    if price is None:
        return 0.0  # a model without a price (the local backend's) costs nothing
    cost = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_input_tokens * price.cache_read
        + usage.cache_creation_input_tokens * price.cache_creation
    ) / 1_000_000
    return cost * BATCH_PRICE if batch else cost


def spent(settings: Settings, model: str, usage: Usage, *, batch: bool = False) -> None:
    """Count the tokens of one analysis and what they cost (half for a batch request)."""
    _TOKENS_INPUT.inc(usage.input_tokens)
    _TOKENS_OUTPUT.inc(usage.output_tokens)
    _TOKENS_CACHE_READ.inc(usage.cache_read_input_tokens)
    _TOKENS_CACHE_CREATION.inc(usage.cache_creation_input_tokens)
    cost = cost_usd(settings, model, usage, batch=batch)
    if cost:
        COST.labels(model).inc(cost)


class StageClock:
    """Times the stages of one attempt: each call closes the stage the previous one opened."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.monotonic()

    def __call__(self, stage: str) -> None:
        """Observe ``stage`` as lasting from the previous call (or creation) until now."""
        now = time.monotonic()
        _stage(stage).observe(now - self._since)
        self._since = now
