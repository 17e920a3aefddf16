"""The JSON response of both services."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_encode = msgspec.json.Encoder().encode


class JSONResponse(Response):
    """A response whose body msgspec encodes (structs, dicts, lists)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode with msgspec: it knows the boundary Structs, Starlette's encoder does not."""
        return _encode(content)
