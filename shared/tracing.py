"""OpenTelemetry traces: set up from the standard ``OTEL_*`` variables, off unless asked.

Settings decide once whether tracing is on (:attr:`Settings.tracing`); everything
else (endpoint, service name, sampler, batch delays, headers, timeouts) the SDK
reads from the environment itself. Off, no SDK provider is installed: the API's
tracers are no-ops that record nothing and export nothing.

A scan's trace crosses Redis as a W3C ``traceparent`` string in its request
stream entry (:attr:`ScanJob.trace`), so the analyzer's attempt spans join the
gateway's accept span in one trace.
"""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import Settings

_PROPAGATOR = TraceContextTextMapPropagator()

# version-traceid-spanid-flags; an all-zero trace id is invalid (W3C Trace Context).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def setup_tracing(settings: Settings, service: str) -> None:
    """Install the SDK's tracer provider for ``service`` if tracing is configured.

    Spans go through a batch processor (``OTEL_BSP_*``) to each exporter of
    ``OTEL_TRACES_EXPORTER``; :func:`shutdown_tracing` flushes what is left.
    """
    if not settings.tracing:
        return
    # Imported here: without tracing a service never loads the SDK or the exporter.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    resource = Resource.create()
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; else a
    # name per service, so a trace view tells the gateway from the analyzer.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"labelscan-{service}"}))
    # No sampler given: the provider reads OTEL_TRACES_SAMPLER and its _ARG.
    provider = TracerProvider(resource=resource)
    for name in settings.trace_exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: SpanExporter = OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(exporter))
        else:  # console: a debugging aid, printed as each span ends
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    """Export the spans still batched and stop the exporters (a no-op when tracing is off)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)  # the API's proxy provider has none
    if callable(shutdown):
        shutdown()


def extract(traceparent: str | None) -> Context:
    """The context a ``traceparent`` continues; an empty one (a new trace) if None or bad."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({"traceparent": traceparent})


def traceparent(span: trace.Span) -> str | None:
    """``span`` as a W3C ``traceparent``; None for a no-op span (tracing off)."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id a ``traceparent`` names, or None."""
    if not traceparent:
        return None
    found = _TRACEPARENT.match(traceparent)
    if found is None or found[1] == "0" * 32:
        return None
    return found[1]
