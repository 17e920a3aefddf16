"""What every service's ``__main__`` does first: settings, logging, one clear failure line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from shared.layout import ensure_layout
from shared.logs import configure_logging
from shared.settings import Settings, SettingsError


@contextmanager
def exit_on_config_error(service: str) -> Iterator[None]:
    """Turn a SettingsError raised inside into one ``configuration error`` line and exit 2.

    An operator needs the setting and the reason, not a traceback; 2 tells a
    supervisor that restarting will not help.
    """
    try:
        yield
    except SettingsError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def boot(service: str) -> tuple[Settings, structlog.stdlib.BoundLogger]:
    """Read settings, configure logging and check the partition count recorded in Redis;
    exit 2 with one line if a setting is wrong."""
    with exit_on_config_error(service):
        settings = Settings.from_env()
    log = configure_logging(settings, service)
    with exit_on_config_error(service):
        ensure_layout(settings)
    return settings, log
