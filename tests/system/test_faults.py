"""Faults injected for real: killed workers, API errors, Redis restarts and pauses."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from gateway.app import create_app as create_gateway
from shared.embedded import EmbeddedValkey, free_port
from shared.keys import GROUP, Keys
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import run_emulator
from tests.support.images import label_png
from tests.support.processes import log_events, spawn, stop, wait_http, wait_log
from tests.support.redis import completed_events
from tests.support.servers import serve
from tests.support.stack import running_stack

PNG = label_png()
BODY = {
    "image_base64": base64.b64encode(PNG).decode(),
    "category": "toys",
    "marketplaces": ["US", "UK"],
    "product_name": "Blocks",
}


async def wait_all(client: httpx.AsyncClient, ids: list[str], timeout: float) -> list[dict]:  # type: ignore[type-arg]
    """Poll until every scan has ended; return their details."""
    out = []
    async with asyncio.timeout(timeout):
        for scan_id in ids:
            while True:
                detail = (await client.get(f"/api/scans/{scan_id}")).json()
                if detail["state"] in ("completed", "failed", "cancelled"):
                    out.append(detail)
                    break
                await asyncio.sleep(0.05)
    return out


async def test_kill_9_analyzer_mid_scan(make_settings: SettingsFactory, redis: Redis) -> None:
    """kill -9 one of two analyzers mid-scan: every scan completes exactly once."""
    settings = make_settings(
        simulated_delay_ms=1500, visibility_timeout_s=1.5, worker_concurrency=3
    )
    ports = [free_port(), free_port()]
    procs = [spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(p)) for p in ports]
    try:
        for proc, port in zip(procs, ports, strict=True):
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
        async with (
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            ids = [
                (await client.post("/api/scans", json=BODY)).json()["scan_id"] for _ in range(12)
            ]
            victim = procs[0]
            keys = Keys(settings.prefix)
            async with asyncio.timeout(10):
                while True:  # until the victim is in the middle of a scan
                    owners = [await redis.hget(keys.scan(i), "owner") for i in ids]
                    if any(o and f"-{victim.pid}-".encode() in o for o in owners):
                        break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            details = await wait_all(client, ids, timeout=30)
    finally:
        for proc in procs:
            stop(proc)
    assert all(d["state"] == "completed" for d in details)
    assert any(d["attempts"] == 2 for d in details), "the victim's scans were reclaimed"
    assert await completed_events(redis, Keys(settings.prefix)) == dict.fromkeys(ids, 1)
    pending = await redis.xpending(Keys(settings.prefix).requests("normal"), GROUP)
    assert pending["pending"] == 0


async def test_api_faults_on_30_percent_of_calls(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """429/529/500/dropped connections on 30% of calls: 200 scans complete, none twice."""
    async with run_emulator(
        fault_rate=0.3, fault_statuses=(429, 529, 500, 0), fault_retry_after=0.05, seed=7
    ) as emulator:
        settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-test"),
            anthropic_base_url=emulator.base_url,
            retry_base_s=0.02,
            retry_cap_s=0.2,
            max_attempts=12,
            worker_concurrency=16,
        )
        async with running_stack(settings, analyzers=2) as stack:
            ids = []
            for _ in range(20):
                replies = await asyncio.gather(
                    *(stack.client.post("/api/scans", json=BODY) for _ in range(10))
                )
                ids += [r.json()["scan_id"] for r in replies]
            details = await wait_all(stack.client, ids, timeout=90)
            ok_before = emulator.ok_count

            emulator.fault_rate = 1.0  # a scan whose every attempt fails
            doomed = (await stack.client.post("/api/scans", json=BODY)).json()["scan_id"]
            [failed] = await wait_all(stack.client, [doomed], timeout=30)
            dead = (await stack.client.get("/api/dead")).json()["items"]
            emulator.fault_rate = 0.0
            assert (await stack.client.post(f"/api/scans/{doomed}/retry")).status_code == 202
            [replayed] = await wait_all(stack.client, [doomed], timeout=30)
    assert all(d["state"] == "completed" for d in details)
    assert ok_before == 200, "each scan got exactly one successful answer"
    assert emulator.faults > 30 and emulator.dropped > 0
    assert sum(d["attempts"] for d in details) > 200, "attempts are recorded"
    counts = await completed_events(redis, Keys(settings.prefix))
    assert all(counts[i] == 1 for i in ids)
    assert failed["state"] == "failed" and failed["attempts"] == 12
    assert [d["scan_id"] for d in dead] == [doomed]
    assert replayed["state"] == "completed"


async def test_valkey_restart_with_scans_in_flight(
    own_valkey: EmbeddedValkey, make_settings: SettingsFactory
) -> None:
    """Restart Valkey (AOF on) with scans queued and in flight: all complete, once."""
    settings = make_settings(
        redis_url=own_valkey.url,
        simulated_delay_ms=300,
        visibility_timeout_s=2,
        worker_concurrency=4,
    )
    health = free_port()
    analyzer = spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(health))
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{health}/healthz", analyzer)
        async with (
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            ids = [
                (await client.post("/api/scans", json=BODY)).json()["scan_id"] for _ in range(20)
            ]
            await asyncio.sleep(0.4)
            await asyncio.to_thread(own_valkey.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own_valkey.start)
            details = await wait_all(client, ids, timeout=40)
            assert analyzer.poll() is None, "the analyzer survived the restart"
        redis = Redis.from_url(own_valkey.url)
        counts = await completed_events(redis, Keys(settings.prefix))
        await redis.aclose()
    finally:
        assert stop(analyzer) == 0
    assert all(d["state"] == "completed" for d in details)
    assert counts == dict.fromkeys(ids, 1)


async def accepted_before_kill(
    valkey: EmbeddedValkey, settings: Settings, path: str, body: object, count: int
) -> list[httpx.Response]:
    """``count`` concurrent POSTs of ``body``, every one answered 202, then Valkey killed
    with SIGKILL and started again on the same data."""
    async with (
        serve(create_gateway(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        replies = await asyncio.gather(*(client.post(path, json=body) for _ in range(count)))
        assert all(r.status_code == 202 for r in replies)
        await asyncio.to_thread(valkey.kill)
    await asyncio.to_thread(valkey.start)
    return replies


async def test_strict_durability_survives_hard_kill(
    own_valkey: EmbeddedValkey, make_settings: SettingsFactory
) -> None:
    """In strict mode a 202 given before `kill -9` of Valkey is never lost."""
    settings = make_settings(redis_url=own_valkey.url, durability="strict")
    replies = await accepted_before_kill(own_valkey, settings, "/api/scans", BODY, 50)
    redis = Redis.from_url(own_valkey.url)
    keys = Keys(settings.prefix)
    present = [await redis.hget(keys.scan(r.json()["scan_id"]), "state") for r in replies]
    queued = await redis.xlen(keys.requests("normal"))
    await redis.aclose()
    assert present == [b"queued"] * 50
    assert queued == 50


async def test_valkey_paused_under_load(
    own_valkey: EmbeddedValkey, make_settings: SettingsFactory
) -> None:
    """SIGSTOP Valkey for 5 s: gateway answers 503 fast, nothing exits, everything resumes."""
    gateway_port, health = free_port(), free_port()
    settings = make_settings(
        redis_url=own_valkey.url,
        simulated_delay_ms=100,
        visibility_timeout_s=3,
        redis_timeout_s=2,
        gateway_port=gateway_port,
    )
    gateway = spawn("gateway", settings)
    analyzer = spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(health))
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{health}/healthz", analyzer)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway_port}", timeout=10
        ) as client:
            accepted = [
                (await client.post("/api/scans", json=BODY)).json()["scan_id"] for _ in range(5)
            ]
            own_valkey.pause()
            try:
                started = time.monotonic()
                during = await client.post("/api/scans", json=BODY)
                took = time.monotonic() - started
                ready = await client.get("/readyz")
                await asyncio.sleep(5 - (time.monotonic() - started))
            finally:
                own_valkey.resume()
            after = [(await client.post("/api/scans", json=BODY)) for _ in range(5)]
            accepted += [r.json()["scan_id"] for r in after if r.status_code == 202]
            details = await wait_all(client, accepted, timeout=40)
        alive = (gateway.poll(), analyzer.poll())
    finally:
        codes = (stop(gateway), stop(analyzer))
    assert during.status_code == 503 and during.headers["retry-after"]
    assert took < 2.5
    assert ready.status_code == 503
    assert len(accepted) == 10
    assert all(d["state"] == "completed" for d in details)
    assert alive == (None, None)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the gateway reports it.
    assert codes[0] in (0, -signal.SIGTERM) and codes[1] == 0


async def test_sigterm_analyzer_hands_back_and_exits_0(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """SIGTERM: in-flight scans past the grace period are handed back; exit code 0."""
    settings = make_settings(simulated_delay_ms=10_000, shutdown_grace_s=0.5, worker_concurrency=3)
    health = free_port()
    analyzer = spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(health))
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{health}/healthz", analyzer)
        async with (
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            ids = [(await client.post("/api/scans", json=BODY)).json()["scan_id"] for _ in range(3)]
            keys = Keys(settings.prefix)
            async with asyncio.timeout(10):
                while [await redis.hget(keys.scan(i), "state") for i in ids] != [b"active"] * 3:
                    await asyncio.sleep(0.05)
            started = time.monotonic()
            code = await asyncio.to_thread(stop, analyzer)
            took = time.monotonic() - started
            states = [(await client.get(f"/api/scans/{i}")).json()["state"] for i in ids]
    finally:
        stop(analyzer)
    assert code == 0
    assert took < 5
    assert states == ["queued"] * 3
    assert (await redis.xpending(keys.requests("normal"), GROUP))["pending"] == 0
    assert await redis.xlen(keys.requests("normal")) == 3


async def test_second_sigterm_forces_the_exit(
    make_settings: SettingsFactory, redis: Redis, tmp_path: Path
) -> None:
    """SIGTERM drains a long scan; a second one hands it back and exits at once, saying so."""
    settings = make_settings(simulated_delay_ms=120_000, shutdown_grace_s=60, worker_concurrency=1)
    log = tmp_path / "analyzer.log"
    analyzer = spawn("analyzer", settings, log=log)
    keys = Keys(settings.prefix)

    def logged(event: str) -> Callable[[dict[str, Any]], bool]:
        return lambda e: e.get("event") == event

    try:
        await asyncio.to_thread(wait_log, log, analyzer, logged("consumer started"))
        async with (
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            scan_id = (await client.post("/api/scans", json=BODY)).json()["scan_id"]
            async with asyncio.timeout(10):
                while await redis.hget(keys.scan(scan_id), "state") != b"active":
                    await asyncio.sleep(0.05)
            analyzer.send_signal(signal.SIGTERM)
            await asyncio.to_thread(wait_log, log, analyzer, logged("draining"))
            await asyncio.sleep(0.5)
            draining = analyzer.poll() is None  # waiting out the 60 s grace period
            forced_at = time.monotonic()
            analyzer.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(analyzer.wait, 15)
            took = time.monotonic() - forced_at
            state = (await client.get(f"/api/scans/{scan_id}")).json()["state"]
    finally:
        stop(analyzer)
    events = [e["event"] for e in log_events(log)]
    assert draining
    assert code == 0
    assert took < 3
    assert "second signal; forcing the exit" in events
    assert any(e.startswith("forced stop") for e in events)
    assert state == "queued", "the running scan was handed back for immediate redelivery"
    assert (await redis.xpending(keys.requests("normal"), GROUP))["pending"] == 0
