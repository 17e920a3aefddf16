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

Schema = dict[str, Any]

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
_REASONS = {
    400: "Malformed request (JSON, multipart, Content-Length, Idempotency-Key or a query "
    "parameter; `field` names it)",
    401: "Missing or unknown API key",
    404: "No such scan (or it belongs to another tenant, or it has expired); admin routes: "
    "the key is not an admin's",
    409: "The scan is in a state that does not allow this",
    413: "Body or image too large",
    415: "Unsupported body media type or image format",
    422: "A field is invalid; `field` names it",
    429: "Rate limit or daily quota reached for this key",
    503: "Redis is unreachable; retry shortly",
}
_SCAN_ID: Schema = {
    "name": "scan_id",
    "in": "path",
    "required": True,
    "description": "A scan id as returned by POST /api/scans (32 lowercase hex digits).",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_IDEMPOTENCY_KEY: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replaying a request with the same key and body returns the first scan (200).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_LIST_PARAMETERS: list[Schema] = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    for name, description, schema in (
        (
            "state",
            "Only scans in this state.",
            {"enum": list(get_args(ScanState))},
        ),
        ("priority", "Only scans of this priority.", {"enum": list(PRIORITIES)}),
        (
            "since",
            "Only scans created at or after this time (RFC 3339 with an offset).",
            {"type": "string", "format": "date-time"},
        ),
        (
            "until",
            "Only scans created at or before this time (RFC 3339 with an offset).",
            {"type": "string", "format": "date-time"},
        ),
        (
            "q",
            "A case-insensitive part of the product name, or the start of the scan id.",
            {"type": "string", "minLength": 1, "maxLength": 200},
        ),
        (
            "tenant",
            "Admin keys (or auth off): only this tenant's scans. Another key may name only "
            "its own tenant.",
            {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        ),
        (
            "cursor",
            "The `next` of the previous page (opaque). A page may hold fewer than `limit` "
            "scans when the filters skip many; follow `next` until it is null.",
            {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,80}$"},
        ),
        (
            "limit",
            "Page size.",
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        ),
    )
]


def _long_poll(limit_s: int) -> list[Schema]:
    """The ``wait`` and ``If-None-Match`` parameters of a scan's document."""
    return [
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "description": (
                "Long-poll: answer as soon as the scan has ended (completed, failed or cancelled), "
                "or after this many seconds with the document as it is then. With If-None-Match, "
                "answer as soon as the document differs from that version instead (304 if it "
                "never does within the wait). Beyond SCAN_WAIT_MAX waiting requests: 503."
            ),
            "schema": {"type": "integer", "minimum": 0, "maximum": limit_s},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "The ETag of the version you have: 304 while it is still current.",
            "schema": {"type": "string"},
        },
    ]


_ETAG: Schema = {
    "description": "The version of the document (strong)",
    "required": True,
    "schema": {"type": "string"},
}
_LOCATION: Schema = {"description": "Path of the scan", "schema": {"type": "string"}}
_RETRY_AFTER: Schema = {
    "description": "Seconds to wait",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_WWW_AUTHENTICATE: Schema = {"required": True, "schema": {"type": "string"}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _conditional(name: str, description: str) -> dict[str, Schema]:
    """A document with an ETag, and the 304 of an If-None-Match that still names it."""
    return {
        "200": _json(_ref(name), description, {"ETag": _ETAG}),
        "304": {"description": "Unchanged from If-None-Match", "headers": {"ETag": _ETAG}},
    }


def _errors(*codes: int) -> dict[str, Schema]:
    """ErrorBody responses for ``codes``, with the headers the gateway sends on each."""
    out: dict[str, Schema] = {}
    for code in sorted(codes):
        headers: Schema = {}
        if code == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        if code in (429, 503):
            headers["Retry-After"] = _RETRY_AFTER
        out[str(code)] = _json(_ref("ErrorBody"), _REASONS[code], headers)
    return out


def _api(
    auth: bool, summary: str, responses: dict[str, Schema], *codes: int, **extra: Any
) -> Schema:
    """An /api/* operation: with auth on, bearer and 401; 429 and 503 besides ``codes``."""
    if auth:
        codes = (*codes, 401)
    return {
        "summary": summary,
        "security": _BEARER if auth else [],
        "responses": {**responses, **_errors(429, 503, *codes)},
        **extra,
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


def _paths(auth: bool, wait_limit_s: int) -> dict[str, Schema]:
    api = functools.partial(_api, auth)
    accepted = {"Location": _LOCATION}
    scan_id = [_SCAN_ID]
    return {
        "/api/scans": {
            "get": api(
                "Your scans (an admin key: everyone's), newest first, filtered, cursor-paged",
                {"200": _json(_ref("ScanPage"), "A page of scans; follow `next` for older ones")},
                400,
                operationId="listScans",
                parameters=_LIST_PARAMETERS,
            ),
            "post": api(
                "Submit a scan",
                {
                    "200": _json(
                        _ref("ScanAccepted"),
                        "Replay of an earlier request with the same Idempotency-Key",
                        accepted,
                    ),
                    "202": _json(
                        _ref("ScanAccepted"), "Accepted and queued (or scheduled)", accepted
                    ),
                },
                400,
                413,
                415,
                422,
                operationId="createScan",
                parameters=[_IDEMPOTENCY_KEY],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("ScanCreate")},
                        "multipart/form-data": {
                            "schema": _ref("ScanCreateForm"),
                            "encoding": {
                                "image": {
                                    "contentType": "image/png, image/jpeg, image/gif, image/webp"
                                }
                            },
                        },
                    },
                },
            ),
        },
        "/api/scans/{scan_id}": {
            "get": api(
                "A scan's status and outcome; ?wait= long-polls until it ends",
                _conditional("ScanDetail", "The scan"),
                400,
                404,
                operationId="getScan",
                parameters=[*scan_id, *_long_poll(wait_limit_s)],
            ),
            "delete": api(
                "Cancel a scan that has not finished",
                {"200": _json(_ref("CancelResult"), "Cancelled")},
                404,
                409,
                operationId="cancelScan",
                parameters=scan_id,
            ),
        },
        "/api/scans/{scan_id}/status": {
            "get": api(
                "A scan's status; ?wait= long-polls until it ends",
                _conditional("ScanStatus", "The status"),
                400,
                404,
                operationId="getScanStatus",
                parameters=[*scan_id, *_long_poll(wait_limit_s)],
            )
        },
        "/api/scans/{scan_id}/events-url": {
            "get": api(
                "A fresh URL (and token) for the scan's event stream",
                {"200": _json(_ref("EventsLink"), "The event stream's URL")},
                404,
                operationId="getScanEventsUrl",
                parameters=scan_id,
            )
        },
        "/api/events-url": {
            "get": api(
                "A URL (and token) for the event stream of every scan of your tenant",
                {"200": _json(_ref("EventsLink"), "The tenant event stream's URL")},
                422,
                operationId="getTenantEventsUrl",
                parameters=[
                    {
                        "name": "tenant",
                        "in": "query",
                        "required": False,
                        "description": "Only with auth off: whose scans (default `default`).",
                        "schema": {"type": "string"},
                    }
                ],
            )
        },
        "/api/scans/{scan_id}/retry": {
            "post": api(
                "Replay a failed scan with fresh attempts",
                {"202": _json(_ref("ScanAccepted"), "Queued again")},
                404,
                409,
                operationId="retryScan",
                parameters=scan_id,
            )
        },
        "/api/dead": {
            "get": api(
                "Dead letters, newest first",
                {"200": _json(_ref("DeadLetters"), "A page of dead letters")},
                422,
                operationId="listDeadLetters",
                parameters=[
                    {
                        "name": "count",
                        "in": "query",
                        "required": False,
                        "description": "Page size.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "description": (
                            "Exclusive upper bound: the `next` of the previous page. Each half "
                            "is at most 2^64-1, and `0-0` (nothing precedes it) is a 422."
                        ),
                        "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                    },
                ],
            )
        },
        "/api/queue/stats": {
            "get": api(
                "Queue depth; per-tenant detail for the caller's tenant",
                {"200": _json(_ref("QueueStats"), "The counts")},
                operationId="getQueueStats",
            )
        },
        **_admin_paths(api),
        **_webhook_paths(api),
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "The process answers")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness (Redis answers)",
                "operationId": "readyz",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "Ready"),
                    "503": _json(_ref("Health"), "Redis does not answer"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            }
        },
    }


def _admin_paths(api: Any) -> dict[str, Schema]:
    """The operator routes (admin keys only; anyone else gets 404)."""
    controls = {"200": _json(_ref("ControlsView"), "Pauses and limits now in force")}
    bulk = {"200": _json(_ref("BulkResult"), "What matched, and what was done")}

    def body(name: str) -> Schema:
        return {"required": False, "content": {"application/json": {"schema": _ref(name)}}}

    return {
        "/api/admin/pause": {
            "post": api(
                "Pause scans of a tenant, a priority, both, or (empty body) all; they stay "
                "queued, out of the request streams",
                controls,
                400,
                404,
                413,
                422,
                operationId="pause",
                requestBody=body("PauseTarget"),
            )
        },
        "/api/admin/resume": {
            "post": api(
                "Lift the pause of exactly that target",
                controls,
                400,
                404,
                413,
                422,
                operationId="resume",
                requestBody=body("PauseTarget"),
            )
        },
        "/api/admin/controls": {
            "get": api("Pauses and limits in force", controls, 404, operationId="getControls")
        },
        "/api/admin/limits": {
            "get": api("Limits in force", controls, 404, operationId="getLimits"),
            "patch": api(
                "Change limits fleet-wide (applied within a second); null restores the setting",
                controls,
                400,
                404,
                413,
                422,
                operationId="setLimits",
                requestBody=body("LimitsPatch"),
            ),
        },
        "/api/admin/dead/retry": {
            "post": api(
                "Replay the dead letters that match the filter (dry_run: count them)",
                bulk,
                400,
                404,
                413,
                422,
                operationId="retryDeadLetters",
                requestBody=body("DeadFilter"),
            )
        },
        "/api/admin/dead/purge": {
            "post": api(
                "Delete the dead letters that match the filter (dry_run: count them)",
                bulk,
                400,
                404,
                413,
                422,
                operationId="purgeDeadLetters",
                requestBody=body("DeadFilter"),
            )
        },
        "/api/admin/cancel-queued": {
            "post": api(
                "Cancel every waiting scan of a tenant (dry_run: count them)",
                bulk,
                400,
                404,
                413,
                422,
                operationId="cancelQueued",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CancelQueued")}},
                },
            )
        },
        "/api/admin/drain": {
            "post": api(
                "Ask one analyzer (by consumer name) to stop taking work and hand back "
                "its scans; undo: take work again",
                {"200": _json(_ref("Drained"), "The message was sent")},
                400,
                404,
                413,
                422,
                operationId="drainAnalyzer",
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Drain")}},
                },
            )
        },
        "/api/admin/audit": {
            "get": api(
                "Operator actions, newest first",
                {"200": _json(_ref("AuditLog"), "The latest actions")},
                404,
                422,
                operationId="getAudit",
                parameters=[
                    {
                        "name": "count",
                        "in": "query",
                        "required": False,
                        "description": "How many.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    }
                ],
            )
        },
    }


_ENDPOINT_ID: Schema = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "description": "A webhook endpoint id as returned by POST /api/webhooks.",
    "schema": {"type": "string", "pattern": "^we_[0-9a-f]{24}$"},
}
_DELIVERY_ID: Schema = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "description": "A delivery id from the endpoint's delivery log.",
    "schema": {"type": "string", "pattern": "^wd_[0-9a-f]{24}$"},
}


def _webhook_paths(api: Any) -> dict[str, Schema]:
    """Webhook endpoints and their delivery logs (a tenant's own; operators: all)."""
    endpoint = [_ENDPOINT_ID]

    def body(name: str) -> Schema:
        return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}

    return {
        "/api/webhooks": {
            "post": api(
                "Register a webhook endpoint; the answer holds its signing secret, shown once",
                {
                    "201": _json(
                        _ref("EndpointCreated"),
                        "Registered",
                        {"Location": {"description": "Path", "schema": {"type": "string"}}},
                    )
                },
                400,
                409,
                413,
                415,
                422,
                operationId="createWebhook",
                requestBody=body("EndpointCreate"),
            ),
            "get": api(
                "Your tenant's webhook endpoints",
                {"200": _json(_ref("EndpointList"), "The endpoints")},
                operationId="listWebhooks",
            ),
        },
        "/api/webhooks/{endpoint_id}": {
            "get": api(
                "A webhook endpoint (with why it was disabled, if it was)",
                {"200": _json(_ref("EndpointView"), "The endpoint")},
                404,
                operationId="getWebhook",
                parameters=endpoint,
            ),
            "patch": api(
                "Change a webhook endpoint; enabled: true re-enables a disabled one",
                {"200": _json(_ref("EndpointView"), "The endpoint as changed")},
                400,
                404,
                413,
                415,
                422,
                operationId="updateWebhook",
                parameters=endpoint,
                requestBody=body("EndpointPatch"),
            ),
            "delete": api(
                "Delete a webhook endpoint",
                {"204": {"description": "Deleted"}},
                404,
                operationId="deleteWebhook",
                parameters=endpoint,
            ),
        },
        "/api/webhooks/{endpoint_id}/rotate-secret": {
            "post": api(
                "A new signing secret; the previous one also signs until its grace period ends",
                {"200": _json(_ref("SecretRotated"), "The new secret, shown once")},
                404,
                operationId="rotateWebhookSecret",
                parameters=endpoint,
            )
        },
        "/api/webhooks/{endpoint_id}/deliveries": {
            "get": api(
                "The endpoint's deliveries, newest first",
                {"200": _json(_ref("DeliveryPage"), "A page of deliveries")},
                404,
                422,
                operationId="listWebhookDeliveries",
                parameters=[
                    _ENDPOINT_ID,
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "The `next` of the previous page.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Page size.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                ],
            )
        },
        "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver": {
            "post": api(
                "Send a delivery again now, with the same webhook-id",
                {"202": _json(_ref("DeliveryView"), "Scheduled")},
                404,
                409,
                operationId="redeliverWebhook",
                parameters=[_ENDPOINT_ID, _DELIVERY_ID],
            )
        },
    }


def _webhook_events() -> dict[str, Schema]:
    """The requests labelscan sends to webhook endpoints (OpenAPI 3.1 ``webhooks``)."""
    signed = {
        name: {"in": "header", "name": name, "required": True, "schema": {"type": "string"}}
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }

    def operation(summary: str, schema: str) -> Schema:
        return {
            "summary": f"{summary} (Standard Webhooks signature in the webhook-* headers)",
            "parameters": list(signed.values()),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(schema)}},
            },
            "responses": {"200": {"description": "Any 2xx acknowledges the delivery"}},
        }

    return {
        "scanEnded": {"post": operation("A scan ended", "WebhookEvent")},
        "batchCompleted": {
            "post": operation(
                "A batch's last scan ended, or it was cancelled (batch.completed)",
                "BatchWebhookEvent",
            )
        },
    }


def _metrics_path(settings: Settings) -> dict[str, Any]:
    """``/metrics`` when METRICS is on; behind a bearer token when METRICS_TOKEN is set."""
    if not settings.metrics:
        return {}
    responses: dict[str, Any] = {
        "200": {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    if settings.metrics_token is not None:
        responses["401"] = _json({"type": "object"}, "METRICS_TOKEN missing or wrong")
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (not behind the API keys)",
                "operationId": "metrics",
                "security": [],
                "responses": responses,
            }
        }
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway configured by ``settings``."""
    auth = (
        "Send `Authorization: Bearer <API key>` on every /api/* request."
        if settings.auth
        else "Authentication is OFF on this deployment."
    )
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
        "paths": _paths(settings.auth, settings.scan_wait_limit_s)
        | openapi_batches.paths(functools.partial(_api, settings.auth), _IDEMPOTENCY_KEY)
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
