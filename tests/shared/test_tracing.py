"""shared.tracing: off costs nothing, and the traceparent round-trips through the stream."""

from __future__ import annotations

import msgspec
from opentelemetry import trace

from shared import tracing
from shared.schemas import ScanJob
from shared.settings import Settings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_off_installs_no_provider_and_carries_nothing() -> None:
    """Unconfigured: the API's no-op tracer stays; its spans record nothing and inject nothing."""
    tracing.setup_tracing(Settings.from_env({}), "gateway")
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    with trace.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()
        assert tracing.traceparent(span) is None
    tracing.shutdown_tracing()  # nothing to flush: a no-op


def test_traceparent_round_trips_and_names_the_trace() -> None:
    """What the gateway writes in the entry is what the analyzer continues and reports."""
    context = tracing.extract(PARENT)
    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_valid and parent.is_remote
    assert format(parent.trace_id, "032x") == tracing.trace_id_of(PARENT)
    assert tracing.traceparent(trace.NonRecordingSpan(parent)) == PARENT
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01"):
        assert not trace.get_current_span(tracing.extract(bad)).get_span_context().is_valid
        assert tracing.trace_id_of(bad) is None


def test_stream_entries_stay_readable_across_an_upgrade() -> None:
    """An entry without ``trace`` (older gateway) decodes; one with it decodes as before."""
    old = b'{"scan_id":"a","category":"toys","marketplaces":["US"],"product_name":"p"}'
    assert msgspec.json.decode(old, type=ScanJob).trace is None
    new = msgspec.json.encode(
        ScanJob(scan_id="a", category="toys", marketplaces=["US"], product_name="p", trace=PARENT)
    )
    assert msgspec.json.decode(new, type=ScanJob).trace == PARENT
