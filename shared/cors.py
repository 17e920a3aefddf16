"""CORS for browsers on other origins (EventSource from a seller's dashboard, say)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from shared.settings import Settings


def cors(settings: Settings) -> Middleware:
    """The CORS middleware for ``CORS_ORIGINS``."""
    return Middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["content-type", "idempotency-key", "last-event-id", "authorization"],
        expose_headers=["location", "retry-after"],
        max_age=600,
    )
