"""Operator controls at runtime: pause and resume, limits, audit (admin keys only).

A key that is not an admin's gets ``404`` on every route here, as for a path
that does not exist: the routes are not advertised to tenants.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Guard
from gateway.intake import invalid
from shared.bulk import BulkActions, CancelQueued, DeadFilter
from shared.controls import ControlStore, LimitsPatch, PauseTarget
from shared.http.errors import ApiError
from shared.http.responses import JSONResponse
from shared.stats import consumer_names
from shared.store import ScanStore

MAX_BODY = 4096
_COUNT = re.compile(r"[0-9]{1,4}")

T = TypeVar("T")


async def _admin(request: Request) -> str:
    """Who is calling, for the audit; ApiError 404 for anyone but an admin."""
    guard: Guard = request.state.guard
    caller = await guard.caller(request)
    if not caller.admin:
        raise ApiError(404, "not_found", "no such route", None)
    return caller.tenant or "anonymous (auth off)"


def _controls(request: Request) -> ControlStore:
    controls: ControlStore = request.state.controls
    return controls


def _changed(request: Request) -> None:
    """This replica applies its own change at once; the others within a second."""
    store: ScanStore = request.state.store
    store.controls.invalidate()


async def _body(request: Request, kind: type[T]) -> T:
    """The JSON body as ``kind``; an empty body is ``{}``."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, "too_large", f"body exceeds {MAX_BODY} bytes", "body")
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", str(exc), "body") from None


async def pause(request: Request) -> Response:
    """``POST /api/admin/pause``: hold scans of a tenant, a priority, or all, queued."""
    who = await _admin(request)
    target = await _body(request, PauseTarget)
    controls = await _controls(request).pause(target, who)
    _changed(request)
    return JSONResponse(controls.view())


async def resume(request: Request) -> Response:
    """``POST /api/admin/resume``: lift the pause of exactly that target."""
    who = await _admin(request)
    target = await _body(request, PauseTarget)
    controls = await _controls(request).resume(target, who)
    _changed(request)
    return JSONResponse(controls.view())


async def controls_view(request: Request) -> Response:
    """``GET /api/admin/controls``: pauses and limits in force."""
    await _admin(request)
    return JSONResponse((await _controls(request).read()).view())


async def limits(request: Request) -> Response:
    """``GET /api/admin/limits`` and ``PATCH`` (a null restores the setting)."""
    who = await _admin(request)
    store = _controls(request)
    if request.method == "PATCH":
        patch = await _body(request, LimitsPatch)
        controls = await store.set_limits(patch, who)
        _changed(request)
    else:
        controls = await store.read()
    return JSONResponse(controls.view())


async def audit(request: Request) -> Response:
    """``GET /api/admin/audit?count=``: the latest operator actions, newest first."""
    await _admin(request)
    raw = request.query_params.get("count", "100")
    if _COUNT.fullmatch(raw) is None or not 1 <= int(raw) <= 1000:
        raise ApiError(422, "invalid_field", "count must be an integer from 1 to 1000", "count")
    return JSONResponse(await _controls(request).audit(int(raw)))


async def _bulk(request: Request, kind: type[T]) -> tuple[T, BulkActions, str]:
    who = await _admin(request)
    what = await _body(request, kind)
    store: ScanStore = request.state.store
    return what, BulkActions(store), who


async def retry_dead(request: Request) -> Response:
    """``POST /api/admin/dead/retry``: replay the dead letters that match (or count them)."""
    where, bulk, who = await _bulk(request, DeadFilter)
    result = await bulk.retry_dead(where)
    if not where.dry_run:
        await _controls(request).record(who, "retry_dead", where)
    return JSONResponse(result)


async def purge_dead(request: Request) -> Response:
    """``POST /api/admin/dead/purge``: delete the dead letters that match (or count them)."""
    where, bulk, who = await _bulk(request, DeadFilter)
    result = await bulk.purge_dead(where)
    if not where.dry_run:
        await _controls(request).record(who, "purge_dead", where)
    return JSONResponse(result)


async def cancel_queued(request: Request) -> Response:
    """``POST /api/admin/cancel-queued``: cancel a tenant's waiting scans (or count them)."""
    what, bulk, who = await _bulk(request, CancelQueued)
    result = await bulk.cancel_queued(what)
    if not what.dry_run:
        await _controls(request).record(who, "cancel_queued", what)
    return JSONResponse(result)


class Drain(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/admin/drain``: the consumer (as ``/api/queue/stats`` lists it)."""

    consumer: Annotated[str, Meta(min_length=1, max_length=255, pattern=r"^\S+$")]
    undo: bool = False
    """Take work again."""


class Drained(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    draining: bool
    delivered: int
    """Analyzers the message reached (each picks out its own name); 0: none listening."""


async def drain(request: Request) -> Response:
    """``POST /api/admin/drain``: one analyzer stops taking work and hands back its scans."""
    who = await _admin(request)
    what = await _body(request, Drain)
    store: ScanStore = request.state.store
    if what.consumer not in await consumer_names(store.redis, store.keys):
        raise ApiError(404, "not_found", "no such consumer in the analyzers' group", "consumer")
    verb = "undrain" if what.undo else "drain"
    # Pub/sub: the analyzer acts at once; one not subscribed right now (reconnecting)
    # misses it, which `delivered` tells the operator (send it again).
    delivered = await store.redis.publish(store.keys.control, f"{verb} {what.consumer}")
    await _controls(request).record(who, verb, what)
    return JSONResponse(
        Drained(consumer=what.consumer, draining=not what.undo, delivered=int(delivered))
    )
