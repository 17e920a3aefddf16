"""Time helpers: the wire carries epoch milliseconds, the API RFC 3339."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """RFC 3339 UTC timestamp with milliseconds."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
