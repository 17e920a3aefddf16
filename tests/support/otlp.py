"""A local OTLP/HTTP trace receiver: what the services export, decoded into plain spans."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve

KIND_SERVER = 2
KIND_CLIENT = 3
KIND_CONSUMER = 5
STATUS_OK = 1
STATUS_ERROR = 2


@dataclass(frozen=True)
class Span:
    """One exported span, with ids as lowercase hex ("" for no parent)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    status: int
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which is not None else None


@dataclass
class Receiver:
    """Collects every span POSTed to ``/v1/traces`` (protobuf, as the SDK's exporter sends)."""

    spans: list[Span] = field(default_factory=list)
    url: str = ""

    async def export(self, request: Request) -> Response:
        """``POST /v1/traces``: decode an ``ExportTraceServiceRequest``, answer success."""
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            service=str(resource.get("service.name", "")),
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            status=s.status.code,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[Span]:
        """The spans called ``name``, in arrival order."""
        return [s for s in self.spans if s.name == name]

    async def wait_for(self, ready: Callable[[Receiver], bool], timeout: float = 15.0) -> None:
        """Wait until ``ready(self)`` holds (spans arrive in batches, after they end)."""
        async with asyncio.timeout(timeout):
            while not ready(self):
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def run_receiver() -> AsyncIterator[Receiver]:
    """Serve a :class:`Receiver` on a free loopback port; ``url`` is the OTLP base URL."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.export, methods=["POST"])])
    async with serve(app) as running:
        receiver.url = running.url
        yield receiver
