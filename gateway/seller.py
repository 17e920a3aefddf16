"""The seller page at ``/``: drop labels, watch each scan's progress, read its findings.

Static like the admin dashboard (``gateway/dashboard.py``), and served the same way:
a middleware ahead of the router (the router is the API, and a page is not an
operation of it), with the same headers: a strict CSP, scripts and styles from
the gateway only, EventSource to the notifier's origin, Trusted Types required.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from gateway.dashboard import Dashboard
from shared.settings import Settings

PAGE = "/"
STATIC = "/static/"

# Path -> (file in gateway/static, media type): nothing else is looked up on disk.
_FILES = {
    PAGE: ("seller.html", "text/html; charset=utf-8"),
    f"{STATIC}dom.js": ("dom.js", "text/javascript; charset=utf-8"),
    f"{STATIC}seller.js": ("seller.js", "text/javascript; charset=utf-8"),
    f"{STATIC}seller.css": ("seller.css", "text/css; charset=utf-8"),
}


def middleware(settings: Settings) -> Middleware:
    """The seller page middleware for ``settings``."""
    return Middleware(Dashboard, settings=settings, files=_FILES)
