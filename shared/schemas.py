"""Message schemas: every struct that crosses a process or HTTP boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Category = Literal["toys", "cosmetics", "electronics", "food", "supplements", "general"]
Marketplace = Literal["US", "UK", "DE", "FR", "IT", "ES", "JP", "CA"]
Priority = Literal["high", "normal", "low"]
ScanState = Literal["scheduled", "queued", "active", "retrying", "completed", "failed", "cancelled"]
Stage = Literal[
    "queued",
    "scheduled",
    "paused",
    "fetching",
    "waiting",
    "batched",
    "analyzing",
    "ocr",
    "checking_rules",
    "parsing",
    "retrying",
    "completed",
    "failed",
    "cancelled",
]
EventType = Literal[
    "scheduled", "queued", "progress", "retrying", "completed", "failed", "cancelled"
]
Severity = Literal["critical", "major", "minor", "info"]
Verdict = Literal["compliant", "non_compliant", "needs_review"]

Tenant = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
"""Who a scan belongs to: from the API key once auth is on, else the request's field."""

CATEGORIES: tuple[Category, ...] = (
    "toys",
    "cosmetics",
    "electronics",
    "food",
    "supplements",
    "general",
)
MARKETPLACES: tuple[Marketplace, ...] = ("US", "UK", "DE", "FR", "IT", "ES", "JP", "CA")
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class Base(msgspec.Struct, frozen=True, kw_only=True):
    """Common config: immutable, keyword-only; unknown fields are ignored.

    Stored and streamed records must survive a rolling upgrade: an analyzer of
    version N decodes entries a gateway of version N+1 wrote with a new field.
    """


class StrictInput(Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """HTTP input: an unknown field is the client's mistake, refused with ``422``."""


# --- HTTP API ---------------------------------------------------------------


class ScanCreate(StrictInput, frozen=True, kw_only=True):
    """Body of ``POST /api/scans`` (JSON form; multipart carries the same fields)."""

    category: Category
    marketplaces: Annotated[list[Marketplace], Meta(min_length=1, max_length=len(MARKETPLACES))]
    product_name: Annotated[str, Meta(min_length=1, max_length=200)]
    image_url: Annotated[str, Meta(max_length=2048)] | None = None
    image_base64: str | None = None
    priority: Priority = "normal"
    tenant: Tenant = "default"
    delay_ms: Annotated[int, Meta(ge=0)] | None = None
    run_at: datetime | None = None
    callback_url: Annotated[str, Meta(max_length=2048)] | None = None
    """Signed webhooks of this scan's end go here too (checked like a webhook endpoint's)."""


class ScanAccepted(Base, frozen=True, kw_only=True):
    """Answer to an accepted scan."""

    scan_id: str
    status: ScanState
    status_url: str
    events_url: str
    events_token: str | None = None
    callback_secret: str | None = None
    """With ``callback_url``: the secret that signs its deliveries (``whsec_...``)."""


class EventsLink(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/scans/{id}/events-url`` and ``GET /api/events-url``."""

    events_url: str
    events_token: str | None


class Progress(Base, frozen=True, kw_only=True):
    """Where a scan stands, for a progress bar."""

    stage: Stage
    percentage: Annotated[int, Meta(ge=0, le=100)]
    message: str


class ScanError(Base, frozen=True, kw_only=True):
    """Why a scan failed."""

    kind: str
    message: str
    retryable: bool = False


class ErrorBody(Base, frozen=True, kw_only=True):
    """JSON body of every 4xx/5xx answer."""

    error: str
    detail: str
    field: str | None = None


class LimiterStats(Base, frozen=True, kw_only=True):
    """The shared API rate limiter: use over the last minute against the limits."""

    requests_last_minute: int
    requests_per_minute_limit: int
    input_tokens_last_minute: int
    input_tokens_per_minute_limit: int
    output_tokens_last_minute: int
    output_tokens_per_minute_limit: int
    paused_until: str | None = None
    pause_reason: str | None = None


class QueueStats(Base, frozen=True, kw_only=True):
    """Counts over the whole deployment, read from Redis."""

    waiting: int
    active: int
    completed: int
    failed: int
    cancelled: int = 0
    delayed: int = 0
    waiting_by_priority: dict[str, int] = {}
    active_by_tenant: dict[str, int] = {}
    consumers: int = 0
    consumer_names: list[str] | None = None
    """The analyzers' consumer names (operators only): what ``/api/admin/drain`` takes."""
    limiter: LimiterStats | None = None


# --- analysis result (one schema for every backend) ---------------------------


class Finding(Base, frozen=True, kw_only=True):
    """One label requirement checked against the label."""

    rule: Annotated[str, Meta(description="Short id of the requirement, e.g. EU-ALL-GPSR")]
    requirement: Annotated[str, Meta(description="What the regulation requires, in one line")]
    status: Annotated[
        Literal["pass", "fail", "unclear"],
        Meta(description="pass: visibly met; fail: missing or wrong; unclear: cannot tell"),
    ]
    severity: Severity
    evidence: Annotated[str, Meta(description="Text or element on the label that decided it")]
    fix: Annotated[str, Meta(description="What the seller should change; empty when passed")]
    regulation: Annotated[str, Meta(description="Regulation or marketplace policy it comes from")]


class MarketplaceReport(Base, frozen=True, kw_only=True):
    """Findings for one marketplace."""

    marketplace: Marketplace
    verdict: Verdict
    findings: list[Finding]


class LabelAnalysis(Base, frozen=True, kw_only=True):
    """What an analysis backend returns: the structured-output schema sent to Claude."""

    verdict: Verdict
    summary: Annotated[str, Meta(description="Two or three sentences for the seller")]
    detected_text: Annotated[str, Meta(description="The label's text as read, abridged")]
    marketplaces: list[MarketplaceReport]


class Usage(Base, frozen=True, kw_only=True):
    """Tokens an analysis consumed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class ImageSent(Base, frozen=True, kw_only=True):
    """The prepared image a backend analysed (oriented, downscaled, re-encoded)."""

    media_type: str
    width: int
    height: int
    bytes: int
    token_estimate: int
    """Anthropic's documented cost of this image: width * height / 750 input tokens."""


class ScanResult(Base, frozen=True, kw_only=True):
    """A completed scan's stored result."""

    analysis: LabelAnalysis
    backend: str
    model: str
    usage: Usage
    duration_ms: int
    image: ImageSent | None = None
    batch: bool = False
    """Analysed in a provider Message Batch (half price; usage as the batch reported it)."""


class ScanStatus(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/scans/{id}/status``."""

    scan_id: str
    state: ScanState
    progress: Progress
    attempts: int
    created_at: str
    updated_at: str
    next_attempt_at: str | None = None
    trace_id: Annotated[str, Meta(pattern="^[0-9a-f]{32}$")] | None = None
    """The scan's OpenTelemetry trace (gateway accept to the last attempt); None untraced."""


class ScanDetail(ScanStatus, frozen=True, kw_only=True):
    """Answer of ``GET /api/scans/{id}``: status plus the outcome."""

    category: Category
    marketplaces: list[Marketplace]
    product_name: str
    tenant: str = "default"
    result: ScanResult | None = None
    error: ScanError | None = None
    batch_id: str | None = None
    """The batch it was submitted in, if any."""


class CancelResult(Base, frozen=True, kw_only=True):
    """Answer of ``DELETE /api/scans/{id}``."""

    scan_id: str
    state: ScanState
    previous_state: ScanState


class DeadLetter(Base, frozen=True, kw_only=True):
    """One entry of the dead-letter stream."""

    id: str
    scan_id: str
    error: ScanError
    attempts: int
    failed_at: str
    history: list[ScanError]
    category: Category | None = None
    marketplaces: list[Marketplace] = []
    product_name: str | None = None
    tenant: str | None = None
    raw_entry: str | None = None


class DeadLetters(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/dead``."""

    items: list[DeadLetter]
    next: str | None = None


# --- stream messages -----------------------------------------------------------


class ScanJob(Base, frozen=True, kw_only=True):
    """The request stream entry's payload. Carries no image bytes, only where to find them."""

    scan_id: str
    category: Category
    marketplaces: list[Marketplace]
    product_name: str
    priority: Priority = "normal"
    tenant: str = "default"
    image_url: str | None = None
    submitted_at_ms: int = 0
    trace: str | None = None
    """W3C ``traceparent`` of the gateway's accept span: the analyzer's attempts continue it."""
    batch: str | None = None
    """The batch the scan was submitted in, if any (its keys share the scan's partition)."""
    callback_url: str | None = None
    """Where this scan's end is also delivered as a signed webhook."""
    callback_secret: str | None = None
    """The secret that signs deliveries to ``callback_url`` (``whsec_...``)."""


class ScanEvent(Base, frozen=True, kw_only=True):
    """One entry of the events stream; the SSE ``data:`` of the notifier."""

    scan_id: str
    type: EventType
    state: ScanState
    progress: Progress
    attempt: int = 0
    at_ms: int = 0
    error: ScanError | None = None
    verdict: Verdict | None = None


# --- batches ---------------------------------------------------------------------


class BatchCounts(Base, frozen=True, kw_only=True):
    """A batch's scans per state; ``pending`` is every scan not yet terminal."""

    scheduled: int = 0
    queued: int = 0
    active: int = 0
    retrying: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    pending: int = 0


class BatchAccepted(Base, frozen=True, kw_only=True):
    """Answer to an accepted batch: its id and every scan id, in the order sent."""

    batch_id: str
    scan_ids: list[str]
    status_url: str
    events_url: str
    events_token: str | None = None


class RuleCount(Base, frozen=True, kw_only=True):
    """How many findings of a batch failed one rule."""

    rule: str
    count: int


class BatchAggregate(Base, frozen=True, kw_only=True):
    """A finished batch in numbers: verdicts per marketplace, the rules failed most."""

    verdicts: dict[str, dict[str, int]]
    top_failing_rules: list[RuleCount]


class BatchStatus(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/batches/{id}``."""

    batch_id: str
    state: Literal["running", "finished", "cancelled"]
    total: int
    counts: BatchCounts
    progress: Annotated[int, Meta(ge=0, le=100)]
    scan_ids: list[str]
    next_cursor: str | None = None
    created_at: str
    finished_at: str | None = None
    aggregate: BatchAggregate | None = None


class BatchCancelled(Base, frozen=True, kw_only=True):
    """Answer of ``DELETE /api/batches/{id}``: how many scans it stopped, and the counts after."""

    batch_id: str
    state: Literal["running", "finished", "cancelled"]
    cancelled: int
    counts: BatchCounts


class BatchRetried(Base, frozen=True, kw_only=True):
    """Answer of ``POST /api/batches/{id}/retry``: the failed scans queued again."""

    batch_id: str
    scan_ids: list[str]


class ItemError(Base, frozen=True, kw_only=True):
    """Why one scan of a batch was refused."""

    index: int
    field: str | None = None
    reason: str


class BatchErrors(Base, frozen=True, kw_only=True):
    """The 400 of a refused batch: every refused scan, by its index; nothing was written."""

    error: str = "invalid_batch"
    detail: str
    field: str | None = "scans"
    errors: list[ItemError]


class BatchEvent(Base, frozen=True, kw_only=True):
    """A batch's progress on its stream (``batch``) and its end (``batch.completed``).

    Written by the terminal scripts, which alone know the counts at that moment.
    """

    type: Literal["batch", "batch.completed"]
    batch_id: str
    total: int
    counts: BatchCounts
    progress: int
    at_ms: int = 0
    state: Literal["running", "finished", "cancelled"] = "running"
