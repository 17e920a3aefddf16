"""Priorities, scheduled scans, the shared rate limit, fleet pause and tenant caps."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from redis.asyncio import Redis

from analyzer.backends import AnalysisRequest
from analyzer.backends.claude import ClaudeBackend
from analyzer.images import token_estimate
from analyzer.ratelimit import Decision, RateLimiter, mark_sent
from shared.connection import connect
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.schemas import ScanEvent, Stage, Usage
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import run_emulator
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.stack import running_stack

PNG = label_png()


def body(name: str = "Lamp", **extra: object) -> dict[str, object]:
    """A valid scan request."""
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": name,
        **extra,
    }


async def events_of(redis: Redis, settings: Settings, scan_id: str) -> list[ScanEvent]:
    """The scan's event history."""
    raw = await redis.xrange(Keys(settings.prefix).scan_events(scan_id))
    return [msgspec.json.decode(f[b"event"], type=ScanEvent) for _, f in raw]


@pytest.mark.parametrize("partitions", [1, 3])
async def test_high_priority_starts_next(make_settings: SettingsFactory, partitions: int) -> None:
    """With one slot busy and a backlog of low scans, a later high scan runs next,
    whichever partitions the scans landed in."""
    settings = make_settings(worker_concurrency=1, partitions=partitions)
    # The first scan holds the only slot long enough for the rest to queue behind it
    # (whichever low scan that is: partitions are read in turn, not in posting order).
    backend = ScriptedBackend(settings, delay_s=0.05, delays={f"low{i}": 1.5 for i in range(4)})
    async with running_stack(settings, backend=backend) as stack:
        for i in range(4):
            await stack.client.post("/api/scans", json=body(f"low{i}", priority="low"))
        await backend.started.wait()
        normal = await stack.client.post("/api/scans", json=body("normal", priority="normal"))
        high = (await stack.client.post("/api/scans", json=body("high", priority="high"))).json()
        stats = (await stack.client.get("/api/queue/stats")).json()
        await stack.wait_terminal(high["scan_id"])
        await stack.wait_terminal(normal.json()["scan_id"])  # so its start is recorded
    assert backend.order[0].startswith("low")
    assert backend.order[1:3] == ["high", "normal"]
    assert stats["waiting_by_priority"] == {"high": 1, "normal": 1, "low": 3}


async def test_scheduled_scan_starts_on_time(settings: Settings, redis: Redis) -> None:
    """delay_ms and run_at: `scheduled` until due, started within 500 ms after, not before."""
    async with running_stack(settings) as stack:
        posted_at = time.time()
        by_delay = await stack.client.post("/api/scans", json=body(delay_ms=1200))
        run_at = datetime.now(UTC) + timedelta(milliseconds=1500)
        by_time = await stack.client.post("/api/scans", json=body(run_at=run_at.isoformat()))
        assert by_delay.status_code == by_time.status_code == 202
        assert by_delay.json()["status"] == "scheduled"
        sid = by_delay.json()["scan_id"]
        status = (await stack.client.get(f"/api/scans/{sid}/status")).json()
        stats = (await stack.client.get("/api/queue/stats")).json()
        await stack.wait_terminal(sid)
        await stack.wait_terminal(by_time.json()["scan_id"])
    assert status["state"] == "scheduled" and status["next_attempt_at"] is not None
    assert stats["delayed"] == 2
    for scan_id, due in ((sid, posted_at + 1.2), (by_time.json()["scan_id"], run_at.timestamp())):
        events = await events_of(redis, settings, scan_id)
        assert events[0].type == "scheduled"
        started = next(e.at_ms for e in events if e.type == "progress") / 1000
        assert due - 0.05 <= started <= due + 0.5, started - due


async def test_bad_schedules_are_rejected(settings: Settings) -> None:
    """Both delay_ms and run_at, a naive run_at, or a time past retention: 422."""
    async with running_stack(settings, analyzers=0) as stack:
        both = await stack.client.post(
            "/api/scans", json=body(delay_ms=10, run_at="2030-01-01T00:00:00Z")
        )
        naive = await stack.client.post("/api/scans", json=body(run_at="2030-01-01T00:00:00"))
        far = await stack.client.post("/api/scans", json=body(delay_ms=10**12))
    assert [r.status_code for r in (both, naive, far)] == [422, 422, 422]
    assert [r.json()["field"] for r in (both, naive, far)] == ["run_at", "run_at", "delay_ms"]


async def test_limiter_counts_a_rolling_minute(make_settings: SettingsFactory) -> None:
    """Requests and tokens per minute are reserved atomically and refused with a wait."""
    settings = make_settings(
        anthropic_rpm=3, anthropic_input_tpm=10_000, anthropic_output_tpm=5_000
    )
    redis = connect(settings)
    limiter = RateLimiter(ScriptRunner(redis), Keys(settings.prefix), settings)
    decisions = [await limiter.try_acquire(1000, 1000) for _ in range(4)]
    assert [d.wait_ms == 0 for d in decisions] == [True, True, True, False]
    assert decisions[3].reason == "requests per minute"
    assert 59_000 < decisions[3].wait_ms <= 60_001

    tokens = make_settings(anthropic_input_tpm=5000)
    by_tokens = RateLimiter(ScriptRunner(redis), Keys(tokens.prefix + "x"), tokens)
    first = await by_tokens.try_acquire(4000, 10)
    second = await by_tokens.try_acquire(4000, 10)
    assert first.reservation is not None and second.reason == "input tokens per minute"
    # The API reported fewer tokens than reserved: the difference comes back at once.
    await by_tokens.settle(first.reservation, Usage(input_tokens=500, output_tokens=10))
    assert (await by_tokens.try_acquire(4000, 10)).wait_ms == 0

    await limiter.pause(0.5, "test")
    paused = await limiter.try_acquire(1, 1)
    assert paused.reason == "paused: test" and 0 < paused.wait_ms <= 500
    await redis.aclose()


def test_image_token_estimate_follows_claude_scaling() -> None:
    """Small images cost w*h/750; large ones are scaled to 1568 px and ~1.2 MP first."""
    assert token_estimate(750, 100) == 100
    assert token_estimate(4000, 3000) <= 1600
    assert token_estimate(1568, 1568) == 1600  # within the edge limit, over ~1.2 MP


async def test_shared_rate_limit_across_three_processes(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Three analyzer processes never exceed ANTHROPIC_RPM; the rest wait, visibly."""
    from shared.embedded import free_port
    from tests.support.processes import spawn, stop, wait_http

    async with run_emulator(rpm_limit=12) as emulator:
        settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-rl"),
            anthropic_base_url=emulator.base_url,
            anthropic_rpm=12,
            worker_concurrency=4,
            shutdown_grace_s=0.5,
        )
        ports = [free_port() for _ in range(3)]
        procs = [
            spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(p), ANTHROPIC_RPM="12")
            for p in ports
        ]
        try:
            for proc, port in zip(procs, ports, strict=True):
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
            async with running_stack(settings, analyzers=0) as stack:
                ids = [
                    (await stack.client.post("/api/scans", json=body(f"s{i}"))).json()["scan_id"]
                    for i in range(16)
                ]
                async with asyncio.timeout(20):
                    while (await stack.client.get("/api/queue/stats")).json()["completed"] < 12:
                        await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
                stats = (await stack.client.get("/api/queue/stats")).json()
                waiting = [
                    sid
                    for sid in ids
                    if (await stack.client.get(f"/api/scans/{sid}/status")).json()["progress"][
                        "stage"
                    ]
                    == "waiting"
                ]
                accepted = emulator.ok_count
        finally:
            for proc in procs:
                stop(proc)
    assert emulator.rejected == 0, "the API never had to refuse a call"
    assert accepted == 12
    assert stats["completed"] == 12
    assert len(waiting) == 4
    assert stats["limiter"]["requests_last_minute"] == 12
    assert stats["limiter"]["requests_per_minute_limit"] == 12
    events = await events_of(redis, settings, waiting[0])
    # Held by the limit, or by the pause the 12th answer's headers set (requests
    # remaining: 0), whichever came first: either way the event says requests.
    assert any(
        e.progress.stage == "waiting"
        and (
            "(requests per minute)" in e.progress.message
            or "(paused: API reports requests spent until reset)" in e.progress.message
        )
        for e in events
    )


async def test_429_pauses_the_whole_fleet(make_settings: SettingsFactory) -> None:
    """One 429 with retry-after stops every worker's calls until it has passed."""
    async with run_emulator() as emulator:
        settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-429"),
            anthropic_base_url=emulator.base_url,
            worker_concurrency=2,
            retry_base_s=0.01,
            retry_cap_s=0.05,
        )
        emulator.fail_next(1, 429, retry_after=1.5)
        async with running_stack(settings, analyzers=2) as stack:
            first = (await stack.client.post("/api/scans", json=body("first"))).json()
            async with asyncio.timeout(5):
                while emulator.faults == 0:
                    await asyncio.sleep(0.01)
            refused_at = time.monotonic()
            seen = len(emulator.requests)
            others = [
                (await stack.client.post("/api/scans", json=body(f"o{i}"))).json() for i in range(4)
            ]
            await asyncio.sleep(1.0)
            during = len(emulator.requests) - seen
            stats = (await stack.client.get("/api/queue/stats")).json()
            for scan in [first, *others]:
                assert (await stack.wait_terminal(scan["scan_id"]))["state"] == "completed"
            finished = time.monotonic() - refused_at
    assert during == 0, "no replica called the API during the pause"
    assert stats["limiter"] is None or stats["limiter"]["paused_until"]
    assert finished >= 1.4


async def test_tenant_cap_keeps_one_seller_from_starving_others(
    make_settings: SettingsFactory,
) -> None:
    """With SCAN_TENANT_MAX_ACTIVE=1, tenant A's bulk upload leaves room for tenant B."""
    settings = make_settings(worker_concurrency=4, tenant_max_active=1)
    backend = ScriptedBackend(settings, delay_s=0.3)
    async with running_stack(settings, backend=backend) as stack:
        bulk = [
            (await stack.client.post("/api/scans", json=body(f"A-{i}", tenant="a"))).json()
            for i in range(5)
        ]
        other = (await stack.client.post("/api/scans", json=body("B-1", tenant="b"))).json()
        await asyncio.sleep(0.1)
        stats = (await stack.client.get("/api/queue/stats")).json()
        done_b = await stack.wait_terminal(other["scan_id"])
        states_a = [
            (await stack.client.get(f"/api/scans/{s['scan_id']}/status")).json()["state"]
            for s in bulk
        ]
        for scan in bulk:
            assert (await stack.wait_terminal(scan["scan_id"]))["state"] == "completed"
        final = (await stack.client.get("/api/queue/stats")).json()
    assert done_b["state"] == "completed"
    assert backend.max_running["A"] == 1
    assert states_a.count("completed") <= 2, "B did not wait behind A's whole batch"
    assert stats["active_by_tenant"] == {"a": 1, "b": 1}
    assert final["active_by_tenant"] == {}


async def test_reservation_counts_until_sent_then_one_window_from_sending(
    make_settings: SettingsFactory,
) -> None:
    """Pending, a reservation holds its slot past a window; sent, it frees one window later."""
    settings = make_settings(anthropic_rpm=1, anthropic_input_tpm=5000)
    redis = connect(settings)
    limiter = RateLimiter(ScriptRunner(redis), Keys(settings.prefix), settings, window_ms=1000)

    async def call() -> tuple[Decision, Decision]:
        granted = await limiter.try_acquire(4000, 10)
        await asyncio.sleep(1.2)  # longer than the window before the request leaves
        still_pending = await limiter.try_acquire(10, 10)
        await mark_sent()
        assert granted.reservation is not None
        await limiter.settle(granted.reservation, Usage(input_tokens=500, output_tokens=10))
        return granted, still_pending

    granted, still_pending = await asyncio.create_task(call())
    after_send = await limiter.try_acquire(10, 10)
    await asyncio.sleep(after_send.wait_ms / 1000)
    next_window = await limiter.try_acquire(4000, 10)
    await redis.aclose()
    assert granted.wait_ms == 0
    assert still_pending.reason == "requests per minute"
    # Counted from the send (plus the margin for its way to the API), not the reservation.
    counted = 1000 + limiter.send_margin_ms
    assert after_send.reason == "requests per minute"
    assert counted - 150 < after_send.wait_ms <= counted + 1
    # The settled tokens (500, not the 4000 reserved) were moved to the send second.
    assert next_window.wait_ms == 0


async def test_limit_holds_as_the_api_counts_when_first_calls_leave_late(
    make_settings: SettingsFactory,
) -> None:
    """Fresh replicas whose first call leaves long after its reservation: no window of the
    API (the emulator, with the minute shrunk to 1.5 s) ever sees more calls than the limit."""
    window_s, rpm, replicas, calls = 1.5, 3, 3, 3
    async with run_emulator(rpm_limit=rpm, rpm_window_s=window_s) as emulator:
        settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-window"),
            anthropic_base_url=emulator.base_url,
            anthropic_rpm=rpm,
        )
        request = AnalysisRequest(
            image=PNG,
            media_type="image/png",
            image_tokens=100,
            category="toys",
            marketplaces=["US"],
            product_name="Lamp",
        )

        async def report(stage: Stage, percentage: int, message: str) -> None:
            pass  # progress is not what this test watches

        async def replica() -> None:
            redis = connect(settings)
            limiter = RateLimiter(
                ScriptRunner(redis),
                Keys(settings.prefix),
                settings,
                window_ms=int(window_s * 1000),
            )
            backend = ClaudeBackend(settings)
            try:
                for i in range(calls):
                    while (decision := await limiter.try_acquire(1000, 100)).reservation is None:
                        await asyncio.sleep(decision.wait_ms / 1000)
                    if i == 0:
                        await asyncio.sleep(0.8)  # a fresh process: client, image preparation
                    await backend.analyze(request, report)
            finally:
                await backend.aclose()
                await redis.aclose()

        await asyncio.gather(*(replica() for _ in range(replicas)))
    arrivals = sorted(emulator.arrived_at)
    busiest = max(sum(1 for t in arrivals if start <= t < start + window_s) for start in arrivals)
    assert len(arrivals) == replicas * calls
    assert emulator.rejected == 0, "the API never had to refuse a call"
    assert busiest <= rpm
