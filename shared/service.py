"""What every service's ``__main__`` does first: settings, logging, one clear failure line."""

from __future__ import annotations

import sys

import structlog

from shared.logs import configure_logging
from shared.settings import Settings, SettingsError


def boot(service: str) -> tuple[Settings, structlog.stdlib.BoundLogger]:
    """Read settings and configure logging; exit 2 with one line if a setting is wrong."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings, configure_logging(settings, service)
