"""A real Prometheus scrapes the three services while scans complete, fail and retry."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.embedded import free_port
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import MessagesEmulator, run_emulator
from tests.support.images import label_png
from tests.support.processes import spawn, stop, wait_http
from tests.support.prometheus import Prometheus, needs_prometheus, run_prometheus

BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes a test spawns, stopped however it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        stop(proc)


async def _scan(
    client: httpx.AsyncClient, emulator: MessagesEmulator, fail: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Post one scan (the API first answering ``fail`` = (times, status)); wait for its end."""
    if fail is not None:
        emulator.fail_next(*fail)
    reply = await client.post("/api/scans", json=BODY)
    assert reply.status_code == 202, reply.text
    scan_id = reply.json()["scan_id"]
    async with asyncio.timeout(30):
        while True:
            detail: dict[str, Any] = (await client.get(f"/api/scans/{scan_id}")).json()
            if detail["state"] in ("completed", "failed"):
                return detail
            await asyncio.sleep(0.05)


@needs_prometheus
@pytest.mark.timeout(120)
async def test_prometheus_scrapes_what_happened(
    make_settings: SettingsFactory,
    services: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Four scans (one completes, one after a retry, one fails, one is dead-lettered) and
    one refused request: Prometheus's query API shows the counters, histograms and gauges."""
    async with run_emulator() as emulator:
        settings: Settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-test"),
            anthropic_base_url=emulator.base_url,
            retry_base_s=0.02,
            retry_cap_s=0.05,
            max_attempts=3,
            worker_concurrency=1,
            gateway_port=free_port(),
            notifier_port=free_port(),
        )
        health = free_port()
        urls = {
            "gateway": f"127.0.0.1:{settings.gateway_port}",
            "analyzer": f"127.0.0.1:{health}",
            "notifier": f"127.0.0.1:{settings.notifier_port}",
        }
        for name in urls:
            services.append(
                spawn(name, settings, ANALYZER_HEALTH_PORT=str(health), METRICS_QUEUE_CACHE="0")
            )
        for proc, target in zip(services, urls.values(), strict=True):
            await asyncio.to_thread(wait_http, f"http://{target}/metrics", proc)

        async with (
            httpx.AsyncClient(base_url=settings.gateway_url, timeout=10) as client,
            httpx.AsyncClient(base_url=settings.notifier_url, timeout=10) as sse,
        ):
            done = await _scan(client, emulator)
            retried = await _scan(client, emulator, fail=(1, 500))
            failed = await _scan(client, emulator, fail=(1, 400))
            dead = await _scan(client, emulator, fail=(3, 529))
            refused = await client.post("/api/scans", json={"category": "toys"})
            # The finished scan's history, replayed by the notifier: events sent, stream ended.
            events = await sse.get(f"/api/scans/{done['scan_id']}/events")
    assert [done["state"], retried["state"], failed["state"], dead["state"]] == [
        "completed",
        "completed",
        "failed",
        "failed",
    ]
    assert retried["attempts"] == 2 and dead["attempts"] == 3
    assert refused.status_code == 422
    assert events.status_code == 200 and "completed" in events.text

    with run_prometheus(tmp_path, urls) as prom:
        await asyncio.to_thread(_check, prom)


def _check(prom: Prometheus) -> None:
    # Prometheus starts after the scans: its first scrape of each service is final.
    prom.wait_value("count(up == 1)", 3)
    prom.wait_value("count(labelscan_consumers) + count(labelscan_inflight_scans)", 2)
    prom.wait_value("count(labelscan_sse_events_sent_total)", 1)

    # gateway: submissions, refusals, request timing by route template
    assert prom.value("sum(labelscan_scans_submitted_total)") == 4
    assert prom.value('labelscan_scans_submitted_total{priority="normal"}') == 4
    assert prom.value('labelscan_rejected_total{reason="invalid"}') == 1
    posts = 'labelscan_http_request_duration_seconds_count{route="/api/scans",method="POST"}'
    assert prom.query(f"sum by (status) ({posts})") == {"status=202": 4, "status=422": 1}
    routes = prom.query("sum by (route) (labelscan_http_request_duration_seconds_count)")
    assert "route=/api/scans/{scan_id}" in routes
    assert not any(len(r) > 40 for r in routes), "no raw paths with scan ids"

    # analyzer: outcomes, attempts, durations, tokens and cost
    assert prom.query("sum by (outcome) (labelscan_scans_finished_total)") == {
        "outcome=completed": 2,
        "outcome=failed": 1,
        "outcome=dead_lettered": 1,
    }
    assert prom.value('labelscan_scan_attempts_total{result="retried"}') == 1 + 2
    assert prom.value('labelscan_scan_duration_seconds_count{backend="claude"}') == 4
    assert prom.value("labelscan_queue_wait_seconds_count") == 4
    stages = prom.query("sum by (stage) (labelscan_stage_duration_seconds_count)")
    assert stages["stage=analyze"] == 2 and stages["stage=finish"] == 2
    assert stages["stage=fetch"] == 1 + 2 + 1 + 3, "every attempt fetched"
    assert (prom.value('labelscan_anthropic_tokens_total{kind="input"}') or 0) > 0
    assert (prom.value('labelscan_anthropic_tokens_total{kind="output"}') or 0) > 0
    assert (prom.value("sum(labelscan_anthropic_cost_usd_total)") or 0) > 0
    assert prom.value("labelscan_inflight_scans") == 0

    # queue state read from Redis by the gateway
    assert prom.value("labelscan_consumers") == 1
    assert prom.value("labelscan_dead_letters") == 2
    assert prom.value("sum(labelscan_queue_depth)") == 0
    assert prom.value("max(labelscan_queue_oldest_age_seconds)") == 0
    assert prom.value("labelscan_scheduled_scans") == 0
    assert prom.value("labelscan_fleet_paused") == 0

    # notifier: the replayed stream, ended by the scan's end
    assert (prom.value("labelscan_sse_events_sent_total") or 0) >= 2  # queued ... completed
    assert prom.value('labelscan_sse_disconnects_total{reason="finished"}') == 1
    assert prom.value('sum(labelscan_sse_connections{stream="scan"})') == 0
