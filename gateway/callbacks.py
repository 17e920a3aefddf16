"""A scan's callback deliveries: the log of what was sent to its ``callback_url``, and
sending one again.

The scan decides who may see them: another tenant's scan is as unknown as a
missing one (404); operators (admin tenants) see every tenant's.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Guard
from gateway.webhooks import delivery_of, hooks_of, page_query
from shared.http.errors import ApiError, not_found
from shared.http.responses import JSONResponse
from shared.record import ScanRecord
from shared.store import ScanStore
from shared.webhooks.deliveries import callback_owner, view

CLOCK_SLACK_MS = 60_000
"""A scan's creation time is read from the creating gateway's clock, its deliveries' from
Redis's: the log is read from this long before the scan's creation, so a gateway clock
running ahead cannot hide a delivery."""


async def _scan(request: Request) -> ScanRecord:
    """The caller's scan of the path, which has a callback_url; 404 otherwise."""
    guard: Guard = request.state.guard
    caller = await guard.caller(request)
    store: ScanStore = request.state.store
    record = await store.record(request.path_params["scan_id"])
    # Someone else's scan is as unknown as a missing one: no hint that it exists.
    if record is None or not caller.owns(record.tenant):
        raise not_found()
    if not record.job.callback_url:
        raise ApiError(404, "not_found", "this scan has no callback_url", "scan_id")
    return record


async def deliveries(request: Request) -> Response:
    """``GET /api/scans/{scan_id}/callback/deliveries?cursor=&limit=``: newest first."""
    record = await _scan(request)
    cursor, limit = page_query(request)
    page = await hooks_of(request).deliveries.page(
        callback_owner(record.tenant),
        cursor,
        limit,
        scan_id=request.path_params["scan_id"],
        since_ms=max(0, record.created_ms - CLOCK_SLACK_MS),
    )
    return JSONResponse(page)


async def redeliver(request: Request) -> Response:
    """``POST /api/scans/{scan_id}/callback/deliveries/{delivery_id}/redeliver``: send it
    again now, with the same ``webhook-id``, signed with the scan's callback secret."""
    record = await _scan(request)
    found = await delivery_of(
        request,
        lambda doc: (
            doc.scan_id == request.path_params["scan_id"]
            and doc.callback_url is not None
            and doc.tenant == record.tenant
        ),
    )
    state = await hooks_of(request).deliveries.redeliver(found)
    return JSONResponse(view(found.doc, state), status_code=202)
