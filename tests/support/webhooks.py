"""A real webhook receiver on loopback that verifies every Standard Webhooks signature.

The verifier is written here from the specification, independently of the
service's signing code: HMAC-SHA256 keyed with the base64-decoded secret (after
``whsec_``) over ``{webhook-id}.{webhook-timestamp}.{body}``, base64, compared
in constant time with each space-separated ``v1,`` signature.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import RunningServer, serve

TOLERANCE_S = 300


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of the request's signatures was made with ``secret`` (and it is recent)."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    )
    for part in headers["webhook-signature"].split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def webhook_id(self) -> str:
        """The request's ``webhook-id``."""
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded


Answer = tuple[int, dict[str, str]]
Behaviour = Callable[["Received", int], Awaitable[Answer]]
"""What to answer a request, given it and how many times its webhook-id came before."""


async def accept(request: Received, seen: int) -> Answer:
    """Always 200."""
    return 200, {}


@dataclass
class Receiver:
    """Everything received, and what to answer next."""

    behaviour: Behaviour = accept
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    server: RunningServer | None = None

    def url(self, path: str = "/hook") -> str:
        """The receiver's URL for ``path``."""
        assert self.server is not None
        return f"{self.server.url}{path}"

    def of(self, webhook_id: str) -> list[Received]:
        """The requests carrying ``webhook_id``, in arrival order."""
        return [r for r in self.received if r.headers.get("webhook-id") == webhook_id]

    async def wait_for(self, check: Callable[[list[Received]], bool], timeout: float = 30) -> None:
        """Wait until ``check(received)`` holds."""
        async with asyncio.timeout(timeout):
            while not check(self.received):
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 0.2)

    async def _handle(self, request: Request) -> Response:
        item = Received(
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            at=time.monotonic(),
        )
        seen = len(self.of(item.headers.get("webhook-id", "")))
        self.received.append(item)
        self.arrived.set()
        status, headers = await self.behaviour(item, seen)
        item.status = status
        self.arrived.set()
        return Response(b"ok" if status < 300 else b"no", status_code=status, headers=headers)


@contextlib.asynccontextmanager
async def run_receiver(behaviour: Behaviour = accept) -> AsyncIterator[Receiver]:
    """A receiver served on loopback until the block exits."""
    receiver = Receiver(behaviour=behaviour)
    app = Starlette(routes=[Route("/{path:path}", receiver._handle, methods=["POST", "GET"])])
    async with serve(app) as server:
        receiver.server = server
        yield receiver
