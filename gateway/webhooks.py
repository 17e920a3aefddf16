"""The webhook endpoints API: register, list, change, rotate, delete; the delivery log.

Endpoints belong to a tenant: another tenant's endpoint is as unknown as a
missing one (404); operators (admin tenants) see every tenant's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Caller, Guard
from gateway.intake import invalid
from shared.clock import iso
from shared.connection import RedisClient
from shared.http.errors import ApiError, not_found
from shared.http.responses import JSONResponse
from shared.keys import Keys
from shared.netguard import UnsafeURLError, checked_url, parse_allow_hosts
from shared.settings import Settings
from shared.webhooks.deliveries import (
    Delivery,
    DeliveryStore,
    delivery_ttl_s,
    is_delivery_id,
    parse_cursor,
    view,
)
from shared.webhooks.endpoints import EndpointStore
from shared.webhooks.endpoints import view as endpoint_view
from shared.webhooks.models import (
    DeliveryDoc,
    Endpoint,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointPatch,
    Health,
    SecretRotated,
)

T = TypeVar("T")
MAX_BODY = 64 * 1024
"""Room for the longest valid body even with every character JSON-escaped."""


class Webhooks:
    """The gateway's webhook stores, and which tenants have an enabled endpoint.

    Whether a tenant has one is asked at every scan submit, so it is cached for
    WEBHOOK_PRESENCE_CACHE seconds; this gateway forgets a tenant's entry when
    it changes that tenant's endpoints, so only other replicas lag, by at most
    that long (a scan submitted there meanwhile gets no webhook).
    """

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = EndpointStore(redis, keys, settings)
        self.deliveries = DeliveryStore(redis, keys, ttl_s=delivery_ttl_s(settings))
        self.origins = parse_allow_hosts(settings.webhook_allow_hosts)
        self._presence: dict[str, tuple[float, bool]] = {}

    async def has_endpoints(self, tenant: str) -> bool:
        """Whether ``tenant``'s scans go to the outbox (cached, see the class)."""
        now = time.monotonic()
        cached = self._presence.get(tenant)
        if cached is not None and cached[0] > now:
            return cached[1]
        present = await self.endpoints.has_enabled(tenant)
        if len(self._presence) > 10_000:
            self._presence.clear()
        self._presence[tenant] = (now + self.settings.webhook_presence_cache_s, present)
        return present

    def forget(self, tenant: str) -> None:
        """This gateway changed ``tenant``'s endpoints: ask Redis next time."""
        self._presence.pop(tenant, None)

    def check_url(self, url: str, field: str) -> None:
        """422 unless ``url`` may receive webhooks (https; http only for allowed hosts)."""
        try:
            checked_url(url, allow_http=False, origins=self.origins, name=field)
        except UnsafeURLError as exc:
            raise ApiError(422, "invalid_field", str(exc), field) from None


def hooks_of(request: Request) -> Webhooks:
    """The gateway's webhook stores (app state)."""
    hooks: Webhooks = request.state.webhooks
    return hooks


async def _caller(request: Request) -> Caller:
    guard: Guard = request.state.guard
    return await guard.caller(request)


async def _body(request: Request, kind: type[T]) -> T:
    raw = request.headers.get("content-length")
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "bad_request", "invalid Content-Length", "content-length")
    if raw is not None and int(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"body exceeds {MAX_BODY} bytes", "body")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body exceeds {MAX_BODY} bytes", "body")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json", "content-type")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", str(exc), "body") from None


async def _owned(request: Request) -> tuple[Caller, Endpoint, Health]:
    caller = await _caller(request)
    found = await hooks_of(request).endpoints.get(request.path_params["endpoint_id"])
    if found is None or not caller.owns(found[0].tenant):
        raise not_found("endpoint")
    return caller, found[0], found[1]


async def create_endpoint(request: Request) -> Response:
    """``POST /api/webhooks``: register an endpoint; its secret is in this answer only."""
    caller = await _caller(request)
    body = await _body(request, EndpointCreate)
    tenant = body.tenant
    if caller.tenant is not None:
        if body.tenant not in ("default", caller.tenant):
            raise ApiError(422, "invalid_field", "the tenant comes from your API key", "tenant")
        tenant = caller.tenant
    hooks = hooks_of(request)
    hooks.check_url(body.url, "url")
    limit = hooks.settings.webhook_max_endpoints
    if await hooks.endpoints.count(tenant) >= limit:
        raise ApiError(409, "too_many_endpoints", f"a tenant has at most {limit} endpoints", "url")
    endpoint = await hooks.endpoints.create(tenant, body.url, list(body.events), body.description)
    hooks.forget(tenant)
    shown = endpoint_view(endpoint, Health())
    created = EndpointCreated(**msgspec.structs.asdict(shown), secret=endpoint.secret)
    return JSONResponse(
        created, status_code=201, headers={"location": f"/api/webhooks/{endpoint.id}"}
    )


async def list_endpoints(request: Request) -> Response:
    """``GET /api/webhooks``: the caller's tenant's endpoints (an operator's: all)."""
    caller = await _caller(request)
    store = hooks_of(request).endpoints
    pairs = await (store.all() if caller.scope is None else store.of_tenant(caller.scope))
    return JSONResponse(EndpointList(items=[endpoint_view(e, h) for e, h in pairs]))


async def endpoints_root(request: Request) -> Response:
    """``/api/webhooks``: GET lists, POST registers (one route, so a 405 lists both)."""
    if request.method == "POST":
        return await create_endpoint(request)
    return await list_endpoints(request)


async def endpoint_item(request: Request) -> Response:
    """``/api/webhooks/{id}``: GET reads, PATCH changes, DELETE removes."""
    _, endpoint, health = await _owned(request)
    hooks = hooks_of(request)
    if request.method == "DELETE":
        await hooks.endpoints.delete(endpoint)
        hooks.forget(endpoint.tenant)
        return Response(status_code=204)
    if request.method == "PATCH":
        patch = await _body(request, EndpointPatch)
        if patch.url is not None:
            hooks.check_url(patch.url, "url")
        endpoint = await hooks.endpoints.update(endpoint, patch)
        hooks.forget(endpoint.tenant)
        if patch.enabled:
            health = Health()
    return JSONResponse(endpoint_view(endpoint, health))


async def rotate_secret(request: Request) -> Response:
    """``POST /api/webhooks/{id}/rotate-secret``: a new secret; the old one signs too
    until ``previous_secret_expires_at`` (WEBHOOK_ROTATION_GRACE)."""
    _, endpoint, _ = await _owned(request)
    rotated = await hooks_of(request).endpoints.rotate(endpoint)
    return JSONResponse(
        SecretRotated(
            id=rotated.id,
            secret=rotated.secret,
            previous_secret_expires_at=(
                iso(rotated.previous_until_ms) if rotated.previous_secret else None
            ),
        )
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise ApiError(422, "invalid_field", "limit must be an integer from 1 to 200", "limit")
    return int(raw)


async def delivery_of(request: Request, belongs: Callable[[DeliveryDoc], bool]) -> Delivery:
    """The path's ``delivery_id`` when ``belongs`` accepts it; 404 when unknown, expired
    or not the caller's to see."""
    ref: str = request.path_params["delivery_id"]
    found = await hooks_of(request).deliveries.load(ref) if is_delivery_id(ref) else None
    if found is None or not belongs(found.doc):
        raise not_found("delivery")
    return found


def page_query(request: Request) -> tuple[str | None, int]:
    """The ``cursor`` and ``limit`` of a delivery log's page (422 naming a bad one)."""
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not parse_cursor(cursor):
        raise ApiError(
            422, "invalid_field", "cursor must be the `next` of a previous page", "cursor"
        )
    return cursor, _limit(request.query_params.get("limit"))


async def deliveries(request: Request) -> Response:
    """``GET /api/webhooks/{id}/deliveries?cursor=&limit=``: newest first."""
    _, endpoint, _ = await _owned(request)
    cursor, limit = page_query(request)
    page = await hooks_of(request).deliveries.page(endpoint.id, cursor, limit)
    return JSONResponse(page)


async def redeliver(request: Request) -> Response:
    """``POST /api/webhooks/{id}/deliveries/{delivery_id}/redeliver``: send it again now,
    with the same ``webhook-id``."""
    _, endpoint, _ = await _owned(request)
    found = await delivery_of(request, lambda doc: doc.endpoint_id == endpoint.id)
    if not endpoint.enabled:
        raise ApiError(
            409, "endpoint_disabled", "enable the endpoint (PATCH enabled: true) first", "enabled"
        )
    state = await hooks_of(request).deliveries.redeliver(found)
    return JSONResponse(view(found.doc, state), status_code=202)
