"""The JSON response of both services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

_encode = msgspec.json.Encoder().encode


# Results and errors are one tenant's private data: no cache may keep them, and no
# browser may sniff them into something else.
PRIVATE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


class JSONResponse(Response):
    """A response whose body msgspec encodes (structs, dicts, lists); never cached or sniffed."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code, {**PRIVATE, **(headers or {})})

    def render(self, content: Any) -> bytes:
        """Encode with msgspec: it knows the boundary Structs, Starlette's encoder does not."""
        return _encode(content)
