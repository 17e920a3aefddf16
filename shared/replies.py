"""Redis replies as text: clients use ``decode_responses=False``, so strings come as bytes."""

from __future__ import annotations

from typing import overload


@overload
def text(value: bytes | str) -> str: ...
@overload
def text(value: bytes | str | None) -> str | None: ...
def text(value: bytes | str | None) -> str | None:
    """``value`` decoded as UTF-8 when it is bytes; a str or None as it is."""
    return value.decode() if isinstance(value, bytes) else value
