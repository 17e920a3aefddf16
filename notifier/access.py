"""Who may read which events: a signed token, since EventSource cannot send headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from shared import tokens
from shared.http.errors import ApiError, not_found
from shared.settings import Settings


class AccessDenied(ApiError):
    """The stream is refused before any event is sent, for want of a valid token."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(status, error, detail, "token")


def _grant(settings: Settings, request: Request) -> tokens.Grant:
    token = request.query_params.get("token", "")
    if not token:
        raise AccessDenied(401, "unauthorized", "an event token is required (?token=)")
    try:
        return tokens.verify(settings.event_keys, token)
    except tokens.TokenError as exc:
        raise AccessDenied(401, "unauthorized", f"event token refused: {exc}") from None


async def check_scan(
    settings: Settings,
    request: Request,
    scan_id: str,
    tenant_of: Callable[[str], Awaitable[str | None]],
) -> None:
    """Allow one scan's stream to a token for that scan, or for the scan's tenant."""
    if not settings.auth:
        return
    grant = _grant(settings, request)
    if grant.scope == "s" and grant.subject == scan_id:
        return
    if grant.scope == "t" and grant.subject == await tenant_of(scan_id):
        return
    # Another tenant's scan looks exactly like a missing one, down to the field named.
    raise not_found()


def check_tenant(settings: Settings, request: Request) -> str | None:
    """The tenant whose stream a token opens; None when auth is off (caller names it)."""
    if not settings.auth:
        return None
    grant = _grant(settings, request)
    if grant.scope != "t":
        raise AccessDenied(401, "unauthorized", "a tenant event token is required")
    return grant.subject


def require_keys(settings: Settings) -> None:
    """Fail at start when auth is on but no event key can verify tokens."""
    if settings.auth and not settings.event_keys:
        from shared.settings import SettingsError

        raise SettingsError("LABELSCAN_EVENT_KEYS is required when auth is on")


async def check_batch(settings: Settings, request: Request, batch_id: str, tenant: str) -> None:
    """Allow a batch's stream to a token for that batch, or for the batch's tenant."""
    if not settings.auth:
        return
    grant = _grant(settings, request)
    if (grant.scope == "b" and grant.subject == batch_id) or (
        grant.scope == "t" and grant.subject == tenant
    ):
        return
    raise not_found("batch")
