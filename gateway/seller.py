"""The seller page at ``/``: drop labels, watch each scan's progress, read its findings.

Static like the admin dashboard (``gateway/dashboard.py``), and served the same way:
a middleware ahead of the router (the router is the API, and a page is not an
operation of it), with the same headers: a strict CSP, scripts and styles from
the gateway only, EventSource to the notifier's origin, Trusted Types required.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.middleware import Middleware
from starlette.types import ASGIApp

from gateway.dashboard import Asset, Dashboard, security_headers
from shared.settings import Settings

PAGE = "/"
STATIC = "/static/"

# Path -> (file in gateway/static, media type): nothing else is looked up on disk.
_FILES = {
    PAGE: ("seller.html", "text/html; charset=utf-8"),
    f"{STATIC}seller.js": ("seller.js", "text/javascript; charset=utf-8"),
    f"{STATIC}seller.css": ("seller.css", "text/css; charset=utf-8"),
}


def _asset(name: str, media_type: str) -> Asset:
    body = (resources.files("gateway") / "static" / name).read_bytes()
    return Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class SellerPage(Dashboard):
    """ASGI middleware: the seller page's files for ``GET``/``HEAD``, the rest passed on."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        # Dashboard's answering (ETag, 304, 405) with this page's files, not the admin's:
        # its __init__ would load the admin's files, which this middleware never serves.
        self.app = app
        self.headers = security_headers(settings)
        self.assets = {path: _asset(name, media) for path, (name, media) in _FILES.items()}


def middleware(settings: Settings) -> Middleware:
    """The seller page middleware for ``settings``."""
    return Middleware(SellerPage, settings=settings)
