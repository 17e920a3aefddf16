"""The batch endpoints: accept many scans at once, follow them as one job, cancel, replay."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Caller, Guard
from gateway.batchintake import InvalidBatchError, Scan, body_hash, read_batch
from gateway.intake import idempotency_conflict, idempotency_digest
from gateway.metrics import SUBMITTED
from gateway.webhooks import Webhooks
from shared import tokens
from shared.batchrecord import BatchHead
from shared.batchstore import BatchItem, BatchStore
from shared.clock import now_ms
from shared.http.errors import ApiError, not_found
from shared.http.responses import JSONResponse
from shared.metrics import tenant_label
from shared.schemas import BatchAccepted, BatchErrors, ItemError, ScanJob
from shared.settings import Settings
from shared.store import Duplicate, OverQuota

PAGE = 100
MAX_PAGE = 1000
_NUMBER = re.compile(r"[0-9]{1,7}")


def _store(request: Request) -> BatchStore:
    store: BatchStore = request.state.batches
    return store


async def _caller(request: Request) -> Caller:
    guard: Guard = request.state.guard
    return await guard.caller(request)


def accepted(settings: Settings, batch_id: str, scan_ids: list[str]) -> BatchAccepted:
    """The 202 body: the ids, where to poll, and where (with what token) to listen."""
    events_url = f"{settings.notifier_url}/api/batches/{batch_id}/events"
    token = None
    if settings.auth:
        token = tokens.sign(settings.event_keys, "b", batch_id, settings.event_token_ttl_s)
        events_url += f"?token={token}"
    return BatchAccepted(
        batch_id=batch_id,
        scan_ids=scan_ids,
        status_url=f"{settings.gateway_url}/api/batches/{batch_id}",
        events_url=events_url,
        events_token=token,
    )


def _tenant(caller: Caller, scans: list[Scan]) -> str:
    """The batch's one tenant: the key's when auth is on, else the one its scans name."""
    if caller.tenant is not None:
        errors = [
            ItemError(index=i, field="tenant", reason="the tenant comes from your API key")
            for i, item in enumerate(scans)
            if item.scan.tenant not in ("default", caller.tenant)
        ]
        if errors:
            raise InvalidBatchError(errors)
        return caller.tenant
    tenant = scans[0].scan.tenant
    errors = [
        ItemError(index=i, field="tenant", reason="every scan of a batch has the same tenant")
        for i, item in enumerate(scans)
        if item.scan.tenant != tenant
    ]
    if errors:
        raise InvalidBatchError(errors)
    return tenant


def _idempotency(request: Request, scans: list[Scan], tenant: str) -> tuple[str, str] | None:
    key = idempotency_digest(request)
    if key is None:
        return None
    # Apart from the scans' keys: the same key may name a scan and a batch.
    return f"{tenant}:batch:{key}", body_hash(scans, tenant)


async def create_batch(request: Request) -> Response:
    """``POST /api/batches``: validate every scan, accept all in one script call, answer 202.

    The key's request rate counts this as one request; the day's quota counts each scan.
    """
    settings: Settings = request.state.settings
    caller = await _caller(request)
    scans = await read_batch(request, settings)
    tenant = _tenant(caller, scans)
    idempotency = _idempotency(request, scans, tenant)
    store = _store(request)
    batch_id, scan_ids = store.new_ids(len(scans), idempotency[0] if idempotency else None)
    submitted = now_ms()
    items = [
        BatchItem(
            job=ScanJob(
                scan_id=scan_id,
                category=item.scan.category,
                marketplaces=list(dict.fromkeys(item.scan.marketplaces)),
                product_name=item.scan.product_name,
                priority=item.scan.priority,
                tenant=tenant,
                image_url=item.scan.image_url,
                submitted_at_ms=submitted,
                batch=batch_id,
            ),
            image=item.image,
            due_ms=item.due_ms,
        )
        for scan_id, item in zip(scan_ids, scans, strict=True)
    ]
    # As for one scan (gateway/scans.py); a batch's scans carry no callback_url.
    hooks: Webhooks = request.state.webhooks
    webhook = await hooks.has_endpoints(tenant)
    outcome = await store.submit_batch(
        batch_id, tenant, items, idempotency=idempotency, webhook=webhook
    )
    if isinstance(outcome, OverQuota):
        raise ApiError(
            429,
            "quota_exceeded",
            f"this key has used {outcome.used} scans today; the quota cannot cover "
            f"{len(items)} more",
            "scans",
            headers={"retry-after": str(86400 - int(now_ms() / 1000) % 86400)},
        )
    if isinstance(outcome, Duplicate):
        if not outcome.same_body:
            raise idempotency_conflict()
        first = outcome.scan_id
        return JSONResponse(
            accepted(settings, first, await store.scan_ids(first)),
            status_code=200,
            headers={"location": f"/api/batches/{first}"},
        )
    for item in items:
        SUBMITTED.labels(item.job.priority, tenant_label(settings, tenant)).inc()
    return JSONResponse(
        accepted(settings, batch_id, scan_ids),
        status_code=202,
        headers={"location": f"/api/batches/{batch_id}"},
    )


async def _owned(request: Request) -> BatchHead:
    caller = await _caller(request)
    head = await _store(request).head(request.path_params["batch_id"])
    # Someone else's batch is as unknown as a missing one.
    if head is None or not caller.owns(head.tenant):
        raise not_found("batch")
    return head


def _number(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if _NUMBER.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise ApiError(
            422, "invalid_field", f"{name} must be an integer from {low} to {high}", name
        )
    return int(raw)


async def batch_item(request: Request) -> Response:
    """``/api/batches/{batch_id}``: GET reads the batch (``?cursor=&limit=``), DELETE cancels it."""
    head = await _owned(request)
    store = _store(request)
    if request.method == "DELETE":
        return JSONResponse(await store.cancel_batch(head))
    cursor = _number(request, "cursor", 0, 0, head.total)
    limit = _number(request, "limit", PAGE, 1, MAX_PAGE)
    return JSONResponse(await store.status(head, cursor, limit))


async def retry_batch(request: Request) -> Response:
    """``POST /api/batches/{batch_id}/retry``: replay the batch's failed scans."""
    head = await _owned(request)
    return JSONResponse(await _store(request).retry_batch(head), status_code=202)


async def on_invalid_batch(request: Request, exc: Exception) -> Response:
    """Exception handler: the 400 naming every refused scan."""
    assert isinstance(exc, InvalidBatchError)
    return JSONResponse(BatchErrors(detail=exc.detail, errors=exc.errors), status_code=400)
