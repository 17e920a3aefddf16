"""The admin dashboard: one static page, its script and its style sheet, at ``/admin``.

The page holds no data and needs no key: it asks for an API key and calls the
public API with it, like any other client. It is served by a middleware ahead of
the router (the way WhiteNoise serves static files) because the router is the
API: every route there is an operation of the OpenAPI document, and a page is not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.http.errors import ApiError, error_response
from shared.settings import Settings

PAGE = "/admin"
STATIC = "/admin/static/"

# Path -> (file in gateway/static, media type). A fixed list: nothing else under
# /admin is looked up on disk, so no path can reach outside the package.
_FILES = {
    PAGE: ("dashboard.html", "text/html; charset=utf-8"),
    f"{STATIC}dom.js": ("dom.js", "text/javascript; charset=utf-8"),
    f"{STATIC}dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    f"{STATIC}dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    f"{STATIC}webhooks.js": ("webhooks.js", "text/javascript; charset=utf-8"),
}
_ALLOW = "GET, HEAD"
# scheme://host[:port] and nothing that could end or extend a CSP directive.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def notifier_origin(settings: Settings) -> str | None:
    """The origin of ``settings.notifier_url`` (where EventSource connects), if well formed."""
    parts = urlsplit(settings.notifier_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.fullmatch(origin) else None


def content_security_policy(settings: Settings) -> str:
    """Same-origin scripts and styles only; fetch to the gateway, EventSource to the notifier."""
    connect = "'self'"
    if (origin := notifier_origin(settings)) is not None:
        connect += f" {origin}"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src {connect}",
            "base-uri 'none'",
            # The key form is handled by the script; a native submit would put the key in a URL.
            "form-action 'none'",
            "frame-ancestors 'none'",
            # No string may become markup: innerHTML and friends throw in browsers that enforce it.
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        )
    )


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers every dashboard file is sent with."""
    return {
        "content-security-policy": content_security_policy(settings),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        # Revalidated on every load (ETag): a new release is never hidden behind a cache.
        "cache-control": "no-cache",
    }


@dataclass(frozen=True, slots=True)
class Asset:
    """One file, read once at start."""

    body: bytes
    media_type: str
    etag: str


def _load(name: str, media_type: str) -> Asset:
    body = (resources.files("gateway") / "static" / name).read_bytes()
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class Dashboard:
    """ASGI middleware: answers ``GET``/``HEAD`` of the dashboard's files, passes the rest on.

    ``files`` (path -> file in gateway/static, media type) serves another static page
    the same way (the seller page).
    """

    def __init__(
        self, app: ASGIApp, settings: Settings, files: Mapping[str, tuple[str, str]] = _FILES
    ) -> None:
        self.app = app
        self.headers = security_headers(settings)
        self.assets = {path: _load(name, media) for path, (name, media) in files.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a dashboard file, or hand the request to the app."""
        asset = self.assets.get(scope["path"]) if scope["type"] == "http" else None
        if asset is None:
            await self.app(scope, receive, send)
            return
        await self.respond(scope, asset)(scope, receive, send)

    def respond(self, scope: Scope, asset: Asset) -> Response:
        """The answer for ``asset``: the file, a 304, or a 405 for any other method."""
        method = scope["method"]
        if method not in {"GET", "HEAD"}:
            refused = ApiError(
                405, "method_not_allowed", "Method Not Allowed", headers={"allow": _ALLOW}
            )
            return error_response(refused)
        headers = {**self.headers, "etag": asset.etag}
        if asset.etag in Headers(scope=scope).get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        # For HEAD the server sends the headers (Content-Length included) and drops the body.
        return Response(asset.body, media_type=asset.media_type, headers=headers)


def middleware(settings: Settings) -> Middleware:
    """The dashboard middleware for ``settings``."""
    return Middleware(Dashboard, settings=settings)
