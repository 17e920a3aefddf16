"""The gateway's OpenAPI 3.1 document, built from the msgspec schemas, served at /openapi.json."""

from __future__ import annotations

import copy
import functools
from typing import Any, get_args

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway import openapi_batches
from gateway.admin import Drain, Drained
from gateway.openapi_ops import (
    Api,
    Schema,
    answer,
    api_operations,
    json_body,
    json_or_form_body,
    ok,
    operation,
    parameter,
)
from shared.bulk import BulkResult, CancelQueued, DeadFilter
from shared.controls import AuditLog, ControlsView, LimitsPatch, PauseTarget
from shared.scanlist import ScanPage
from shared.schemas import (
    PRIORITIES,
    CancelResult,
    DeadLetters,
    ErrorBody,
    EventsLink,
    QueueStats,
    ScanAccepted,
    ScanCreate,
    ScanDetail,
    ScanState,
    ScanStatus,
)
from shared.settings import Settings
from shared.webhooks.events import BatchWebhookEvent, WebhookEvent
from shared.webhooks.models import (
    DeliveryPage,
    DeliveryView,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointPatch,
    EndpointView,
    SecretRotated,
)

_STRUCTS: tuple[type[msgspec.Struct], ...] = (
    ScanCreate,
    ScanAccepted,
    ScanStatus,
    ScanDetail,
    CancelResult,
    DeadLetters,
    QueueStats,
    ErrorBody,
    PauseTarget,
    LimitsPatch,
    ControlsView,
    AuditLog,
    DeadFilter,
    CancelQueued,
    BulkResult,
    Drain,
    Drained,
    ScanPage,
    EventsLink,
    *openapi_batches.STRUCTS,
    EndpointCreate,
    EndpointPatch,
    EndpointView,
    EndpointCreated,
    EndpointList,
    SecretRotated,
    DeliveryView,
    DeliveryPage,
    WebhookEvent,
    BatchWebhookEvent,
)
_SCAN_ID = parameter(
    "path",
    "scan_id",
    "A scan id as returned by POST /api/scans (32 lowercase hex digits).",
    {"type": "string", "pattern": "^[0-9a-f]{32}$"},
)
_IDEMPOTENCY_KEY = parameter(
    "header",
    "Idempotency-Key",
    "Replaying a request with the same key and body returns the first scan (200).",
    {"type": "string", "minLength": 1, "maxLength": 255},
)
_LIST_PARAMETERS: list[Schema] = [
    parameter("query", "state", "Only scans in this state.", {"enum": list(get_args(ScanState))}),
    parameter("query", "priority", "Only scans of this priority.", {"enum": list(PRIORITIES)}),
    parameter(
        "query",
        "since",
        "Only scans created at or after this time (RFC 3339 with an offset).",
        {"type": "string", "format": "date-time"},
    ),
    parameter(
        "query",
        "until",
        "Only scans created at or before this time (RFC 3339 with an offset).",
        {"type": "string", "format": "date-time"},
    ),
    parameter(
        "query",
        "q",
        "A case-insensitive part of the product name, or the start of the scan id.",
        {"type": "string", "minLength": 1, "maxLength": 200},
    ),
    parameter(
        "query",
        "tenant",
        "Admin keys (or auth off): only this tenant's scans. Another key may name only "
        "its own tenant.",
        {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    ),
    parameter(
        "query",
        "cursor",
        "The `next` of the previous page (opaque). A page may hold fewer than `limit` "
        "scans when the filters skip many; follow `next` until it is null.",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,80}$"},
    ),
    parameter(
        "query",
        "limit",
        "Page size.",
        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    ),
]


def _long_poll(limit_s: int) -> list[Schema]:
    """The ``wait`` and ``If-None-Match`` parameters of a scan's document."""
    return [
        parameter(
            "query",
            "wait",
            "Long-poll: answer as soon as the scan has ended (completed, failed or cancelled), "
            "or after this many seconds with the document as it is then. With If-None-Match, "
            "answer as soon as the document differs from that version instead (304 if it "
            "never does within the wait). Beyond SCAN_WAIT_MAX waiting requests: 503.",
            {"type": "integer", "minimum": 0, "maximum": limit_s},
        ),
        parameter(
            "header",
            "If-None-Match",
            "The ETag of the version you have: 304 while it is still current.",
            {"type": "string"},
        ),
    ]


_ETAG: Schema = {
    "description": "The version of the document (strong)",
    "required": True,
    "schema": {"type": "string"},
}
_LOCATION: Schema = {"description": "Path of the scan", "schema": {"type": "string"}}


def _conditional(name: str, description: str) -> dict[str, Schema]:
    """A document with an ETag, and the 304 of an If-None-Match that still names it."""
    return {
        "200": answer(name, description, {"ETag": _ETAG}),
        "304": {"description": "Unchanged from If-None-Match", "headers": {"ETag": _ETAG}},
    }


@functools.cache
def _components(settings: Settings) -> dict[str, Schema]:
    _, components = msgspec.json.schema_components(
        _STRUCTS, ref_template="#/components/schemas/{name}"
    )
    create = components["ScanCreate"]["properties"]
    # msgspec leaves datetimes unformatted (naive ones decode too); the gateway wants RFC 3339.
    create["run_at"] = {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
        "default": None,
        "description": "When to run the scan (RFC 3339 with a UTC offset); not with delay_ms.",
    }
    create["image_base64"] = {
        "anyOf": [{"type": "string", "contentEncoding": "base64"}, {"type": "null"}],
        "default": None,
        "description": "The label image (PNG, JPEG, GIF or WebP), base64.",
    }
    create["image_url"]["description"] = "An https URL of the label image, fetched later."
    create["delay_ms"]["description"] = "Run the scan this many milliseconds from now."
    create["tenant"]["description"] = "Ignored (must be default or yours) when auth is on."
    # The multipart form: the image as a file part instead of base64, same other fields.
    form = copy.deepcopy(components["ScanCreate"])
    form["title"] = "ScanCreateForm"
    form["description"] = "Body of ``POST /api/scans`` as multipart/form-data."
    del form["properties"]["image_base64"]
    form["properties"]["image"] = {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
        "description": "The label image file (PNG, JPEG, GIF or WebP).",
    }
    form["properties"]["marketplaces"]["description"] = (
        "Repeat the field, or send one comma-separated value."
    )
    components["ScanCreateForm"] = form
    components.update(openapi_batches.components(settings, components["ScanCreate"]))
    components["Health"] = {
        "title": "Health",
        "type": "object",
        "description": "Liveness or readiness; `redis` says why when not ready.",
        "properties": {
            "status": {"enum": ["ok", "ready", "unavailable"]},
            "redis": {"type": "string"},
        },
        "required": ["status"],
    }
    return components


def _paths(api: Api, wait_limit_s: int) -> dict[str, Schema]:
    accepted = {"Location": _LOCATION}
    scan = [_SCAN_ID]
    scan_poll = [_SCAN_ID, *_long_poll(wait_limit_s)]
    public = functools.partial(operation, auth=None)
    return {
        "/api/scans": {
            "get": api(
                "listScans",
                "Your scans (an admin key: everyone's), newest first, filtered, cursor-paged",
                ok("ScanPage", "A page of scans; follow `next` for older ones"),
                errors=(400,),
                parameters=_LIST_PARAMETERS,
            ),
            "post": api(
                "createScan",
                "Submit a scan",
                {
                    "200": answer(
                        "ScanAccepted",
                        "Replay of an earlier request with the same Idempotency-Key",
                        accepted,
                    ),
                    "202": answer("ScanAccepted", "Accepted and queued (or scheduled)", accepted),
                },
                errors=(400, 413, 415, 422),
                parameters=[_IDEMPOTENCY_KEY],
                body=json_or_form_body("ScanCreate", "ScanCreateForm"),
            ),
        },
        "/api/scans/{scan_id}": {
            "get": api(
                "getScan",
                "A scan's status and outcome; ?wait= long-polls until it ends",
                _conditional("ScanDetail", "The scan"),
                errors=(400, 404),
                parameters=scan_poll,
            ),
            "delete": api(
                "cancelScan",
                "Cancel a scan that has not finished",
                ok("CancelResult", "Cancelled"),
                errors=(404, 409),
                parameters=scan,
            ),
        },
        "/api/scans/{scan_id}/status": {
            "get": api(
                "getScanStatus",
                "A scan's status; ?wait= long-polls until it ends",
                _conditional("ScanStatus", "The status"),
                errors=(400, 404),
                parameters=scan_poll,
            )
        },
        "/api/scans/{scan_id}/events-url": {
            "get": api(
                "getScanEventsUrl",
                "A fresh URL (and token) for the scan's event stream",
                ok("EventsLink", "The event stream's URL"),
                errors=(404,),
                parameters=scan,
            )
        },
        "/api/events-url": {
            "get": api(
                "getTenantEventsUrl",
                "A URL (and token) for the event stream of every scan of your tenant",
                ok("EventsLink", "The tenant event stream's URL"),
                errors=(422,),
                parameters=[
                    parameter(
                        "query",
                        "tenant",
                        "Only with auth off: whose scans (default `default`).",
                        {"type": "string"},
                    )
                ],
            )
        },
        "/api/scans/{scan_id}/retry": {
            "post": api(
                "retryScan",
                "Replay a failed scan with fresh attempts",
                ok("ScanAccepted", "Queued again", 202),
                errors=(404, 409),
                parameters=scan,
            )
        },
        "/api/dead": {
            "get": api(
                "listDeadLetters",
                "Dead letters, newest first",
                ok("DeadLetters", "A page of dead letters"),
                errors=(422,),
                parameters=[
                    parameter(
                        "query",
                        "count",
                        "Page size.",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    ),
                    parameter(
                        "query",
                        "before",
                        "Exclusive upper bound: the `next` of the previous page. Each half "
                        "is at most 2^64-1, and `0-0` (nothing precedes it) is a 422.",
                        {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                    ),
                ],
            )
        },
        "/api/queue/stats": {
            "get": api(
                "getQueueStats",
                "Queue depth; per-tenant detail for the caller's tenant",
                ok("QueueStats", "The counts"),
            )
        },
        **_admin_paths(api),
        **_webhook_paths(api),
        "/healthz": {"get": public("healthz", "Liveness", ok("Health", "The process answers"))},
        "/readyz": {
            "get": public(
                "readyz",
                "Readiness (Redis answers)",
                {
                    "200": answer("Health", "Ready"),
                    "503": answer("Health", "Redis does not answer"),
                },
            )
        },
        "/openapi.json": {
            "get": public(
                "openapi",
                "This document",
                {"200": answer({"type": "object"}, "The OpenAPI document")},
            )
        },
    }


def _admin_paths(api: Api) -> dict[str, Schema]:
    """The operator routes (admin keys only; anyone else gets 404)."""
    controls = ok("ControlsView", "Pauses and limits now in force")
    bulk = ok("BulkResult", "What matched, and what was done")
    # Every admin body is JSON, checked before anything is done.
    changes = (400, 404, 413, 422)
    return {
        "/api/admin/pause": {
            "post": api(
                "pause",
                "Pause scans of a tenant, a priority, both, or (empty body) all; they stay "
                "queued, out of the request streams",
                controls,
                errors=changes,
                body=json_body("PauseTarget", required=False),
            )
        },
        "/api/admin/resume": {
            "post": api(
                "resume",
                "Lift the pause of exactly that target",
                controls,
                errors=changes,
                body=json_body("PauseTarget", required=False),
            )
        },
        "/api/admin/controls": {
            "get": api("getControls", "Pauses and limits in force", controls, errors=(404,))
        },
        "/api/admin/limits": {
            "get": api("getLimits", "Limits in force", controls, errors=(404,)),
            "patch": api(
                "setLimits",
                "Change limits fleet-wide (applied within a second); null restores the setting",
                controls,
                errors=changes,
                body=json_body("LimitsPatch", required=False),
            ),
        },
        "/api/admin/dead/retry": {
            "post": api(
                "retryDeadLetters",
                "Replay the dead letters that match the filter (dry_run: count them)",
                bulk,
                errors=changes,
                body=json_body("DeadFilter", required=False),
            )
        },
        "/api/admin/dead/purge": {
            "post": api(
                "purgeDeadLetters",
                "Delete the dead letters that match the filter (dry_run: count them)",
                bulk,
                errors=changes,
                body=json_body("DeadFilter", required=False),
            )
        },
        "/api/admin/cancel-queued": {
            "post": api(
                "cancelQueued",
                "Cancel every waiting scan of a tenant (dry_run: count them)",
                bulk,
                errors=changes,
                body=json_body("CancelQueued"),
            )
        },
        "/api/admin/drain": {
            "post": api(
                "drainAnalyzer",
                "Ask one analyzer (by consumer name) to stop taking work and hand back "
                "its scans; undo: take work again",
                ok("Drained", "The message was sent"),
                errors=changes,
                body=json_body("Drain"),
            )
        },
        "/api/admin/audit": {
            "get": api(
                "getAudit",
                "Operator actions, newest first",
                ok("AuditLog", "The latest actions"),
                errors=(404, 422),
                parameters=[
                    parameter(
                        "query",
                        "count",
                        "How many.",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    )
                ],
            )
        },
    }


_ENDPOINT_ID = parameter(
    "path",
    "endpoint_id",
    "A webhook endpoint id as returned by POST /api/webhooks.",
    {"type": "string", "pattern": "^we_[0-9a-f]{24}$"},
)
_DELIVERY_ID = parameter(
    "path",
    "delivery_id",
    "A delivery id from the endpoint's delivery log.",
    {"type": "string", "pattern": "^wd_[0-9a-f]{24}$"},
)
_CALLBACK_DELIVERY_ID = parameter(
    "path",
    "delivery_id",
    "A delivery id from the scan's callback delivery log.",
    {"type": "string", "pattern": "^wd_[0-9a-f]{24}$"},
)
_DELIVERY_PAGE = [
    parameter("query", "cursor", "The `next` of the previous page.", {"type": "string"}),
    parameter(
        "query",
        "limit",
        "Page size.",
        {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    ),
]


def _webhook_paths(api: Api) -> dict[str, Schema]:
    """Webhook endpoints and their delivery logs, and the logs of scans' callback_url
    (a tenant's own; operators: all)."""
    endpoint = [_ENDPOINT_ID]
    # A body is read whole and decoded strictly: too large, not JSON, or a bad field.
    changes = (400, 404, 413, 415, 422)
    return {
        "/api/webhooks": {
            "post": api(
                "createWebhook",
                "Register a webhook endpoint; the answer holds its signing secret, shown once",
                {
                    "201": answer(
                        "EndpointCreated",
                        "Registered",
                        {"Location": {"description": "Path", "schema": {"type": "string"}}},
                    )
                },
                errors=(400, 409, 413, 415, 422),
                body=json_body("EndpointCreate"),
            ),
            "get": api(
                "listWebhooks",
                "Your tenant's webhook endpoints",
                ok("EndpointList", "The endpoints"),
            ),
        },
        "/api/webhooks/{endpoint_id}": {
            "get": api(
                "getWebhook",
                "A webhook endpoint (with why it was disabled, if it was)",
                ok("EndpointView", "The endpoint"),
                errors=(404,),
                parameters=endpoint,
            ),
            "patch": api(
                "updateWebhook",
                "Change a webhook endpoint; enabled: true re-enables a disabled one",
                ok("EndpointView", "The endpoint as changed"),
                errors=changes,
                parameters=endpoint,
                body=json_body("EndpointPatch"),
            ),
            "delete": api(
                "deleteWebhook",
                "Delete a webhook endpoint",
                {"204": {"description": "Deleted"}},
                errors=(404,),
                parameters=endpoint,
            ),
        },
        "/api/webhooks/{endpoint_id}/rotate-secret": {
            "post": api(
                "rotateWebhookSecret",
                "A new signing secret; the previous one also signs until its grace period ends",
                ok("SecretRotated", "The new secret, shown once"),
                errors=(404,),
                parameters=endpoint,
            )
        },
        "/api/webhooks/{endpoint_id}/deliveries": {
            "get": api(
                "listWebhookDeliveries",
                "The endpoint's deliveries, newest first",
                ok("DeliveryPage", "A page of deliveries"),
                errors=(404, 422),
                parameters=[_ENDPOINT_ID, *_DELIVERY_PAGE],
            )
        },
        "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver": {
            "post": api(
                "redeliverWebhook",
                "Send a delivery again now, with the same webhook-id",
                ok("DeliveryView", "Scheduled", 202),
                errors=(404, 409),
                parameters=[_ENDPOINT_ID, _DELIVERY_ID],
            )
        },
        "/api/scans/{scan_id}/callback/deliveries": {
            "get": api(
                "listCallbackDeliveries",
                "The deliveries to the scan's callback_url, newest first (404 without one)",
                ok("DeliveryPage", "A page of deliveries"),
                errors=(404, 422),
                parameters=[_SCAN_ID, *_DELIVERY_PAGE],
            )
        },
        "/api/scans/{scan_id}/callback/deliveries/{delivery_id}/redeliver": {
            "post": api(
                "redeliverCallback",
                "Send a callback delivery again now, with the same webhook-id",
                ok("DeliveryView", "Scheduled", 202),
                errors=(404,),
                parameters=[_SCAN_ID, _CALLBACK_DELIVERY_ID],
            )
        },
    }


def _webhook_events() -> dict[str, Schema]:
    """The requests labelscan sends to webhook endpoints (OpenAPI 3.1 ``webhooks``)."""
    signed = [
        {"in": "header", "name": name, "required": True, "schema": {"type": "string"}}
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    ]

    def event(summary: str, schema: str) -> Schema:
        return {
            "summary": f"{summary} (Standard Webhooks signature in the webhook-* headers)",
            "parameters": signed,
            "requestBody": json_body(schema),
            "responses": {"200": {"description": "Any 2xx acknowledges the delivery"}},
        }

    return {
        "scanEnded": {"post": event("A scan ended", "WebhookEvent")},
        "batchCompleted": {
            "post": event(
                "A batch's last scan ended, or it was cancelled (batch.completed)",
                "BatchWebhookEvent",
            )
        },
    }


def _metrics_path(settings: Settings) -> dict[str, Schema]:
    """``/metrics`` when METRICS is on; behind a bearer token when METRICS_TOKEN is set."""
    if not settings.metrics:
        return {}
    responses: dict[str, Schema] = {
        "200": {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    if settings.metrics_token is not None:
        responses["401"] = answer({"type": "object"}, "METRICS_TOKEN missing or wrong")
    summary = "Prometheus metrics (not behind the API keys)"
    return {"/metrics": {"get": operation("metrics", summary, responses, auth=None)}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway configured by ``settings``."""
    auth = (
        "Send `Authorization: Bearer <API key>` on every /api/* request."
        if settings.auth
        else "Authentication is OFF on this deployment."
    )
    api = api_operations(settings.auth)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "labelscan gateway",
            "version": "0.1.0",
            "description": (
                "Accepts label-compliance scans and answers their status and results. "
                f"{auth} Bodies are limited to {settings.max_body_bytes} bytes and images to "
                f"{settings.max_image_bytes} bytes. Every 4xx/5xx answer of /api/* is an "
                "ErrorBody."
            ),
        },
        "servers": [{"url": settings.gateway_url}],
        "paths": _paths(api, settings.scan_wait_limit_s)
        | openapi_batches.paths(api, _IDEMPOTENCY_KEY)
        | _metrics_path(settings),
        "webhooks": _webhook_events(),
        "components": {
            "schemas": _components(settings),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key of LABELSCAN_API_KEYS",
                }
            },
        },
    }
    # A copy the caller may change: the cached components and shared parameters stay intact.
    return copy.deepcopy(document)


@functools.lru_cache(maxsize=8)
def _encoded(settings: Settings) -> bytes:
    return msgspec.json.encode(openapi_document(settings))


async def openapi_endpoint(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI document."""
    settings: Settings = request.state.settings
    return Response(_encoded(settings), media_type="application/json")
