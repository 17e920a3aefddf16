"""The scan endpoints: create, status, result, cancel, replay, dead letters."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable

import msgspec
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.requests import Request
from starlette.responses import Response

from gateway import longpoll
from gateway.auth import Caller, Guard
from gateway.intake import idempotency_conflict, idempotency_digest, read_scan
from gateway.metrics import SUBMITTED
from gateway.webhooks import Webhooks
from shared import tokens, tracing
from shared.clock import now_ms
from shared.http.errors import ApiError, not_found
from shared.http.responses import JSONResponse
from shared.metrics import finished, tenant_label
from shared.schemas import (
    CancelResult,
    EventsLink,
    ScanAccepted,
    ScanDetail,
    ScanJob,
    ScanState,
    ScanStatus,
    Tenant,
)
from shared.settings import Settings
from shared.store import Duplicate, OverQuota, ScanStore
from shared.streamids import parse_stream_id
from shared.webhooks.signing import new_secret

_encode = msgspec.json.Encoder().encode
_tracer = trace.get_tracer("labelscan.gateway")


def _store(request: Request) -> ScanStore:
    store: ScanStore = request.state.store
    return store


async def _caller(request: Request) -> Caller:
    guard: Guard = request.state.guard
    return await guard.caller(request)


def accepted(settings: Settings, scan_id: str, state: ScanState = "queued") -> ScanAccepted:
    """The 202 body: where to poll, and where (with what token) to listen."""
    events_url = f"{settings.notifier_url}/api/scans/{scan_id}/events"
    token = None
    if settings.auth:
        token = tokens.sign(settings.event_keys, "s", scan_id, settings.event_token_ttl_s)
        events_url += f"?token={token}"
    return ScanAccepted(
        scan_id=scan_id,
        status=state,
        events_url=events_url,
        events_token=token,
        status_url=f"{settings.gateway_url}/api/scans/{scan_id}/status",
    )


def _idempotency(request: Request, body: bytes) -> tuple[str, str] | None:
    key = idempotency_digest(request)
    return None if key is None else (key, hashlib.sha256(body).hexdigest())


async def create_scan(request: Request) -> Response:
    """``POST /api/scans``: validate, store, queue, answer 202.

    Traced (when on) as the scan's root span, or a child of the client's
    ``traceparent``; the analyzer's attempts continue it through the stream entry.
    """
    settings: Settings = request.state.settings
    if not settings.tracing:
        return await _create_scan(request, settings, None)
    with _tracer.start_as_current_span(
        "scan accept",
        context=tracing.extract(request.headers.get("traceparent")),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "http.route": "/api/scans"},
        # A refusal is the client's mistake, not this span's failure: its status
        # code is recorded below, without an exception event per bad request.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await _create_scan(request, settings, span)
        except ApiError as exc:
            span.set_attribute("http.response.status_code", exc.status)
            if exc.status >= 500:
                span.set_status(StatusCode.ERROR, exc.error)
            raise
        except Exception as exc:  # Redis down or a bug: the client sees a 5xx
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        span.set_attribute("http.response.status_code", response.status_code)
        return response


async def _create_scan(request: Request, settings: Settings, span: Span | None) -> Response:
    caller = await _caller(request)
    intake = await read_scan(request, settings)
    scan = intake.scan
    tenant = scan.tenant
    if caller.tenant is not None:
        if scan.tenant not in ("default", caller.tenant):
            raise ApiError(422, "invalid_field", "the tenant comes from your API key", "tenant")
        tenant = caller.tenant
    # Keyed per tenant, so two sellers' keys never collide.
    idempotency = _idempotency(request, _encode(scan) + (intake.image or b"") + tenant.encode())
    if idempotency is not None:
        idempotency = (f"{tenant}:{idempotency[0]}", idempotency[1])
    hooks: Webhooks = request.state.webhooks
    callback_secret = None
    if scan.callback_url is not None:
        hooks.check_url(scan.callback_url, "callback_url")
        callback_secret = new_secret()
    store = _store(request)
    scan_id = store.new_scan_id(idempotency[0] if idempotency is not None else None)
    job = ScanJob(
        scan_id=scan_id,
        category=scan.category,
        marketplaces=list(dict.fromkeys(scan.marketplaces)),
        product_name=scan.product_name,
        priority=scan.priority,
        tenant=tenant,
        image_url=scan.image_url,
        submitted_at_ms=now_ms(),
        trace=tracing.traceparent(span) if span is not None else None,
        callback_url=scan.callback_url,
        callback_secret=callback_secret,
    )
    if span is not None:
        span.set_attributes(
            {
                "labelscan.scan_id": scan_id,
                "labelscan.tenant": tenant,
                "labelscan.priority": job.priority,
            }
        )
    webhook = callback_secret is not None or await hooks.has_endpoints(tenant)
    outcome = await store.submit(
        job, intake.image, idempotency=idempotency, due_ms=intake.due_ms, webhook=webhook
    )
    if isinstance(outcome, OverQuota):
        raise ApiError(
            429,
            "quota_exceeded",
            f"this key has used its {outcome.used} scans for today",
            headers={"retry-after": str(86400 - int(now_ms() / 1000) % 86400)},
        )
    if isinstance(outcome, Duplicate):
        if not outcome.same_body:
            raise idempotency_conflict()
        # The scan may have moved on since the first request: answer where it is now.
        current = await store.read(outcome.scan_id)
        state: ScanState = current[1].state if current is not None else "queued"
        replay = accepted(settings, outcome.scan_id, state)
        if callback_secret is not None and current is not None:
            # The secret of the scan the first request made, not the one drawn now.
            secret = current[0].job.callback_secret
            replay = msgspec.structs.replace(replay, callback_secret=secret)
        return JSONResponse(
            replay,
            status_code=200,
            headers={"location": f"/api/scans/{outcome.scan_id}"},
        )
    SUBMITTED.labels(job.priority, tenant_label(settings, tenant)).inc()
    answer = accepted(settings, scan_id, "scheduled" if intake.due_ms else "queued")
    if callback_secret is not None:
        answer = msgspec.structs.replace(answer, callback_secret=callback_secret)
    return JSONResponse(
        answer,
        status_code=202,
        headers={"location": f"/api/scans/{scan_id}"},
    )


async def _owned(request: Request) -> tuple[Caller, ScanDetail]:
    caller = await _caller(request)
    detail = await _store(request).get(request.path_params["scan_id"])
    # Someone else's scan is as unknown as a missing one: no hint that it exists.
    if detail is None or not caller.owns(detail.tenant):
        raise not_found()
    return caller, detail


async def _loader(request: Request) -> tuple[str, Callable[[], Awaitable[ScanDetail]]]:
    """The scan id and a reader of its detail, for the caller (authenticated once)."""
    caller = await _caller(request)
    scan_id = request.path_params["scan_id"]
    store = _store(request)

    async def load() -> ScanDetail:
        detail = await store.get(scan_id)
        # Someone else's scan is as unknown as a missing one: no hint that it exists.
        if detail is None or not caller.owns(detail.tenant):
            raise not_found()
        return detail

    return scan_id, load


async def scan_status(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/status[?wait=]``: with an ETag; 304 on If-None-Match."""
    scan_id, load = await _loader(request)

    async def status() -> ScanStatus:
        d = await load()
        return ScanStatus(
            scan_id=d.scan_id,
            state=d.state,
            progress=d.progress,
            attempts=d.attempts,
            created_at=d.created_at,
            updated_at=d.updated_at,
            next_attempt_at=d.next_attempt_at,
            trace_id=d.trace_id,
        )

    return await longpoll.answer(request, scan_id, status)


async def scan_detail(request: Request) -> Response:
    """``GET /api/scans/{scan_id}[?wait=]``: status plus result or error, as ``scan_status``."""
    scan_id, load = await _loader(request)
    return await longpoll.answer(request, scan_id, load)


async def scan_item(request: Request) -> Response:
    """``/api/scans/{scan_id}``: GET reads the scan, DELETE cancels it."""
    if request.method == "DELETE":
        return await cancel_scan(request)
    return await scan_detail(request)


async def events_link(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/events-url``: a fresh token for the scan's event stream."""
    _, detail = await _owned(request)
    body = accepted(request.state.settings, detail.scan_id, detail.state)
    return JSONResponse(EventsLink(events_url=body.events_url, events_token=body.events_token))


async def tenant_events_link(request: Request) -> Response:
    """``GET /api/events-url``: a token and URL for the caller's tenant's event stream."""
    caller = await _caller(request)
    settings: Settings = request.state.settings
    url = f"{settings.notifier_url}/api/events"
    if caller.tenant is None:
        # Auth off: no key says whose scans these are, so the URL names the tenant.
        tenant = request.query_params.get("tenant") or "default"
        try:
            msgspec.convert(tenant, Tenant)
        except msgspec.ValidationError:
            raise ApiError(
                422, "invalid_field", "tenant must match [A-Za-z0-9_.-]{1,64}", "tenant"
            ) from None
        return JSONResponse(EventsLink(events_url=f"{url}?tenant={tenant}", events_token=None))
    token = tokens.sign(settings.event_keys, "t", caller.tenant, settings.event_token_ttl_s)
    return JSONResponse(EventsLink(events_url=f"{url}?token={token}", events_token=token))


async def cancel_scan(request: Request) -> Response:
    """``DELETE /api/scans/{scan_id}``: cancel a scan that has not finished."""
    _, detail = await _owned(request)
    outcome = await _store(request).cancel(detail.scan_id)
    if outcome.outcome == "missing":
        raise not_found()
    if outcome.outcome == "terminal":
        raise ApiError(
            409,
            "already_finished",
            f"the scan is already {outcome.state}; nothing to cancel",
            "scan_id",
        )
    finished(request.state.settings, "cancelled", "none", detail.tenant)
    return JSONResponse(
        CancelResult(
            scan_id=detail.scan_id,
            state="cancelled",
            previous_state=outcome.state,  # type: ignore[arg-type]
        )
    )


async def retry_scan(request: Request) -> Response:
    """``POST /api/scans/{scan_id}/retry``: replay a failed scan with fresh attempts."""
    _, detail = await _owned(request)
    outcome = await _store(request).requeue(detail.scan_id)
    if outcome.outcome == "missing":
        raise not_found()
    if outcome.outcome == "state":
        raise ApiError(
            409,
            "not_failed",
            f"only failed scans can be retried; this one is {outcome.state}",
            "scan_id",
        )
    return JSONResponse(accepted(request.state.settings, detail.scan_id), status_code=202)


async def dead_letters(request: Request) -> Response:
    """``GET /api/dead?count=&before=``: the caller's dead letters, newest first."""
    caller = await _caller(request)
    count = _dead_count(request.query_params.get("count"))
    before = _dead_before(request.query_params.get("before"))
    letters = await _store(request).dead_letters(count, before, caller.scope)
    return JSONResponse(letters)


# ASCII digits only, matched whole: str.isdigit() and \d take "²" and Arabic-Indic digits,
# and "$" matches before a trailing newline.
_COUNT = re.compile(r"[0-9]{1,3}")


def _dead_count(raw: str | None) -> int:
    if raw is None:
        return 50
    if _COUNT.fullmatch(raw) is None or not 1 <= int(raw) <= 500:
        raise ApiError(422, "invalid_field", "count must be an integer from 1 to 500", "count")
    return int(raw)


def _dead_before(raw: str | None) -> str | None:
    if raw is None:
        return None
    # Redis refuses "(0-0" as an exclusive end.
    if parse_stream_id(raw) in (None, (0, 0)):
        raise ApiError(
            422,
            "invalid_field",
            "before must be a dead-letter id (the `next` of a page)",
            "before",
        )
    return raw
