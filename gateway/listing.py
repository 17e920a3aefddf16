"""``GET /api/scans``: the caller's scans, newest first, filtered and cursor-paged."""

from __future__ import annotations

import re
from datetime import datetime
from typing import get_args

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Guard
from gateway.scans import create_scan
from shared.http.errors import ApiError
from shared.http.responses import JSONResponse
from shared.scanlist import ListQuery, ScanLister, decode_cursor
from shared.schemas import PRIORITIES, ScanState
from shared.store import ScanStore

STATES: tuple[str, ...] = get_args(ScanState)
MAX_LIMIT = 100
MAX_Q = 200
_LIMIT = re.compile(r"[0-9]{1,3}")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# RFC 3339 exactly: fromisoformat alone would also take "20240101" and dates without a time.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _bad(field: str, detail: str) -> ApiError:
    return ApiError(400, "invalid_parameter", detail, field)


async def scans_root(request: Request) -> Response:
    """``/api/scans``: GET lists scans, POST submits one (one route, so 405 lists both)."""
    if request.method == "POST":
        return await create_scan(request)
    return await list_scans(request)


async def list_scans(request: Request) -> Response:
    """``GET /api/scans?state=&priority=&since=&until=&q=&tenant=&cursor=&limit=``."""
    guard: Guard = request.state.guard
    caller = await guard.caller(request)
    query = parse_query(request, caller.scope)
    store: ScanStore = request.state.store
    page = await ScanLister(store.redis, store.keys).page(query)
    return JSONResponse(page)


def parse_query(request: Request, scope: str | None) -> ListQuery:
    """The listing a request asks for, within what its caller may see (``scope``)."""
    params = request.query_params
    tenant = params.get("tenant")
    if tenant is not None:
        if _TENANT.fullmatch(tenant) is None:
            raise _bad("tenant", "tenant must match [A-Za-z0-9_.-]{1,64}")
        if scope is not None and tenant != scope:
            raise _bad("tenant", "only an admin key lists another tenant's scans")
    state = params.get("state")
    if state is not None and state not in STATES:
        raise _bad("state", f"state must be one of {', '.join(STATES)}")
    priority = params.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise _bad("priority", f"priority must be one of {', '.join(PRIORITIES)}")
    q = params.get("q")
    if q is not None and not 1 <= len(q) <= MAX_Q:
        raise _bad("q", f"q must be 1 to {MAX_Q} characters")
    raw_limit = params.get("limit")
    limit = 20
    if raw_limit is not None:
        if _LIMIT.fullmatch(raw_limit) is None or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    cursor = params.get("cursor")
    try:
        position = decode_cursor(cursor) if cursor is not None else None
    except ValueError:
        raise _bad("cursor", "cursor must be the `next` of an earlier page") from None
    since, until = _instant(params.get("since"), "since"), _instant(params.get("until"), "until")
    if since is not None and until is not None and since > until:
        raise _bad("until", "until is before since")
    return ListQuery(
        tenant=tenant or scope,
        state=state,  # type: ignore[arg-type]  # checked against STATES above
        priority=priority,
        since_ms=since,
        until_ms=until,
        q=q.casefold() if q is not None else None,
        cursor=position,
        limit=limit,
    )


def _instant(raw: str | None, field: str) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 time with an offset."""
    if raw is None:
        return None
    if _RFC3339.fullmatch(raw) is None:
        raise _bad(field, f"{field} must be an RFC 3339 time with an offset")
    try:
        moment = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, f"{field} is not a valid time") from None
    return int(moment.timestamp() * 1000)
