"""One scan, one trace: the gateway and analyzer processes export spans over OTLP/HTTP."""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.embedded import free_port
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import run_emulator
from tests.support.images import label_png
from tests.support.otlp import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_SERVER,
    STATUS_ERROR,
    Receiver,
    Span,
    run_receiver,
)
from tests.support.processes import log_events, spawn, stop, wait_http

BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def services() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes a test spawns, stopped however it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            stop(proc)


async def _finished(client: httpx.AsyncClient, scan_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            detail: dict[str, Any] = (await client.get(f"/api/scans/{scan_id}")).json()
            if detail["state"] in ("completed", "failed"):
                return detail
            await asyncio.sleep(0.05)


def _analyzer_done(receiver: Receiver) -> bool:
    # Three attempts: the retried scan's two, the untraced-by-client scan's one.
    return len(receiver.named("scan attempt")) >= 3 and len(receiver.named(f"chat {MODEL}")) >= 3


@pytest.mark.timeout(90)
async def test_a_retried_scan_is_one_trace_from_gateway_to_claude(
    make_settings: SettingsFactory, services: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A client's traceparent is continued through the stream entry: the accept span, two
    attempt spans (the first ended by a 529) and their Claude calls share its trace id."""
    async with run_emulator() as emulator, run_receiver() as receiver:
        settings: Settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-test"),
            anthropic_base_url=emulator.base_url,
            anthropic_model=MODEL,
            retry_base_s=0.02,
            retry_cap_s=0.05,
            max_attempts=3,
            worker_concurrency=1,
            gateway_port=free_port(),
        )
        health = free_port()
        endpoint = receiver.url
        analyzer_log = tmp_path / "analyzer.log"
        # The gateway batches for a minute: its spans can only arrive by the flush at shutdown.
        gateway = spawn(
            "gateway",
            settings,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_BSP_SCHEDULE_DELAY="60000",
        )
        services.append(gateway)
        analyzer = spawn(
            "analyzer",
            settings,
            log=analyzer_log,
            ANALYZER_HEALTH_PORT=str(health),
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
        services.append(analyzer)
        await asyncio.to_thread(wait_http, f"{settings.gateway_url}/healthz", gateway)
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{health}/healthz", analyzer)

        client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=10) as client:
            emulator.fail_next(1, 529)
            reply = await client.post(
                "/api/scans",
                json=BODY,
                headers={"traceparent": f"00-{client_trace}-{client_span}-01"},
            )
            assert reply.status_code == 202, reply.text
            scan_id = reply.json()["scan_id"]
            detail = await _finished(client, scan_id)
            status = (await client.get(f"/api/scans/{scan_id}/status")).json()
            # No traceparent: the gateway starts a trace of its own.
            other = (await client.post("/api/scans", json=BODY)).json()["scan_id"]
            other_detail = await _finished(client, other)
        await receiver.wait_for(_analyzer_done)
        # In a thread: the receiver, served on this loop, must answer the flush meanwhile.
        await asyncio.to_thread(stop, gateway)
        await receiver.wait_for(lambda r: len(r.named("scan accept")) >= 2)

    assert detail["state"] == "completed" and detail["attempts"] == 2
    assert detail["trace_id"] == status["trace_id"] == client_trace
    assert other_detail["trace_id"] not in (None, client_trace)

    spans = [s for s in receiver.spans if s.trace_id == client_trace]
    first, second = _check_accept_and_attempts(spans, client_span, scan_id)
    _check_claude_calls(spans, first, second, detail["result"]["usage"])

    # Every analyzer log line about the scan carries its trace id.
    lines = [e for e in log_events(analyzer_log) if e.get("scan_id") == scan_id]
    assert len(lines) >= 3
    assert all(e.get("trace_id") == client_trace for e in lines), lines


def _by_name(spans: list[Span]) -> dict[str, list[Span]]:
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    return by_name


def _check_accept_and_attempts(
    spans: list[Span], client_span: str, scan_id: str
) -> tuple[Span, Span]:
    """The accept span continues the client's; queue wait and both attempts are its children."""
    by_name = _by_name(spans)
    [accept] = by_name["scan accept"]
    assert accept.service == "labelscan-gateway" and accept.kind == KIND_SERVER
    assert accept.parent_id == client_span
    assert accept.attributes["labelscan.scan_id"] == scan_id
    assert accept.attributes["http.response.status_code"] == 202

    [wait] = by_name["scan queue wait"]
    assert wait.parent_id == accept.span_id and wait.service == "labelscan-analyzer"

    first, second = sorted(by_name["scan attempt"], key=lambda s: s.attributes["labelscan.attempt"])
    for attempt in (first, second):
        assert attempt.parent_id == accept.span_id
        assert attempt.kind == KIND_CONSUMER and attempt.service == "labelscan-analyzer"
    assert (
        first.attributes["labelscan.attempt"] == 1 and second.attributes["labelscan.attempt"] == 2
    )
    assert first.status == STATUS_ERROR
    assert first.attributes["labelscan.outcome"] == "retried"
    assert first.attributes["error.type"] == "backend_unavailable"
    assert second.attributes["labelscan.outcome"] == "completed"
    assert first.end_ns <= second.start_ns
    return first, second


def _check_claude_calls(
    spans: list[Span], first: Span, second: Span, usage: dict[str, int]
) -> None:
    """One GenAI span per attempt, the attempt's child: the 529, then the answer's usage."""
    calls = {c.parent_id: c for c in _by_name(spans)[f"chat {MODEL}"]}
    assert set(calls) == {first.span_id, second.span_id}, "one Claude call per attempt"
    failed, answered = calls[first.span_id], calls[second.span_id]
    for call in (failed, answered):
        assert call.kind == KIND_CLIENT
        assert call.attributes["gen_ai.system"] == "anthropic"
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.request.model"] == MODEL
    assert failed.status == STATUS_ERROR
    assert failed.attributes["http.response.status_code"] == 529
    assert "gen_ai.usage.input_tokens" not in failed.attributes
    assert answered.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"] > 0
    assert answered.attributes["gen_ai.usage.input_tokens"] == (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    assert answered.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]

    # Each attempt's stages are its children, in order, before the call's outcome is stored.
    for attempt in (first, second):
        children = sorted(
            (s for s in spans if s.parent_id == attempt.span_id), key=lambda s: s.start_ns
        )
        assert [c.name for c in children] == [
            "prepare image",
            "rate-limit wait",
            f"chat {MODEL}",
            "scan finish",
        ]
