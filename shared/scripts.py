"""Every Lua script of labelscan, declared once: its keys, its arguments, its reply.

A script's body (``shared/lua/<name>.lua``) reads each key as ``<field>_key``
and each argument as ``<field>``; the bindings are generated from the structs
below (:mod:`shared.luascript`), so Python and Lua agree by name. Every key a
script touches is declared here (never rebuilt inside Lua), so each call stays
in the slot of its keys on Redis Cluster. Events and messages are built in
Python (:mod:`shared.events`) and passed whole; scripts hold no user-facing text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.luascript import Script


class _S(msgspec.Struct, frozen=True, kw_only=True):
    """Keys and arguments: immutable, named."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- submit --------------------------------------------------------------------------


class SubmitKeys(_S, frozen=True, kw_only=True):
    scan: str
    stream: str
    events: str
    history: str
    image: str
    idempotency: str
    delayed: str
    scan_index: str
    """The partition's listing of every scan (GET /api/scans)."""
    tenant_scan_index: str
    """The partition's listing of the tenant's scans."""


class SubmitArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    priority: str
    job: bytes
    now_ms: int
    due_ms: int
    """0 to queue now; else the time it is scheduled for."""
    event: bytes
    image: bytes
    """Uploaded bytes, or empty."""
    image_ttl: int
    history_ttl: int
    maxlen: int
    scan_maxlen: int
    body_hash: str
    """Empty when the request has no idempotency key."""
    idempotency_ttl: int
    index_horizon_ms: int
    """Listing entries created longer ago than this are trimmed: their scans have expired."""
    index_max: int
    """Most entries a listing keeps (the oldest go first)."""
    webhook: int = 0
    """1: the scan's terminal states go to its partition's outbox (webhooks)."""


class Accepted(msgspec.Struct, frozen=True):
    entry_id: str


class Duplicate(msgspec.Struct, frozen=True):
    """An idempotency key seen before: the scan it made, and whether the body matched."""

    scan_id: str
    body_hash: str


def _submitted(reply: list[Any]) -> Accepted | Duplicate:
    if reply[0] == b"duplicate":
        return Duplicate(_text(reply[1]), _text(reply[2]))
    return Accepted(_text(reply[1]))


SUBMIT = Script("submit", SubmitKeys, SubmitArgs, _submitted)


class OverQuota(msgspec.Struct, frozen=True):
    """The tenant has used its scans for today."""

    used: int


class QuotaKeys(_S, frozen=True, kw_only=True):
    quota: str
    """The tenant's counter for today (fleet-wide)."""


class QuotaArgs(_S, frozen=True, kw_only=True):
    per_day: int
    ttl: int


class Taken(msgspec.Struct, frozen=True):
    ok: bool
    used: int


TAKE_QUOTA = Script("take_quota", QuotaKeys, QuotaArgs, lambda r: Taken(bool(r[0]), int(r[1])))


# --- claim ---------------------------------------------------------------------------


class ClaimKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    image: str
    tenant_active: str
    delayed: str


class ClaimArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    entry_id: str
    group: str
    consumer: str
    token: str
    now_ms: int
    attempts: int
    """Attempts the caller believes were made: the events below are built for it."""
    max_attempts: int
    event: bytes
    """The first progress event of attempt ``attempts + 1``."""
    then_event: bytes
    """Published right after it when the image is already stored (empty: never)."""
    tenant_cap: int
    """0: no cap."""
    defer_until_ms: int
    deferred_event: bytes
    """Published once when the scan waits for its tenant's cap (empty: no cap)."""
    pause: str
    """The operator's pause that holds this scan (its controls field); empty: none."""
    pause_until_ms: int
    paused_event: bytes
    """Published once when the scan waits for a resume (empty: not paused)."""
    maxlen: int
    scan_maxlen: int


class Claimed(msgspec.Struct, frozen=True):
    attempt: int
    image: bytes | None
    exhausted: bool


class Skipped(msgspec.Struct, frozen=True):
    """Not to run: gone, finished or superseded (``deferred`` for a tenant at its cap)."""

    reason: str


class Recount(msgspec.Struct, frozen=True):
    """The attempt count differs from the caller's: claim again with this one."""

    attempts: int


def _claimed(reply: list[Any]) -> Claimed | Skipped | Recount:
    kind = reply[0]
    if kind == b"skip":
        return Skipped(_text(reply[1]))
    if kind == b"recount":
        return Recount(int(reply[1]))
    return Claimed(int(reply[1]), reply[2] or None, kind == b"exhausted")


CLAIM = Script("claim", ClaimKeys, ClaimArgs, _claimed)


# --- attempt transitions ------------------------------------------------------------


class EventKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str


class ProgressArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    token: str
    event: bytes
    maxlen: int
    scan_maxlen: int


PROGRESS = Script("progress", EventKeys, ProgressArgs, bool)


class FinishKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    stats: str
    image: str
    dead: str
    tenant_active: str
    batch: str
    """The scan's batch's keys (see :mod:`shared.batchstore`); unused without ``batch_id``."""
    batch_events: str
    batch_scans: str
    outbox: str
    """Where a scan marked ``webhook`` announces its end, in the same call."""


class FinishArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    token: str
    now_ms: int
    state: str
    """completed or failed."""
    outcome: bytes
    """The result (completed) or the error (failed), JSON."""
    attempt: int
    held: bytes
    """A progress event of this attempt published just before ``event``; empty: none."""
    event: bytes
    group: str
    entry_id: str
    retention_ttl: int
    maxlen: int
    scan_maxlen: int
    dead_maxlen: int
    batch_id: str = ""
    """The scan's batch; empty: none."""


FINISH = Script("finish", FinishKeys, FinishArgs, bool)


class RetryKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    delayed: str
    tenant_active: str


class RetryArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    token: str
    due_ms: int
    error: bytes
    held: bytes
    """A progress event of this attempt published just before ``event``; empty: none."""
    event: bytes
    group: str
    entry_id: str
    maxlen: int
    scan_maxlen: int


RETRY = Script("retry", RetryKeys, RetryArgs, bool)


class ReleaseKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    tenant_active: str


class ReleaseArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    token: str
    """Empty for an entry read but never started."""
    entry_id: str
    event: bytes
    """Empty when there is no attempt to announce."""
    group: str
    maxlen: int
    scan_maxlen: int


RELEASE = Script("release", ReleaseKeys, ReleaseArgs, bool)


class PromoteKeys(_S, frozen=True, kw_only=True):
    delayed: str
    scan: str
    events: str
    history: str
    stream: str


class PromoteArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    now_ms: int
    attempts: int
    """What the event was built for; a scan that changed since is left for the next round."""
    event: bytes
    maxlen: int
    scan_maxlen: int


PROMOTE = Script("promote", PromoteKeys, PromoteArgs, bool)


class HoldKeys(_S, frozen=True, kw_only=True):
    delayed: str
    scan: str
    events: str
    history: str


class HoldArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    attempts: int
    """What the event was built for; a scan that changed since is left alone."""
    until_ms: int
    pause: str
    """The pause that holds it (its controls field)."""
    event: bytes
    """The `paused` event, published once per pause."""
    maxlen: int
    scan_maxlen: int


HOLD = Script("hold", HoldKeys, HoldArgs, bool)
"""Keep a due scan that is paused in the schedule."""


class RenewKeys(_S, frozen=True, kw_only=True):
    stream: str


class RenewArgs(_S, frozen=True, kw_only=True):
    group: str
    consumer: str
    entry_ids: tuple[str, ...]


RENEW = Script("renew", RenewKeys, RenewArgs, int)


# --- operator actions (gateway) -------------------------------------------------------


class Outcome(msgspec.Struct, frozen=True):
    """``ok`` with the previous state, ``terminal``/``state`` with the current one,
    ``missing``, or ``recount`` (the scan moved on while the event was built)."""

    outcome: str
    state: str | None = None


def _outcome(reply: list[Any]) -> Outcome:
    return Outcome(_text(reply[0]), _text(reply[1]) if len(reply) > 1 else None)


class CancelKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    delayed: str
    stats: str
    image: str
    tenant_active: str
    batch: str
    batch_events: str
    batch_scans: str
    outbox: str
    """Where a scan marked ``webhook`` announces its end, in the same call."""


class CancelArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    attempts: int
    event: bytes
    group: str
    history_ttl: int
    channel: str
    maxlen: int
    scan_maxlen: int
    batch_id: str = ""
    now_ms: int = 0


CANCEL = Script("cancel", CancelKeys, CancelArgs, _outcome)


class RequeueKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str
    dead: str
    stats: str
    batch: str
    batch_events: str
    batch_scans: str


class RequeueArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    event: bytes
    history_ttl: int
    maxlen: int
    scan_maxlen: int
    batch_id: str = ""
    now_ms: int = 0


REQUEUE = Script("requeue", RequeueKeys, RequeueArgs, _outcome)


# --- rate limits ------------------------------------------------------------------------


class LimiterKeys(_S, frozen=True, kw_only=True):
    requests: str
    input: str
    output: str
    state: str


class AcquireArgs(_S, frozen=True, kw_only=True):
    now_ms: int
    rpm: int
    input_tpm: int
    output_tpm: int
    need_in: int
    need_out: int
    member: str
    window_ms: int
    """The provider's window; a reservation is booked a window ahead until it is sent."""


class Wait(msgspec.Struct, frozen=True):
    """0 ms: reserved; else how long to wait and why."""

    wait_ms: int
    reason: str


def _wait(reply: list[Any]) -> Wait:
    return Wait(int(reply[0]), _text(reply[1]))


RATELIMIT_ACQUIRE = Script("ratelimit_acquire", LimiterKeys, AcquireArgs, _wait)


class StampKeys(_S, frozen=True, kw_only=True):
    requests: str
    input: str
    output: str


class StampArgs(_S, frozen=True, kw_only=True):
    member: str
    sent_ms: int
    """When the request leaves, plus a margin for its way to the provider."""
    reserved_second: int
    """The bucket the reservation's tokens were booked in."""
    input_tokens: int
    """0 for a limit that is off."""
    output_tokens: int
    window_ms: int


RATELIMIT_STAMP = Script("ratelimit_stamp", StampKeys, StampArgs, bool)
"""Re-date a reservation to the moment its request leaves."""


class BucketKeys(_S, frozen=True, kw_only=True):
    input: str
    output: str


class SettleArgs(_S, frozen=True, kw_only=True):
    second: int
    input_delta: int
    output_delta: int


RATELIMIT_SETTLE = Script("ratelimit_settle", BucketKeys, SettleArgs, lambda _: None)


class PauseKeys(_S, frozen=True, kw_only=True):
    state: str


class PauseArgs(_S, frozen=True, kw_only=True):
    until_ms: int
    reason: str


RATELIMIT_PAUSE = Script("ratelimit_pause", PauseKeys, PauseArgs, lambda _: None)


class TenantRateKeys(_S, frozen=True, kw_only=True):
    tat: str


class TenantRateArgs(_S, frozen=True, kw_only=True):
    now_ms: int
    interval_ms: int
    burst: int


TENANT_RATE = Script("tenant_rate", TenantRateKeys, TenantRateArgs, int)
"""0 when allowed, else milliseconds until the next request is."""


# --- batches ----------------------------------------------------------------------------


class SubmitBatchKeys(_S, frozen=True, kw_only=True):
    batch: str
    batch_events: str
    batch_scans: str
    events: str
    idempotency: str
    delayed: str
    stream_high: str
    stream_normal: str
    stream_low: str
    scan_index: str
    tenant_scan_index: str
    scans: tuple[str, ...]
    """Per scan, in order: its hash, its history, its image."""


class SubmitBatchArgs(_S, frozen=True, kw_only=True):
    batch_id: str
    tenant: str
    now_ms: int
    image_ttl: int
    history_ttl: int
    maxlen: int
    scan_maxlen: int
    body_hash: str
    """Empty when the request has no idempotency key."""
    idempotency_ttl: int
    batch_event: bytes
    """The batch's first progress event (nothing finished yet)."""
    index_horizon_ms: int
    index_max: int
    webhook: int = 0
    """1: every scan's end and the batch's end go to the partition's outbox (webhooks)."""
    items: tuple[bytes | str | int, ...]
    """Per scan, in order: id, priority, job, due_ms (0: now), event, image (or empty)."""


ITEM_KEYS = 3
ITEM_ARGS = 6


class BatchSubmitted(msgspec.Struct, frozen=True):
    """Every scan of the batch is in Redis."""


def _batch_submitted(reply: list[Any]) -> BatchSubmitted | Duplicate:
    if reply[0] == b"duplicate":
        return Duplicate(_text(reply[1]), _text(reply[2]))
    return BatchSubmitted()


SUBMIT_BATCH = Script("submit_batch", SubmitBatchKeys, SubmitBatchArgs, _batch_submitted)
"""Accept every scan of a batch, or none: one call, whatever the batch's size."""


class TakeQuotaArgs(_S, frozen=True, kw_only=True):
    per_day: int
    ttl: int
    count: int


TAKE_QUOTA_N = Script(
    "take_quota_n", QuotaKeys, TakeQuotaArgs, lambda r: Taken(bool(r[0]), int(r[1]))
)
"""Spend ``count`` of a tenant's scans for today at once, or none."""


# --- provider Message Batches (analyzer/msgbatch.py) ------------------------------------


class ParkKeys(_S, frozen=True, kw_only=True):
    scan: str
    events: str
    history: str
    stream: str


class ParkArgs(_S, frozen=True, kw_only=True):
    scan_id: str
    tenant: str
    token: str
    entry_id: str
    group: str
    event: bytes
    """The ``batched`` progress event."""
    maxlen: int
    scan_maxlen: int


BATCH_PARK = Script("batch_park", ParkKeys, ParkArgs, bool)
"""Acknowledge an attempt's entry while its request waits in a provider batch."""


class LeaseKeys(_S, frozen=True, kw_only=True):
    leases: str
    record: str


class LeaseArgs(_S, frozen=True, kw_only=True):
    record_id: str
    owner: str
    now_ms: int
    until_ms: int


MSGBATCH_LEASE = Script("msgbatch_lease", LeaseKeys, LeaseArgs, int)
"""1: ``owner`` holds the batch's lease; 0: another replica does; -1: the batch is gone."""
# --- webhooks ---------------------------------------------------------------------------


class WebhookEnqueueKeys(_S, frozen=True, kw_only=True):
    delivery: str
    due: str
    log: str
    """The endpoint's delivery log (newest last by score)."""


class WebhookEnqueueArgs(_S, frozen=True, kw_only=True):
    delivery_id: str
    doc: bytes
    body: bytes
    """The signed payload: the same bytes at every attempt."""
    now_ms: int
    ttl: int
    log_max: int


WEBHOOK_ENQUEUE = Script("webhook_enqueue", WebhookEnqueueKeys, WebhookEnqueueArgs, bool)


class WebhookClaimKeys(_S, frozen=True, kw_only=True):
    due: str


class WebhookClaimArgs(_S, frozen=True, kw_only=True):
    now_ms: int
    lease_ms: int
    count: int


WEBHOOK_CLAIM = Script(
    "webhook_claim", WebhookClaimKeys, WebhookClaimArgs, lambda r: [_text(x) for x in r]
)
