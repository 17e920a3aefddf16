"""Retries, dead letters, cancellation, idempotency, drain and reclaim, against real Valkey."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from analyzer.attempts import AttemptStore, Claim
from shared.connection import connect
from shared.errors import BackendError, BackendUnavailableError, InvalidAnswerError
from shared.keys import GROUP, Keys
from shared.schemas import Progress, ScanEvent, ScanJob
from shared.settings import Settings
from shared.store import ScanStore
from tests.conftest import SettingsFactory
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.stack import running_stack, worker_task

PNG = label_png()
FAST_RETRY = {"retry_base_s": 0.05, "retry_cap_s": 0.2}


def body(name: str = "Lamp") -> dict[str, object]:
    """A valid scan request whose product name scripts the backend."""
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "electronics",
        "marketplaces": ["US"],
        "product_name": name,
    }


async def post(client: httpx.AsyncClient, name: str = "Lamp") -> str:
    """Post a scan, return its id."""
    response = await client.post("/api/scans", json=body(name))
    assert response.status_code == 202, response.text
    scan_id: str = response.json()["scan_id"]
    return scan_id


async def events_of(redis: Redis, settings: Settings, scan_id: str) -> list[ScanEvent]:
    """The scan's event history as published."""
    raw = await redis.xrange(Keys(settings.prefix).scan_events(scan_id))
    return [msgspec.json.decode(fields[b"event"], type=ScanEvent) for _, fields in raw]


async def wait_state(
    client: httpx.AsyncClient, scan_id: str, state: str, timeout: float = 10.0
) -> dict[str, object]:
    """Poll until the scan is in ``state``."""
    async with asyncio.timeout(timeout):
        while True:
            detail: dict[str, object] = (await client.get(f"/api/scans/{scan_id}")).json()
            if detail["state"] == state:
                return detail
            await asyncio.sleep(0.01)


async def test_retryable_failure_retries_then_completes(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A 429-like failure is retried with backoff; the scan shows `retrying` and then completes."""
    settings = make_settings(retry_base_s=0.3, retry_cap_s=0.3)
    backend = ScriptedBackend(
        settings,
        errors=lambda name, n: (
            BackendUnavailableError("rate limited", retry_after=0.4) if n <= 2 else None
        ),
    )
    async with running_stack(settings, backend=backend) as stack:
        scan_id = await post(stack.client)
        retrying = await wait_state(stack.client, scan_id, "retrying")
        detail = await stack.wait_terminal(scan_id)
    assert retrying["next_attempt_at"] is not None
    assert retrying["error"] == {
        "kind": "backend_unavailable",
        "message": "rate limited",
        "retryable": True,
    }
    assert detail["state"] == "completed"
    assert detail["attempts"] == 3
    assert detail["error"] is None or detail["result"] is not None
    types = [(e.type, e.attempt) for e in await events_of(redis, settings, scan_id)]
    assert ("retrying", 1) in types and ("retrying", 2) in types
    assert types[-1] == ("completed", 3)
    assert [t for t, _ in types].count("completed") == 1


async def test_retry_after_is_honoured(make_settings: SettingsFactory) -> None:
    """The next attempt does not start before the server's retry-after."""
    settings = make_settings(retry_base_s=0.01, retry_cap_s=5)
    backend = ScriptedBackend(
        settings,
        errors=lambda name, n: (
            BackendUnavailableError("overloaded", retry_after=0.8) if n == 1 else None
        ),
    )
    async with running_stack(settings, backend=backend) as stack:
        started = time.monotonic()
        detail = await stack.wait_terminal(await post(stack.client))
    assert detail["state"] == "completed"
    assert time.monotonic() - started >= 0.8


async def test_exhausted_attempts_dead_letter_then_replay(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """After SCAN_MAX_ATTEMPTS the scan fails into dead letters; replay completes it."""
    settings = make_settings(**FAST_RETRY, max_attempts=3)
    healthy = False
    backend = ScriptedBackend(
        settings, errors=lambda name, n: None if healthy else BackendUnavailableError("down")
    )
    async with running_stack(settings, backend=backend) as stack:
        scan_id = await post(stack.client)
        failed = await stack.wait_terminal(scan_id)
        dead = (await stack.client.get("/api/dead")).json()
        conflict = await stack.client.post(f"/api/scans/{'0' * 32}/retry")
        healthy = True
        replay = await stack.client.post(f"/api/scans/{scan_id}/retry")
        done = await stack.wait_terminal(scan_id)
        again = await stack.client.post(f"/api/scans/{scan_id}/retry")
        dead_after = (await stack.client.get("/api/dead")).json()
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert failed["state"] == "failed" and failed["attempts"] == 3
    assert failed["error"]["kind"] == "backend_unavailable"  # type: ignore[index]
    [letter] = dead["items"]
    assert letter["scan_id"] == scan_id
    assert letter["attempts"] == 3
    assert len(letter["history"]) == 2  # the two retried failures before the final one
    assert conflict.status_code == 404
    assert replay.status_code == 202
    assert done["state"] == "completed" and done["attempts"] == 1
    assert again.status_code == 409
    assert dead_after["items"] == []
    assert (stats["failed"], stats["completed"]) == (0, 1)
    types = [e.type for e in await events_of(redis, settings, scan_id)]
    assert types.count("failed") == 1 and types[-1] == "completed"


async def test_permanent_failure_is_not_retried(make_settings: SettingsFactory) -> None:
    """A 4xx-like error fails at once with its class and reaches dead letters."""
    settings = make_settings(**FAST_RETRY)
    backend = ScriptedBackend(settings, errors=lambda name, n: BackendError("400 bad request"))
    async with running_stack(settings, backend=backend) as stack:
        detail = await stack.wait_terminal(await post(stack.client))
        dead = (await stack.client.get("/api/dead?count=10")).json()
        bad = await stack.client.get("/api/dead?count=0")
    assert detail["state"] == "failed" and detail["attempts"] == 1
    assert detail["error"] == {
        "kind": "backend_error",
        "message": "400 bad request",
        "retryable": False,
    }
    assert len(dead["items"]) == 1
    assert bad.status_code == 422


async def test_invalid_answer_is_retried_once(make_settings: SettingsFactory) -> None:
    """An answer that fails validation twice fails the scan."""
    settings = make_settings(**FAST_RETRY)
    backend = ScriptedBackend(settings, errors=lambda name, n: InvalidAnswerError("not JSON"))
    async with running_stack(settings, backend=backend) as stack:
        detail = await stack.wait_terminal(await post(stack.client))
    assert detail["state"] == "failed"
    assert detail["attempts"] == 2


async def test_cancel_queued_retrying_active_and_finished(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Queued and retrying scans never run again; an active one stops within a second."""
    settings = make_settings(retry_base_s=30, retry_cap_s=30, worker_concurrency=1)
    backend = ScriptedBackend(
        settings,
        delay_s=30,
        errors=lambda name, n: BackendUnavailableError("busy") if name == "flaky" else None,
    )
    backend.delay_s = 0
    async with running_stack(settings, backend=backend) as stack:
        flaky = await post(stack.client, "flaky")
        await wait_state(stack.client, flaky, "retrying")
        backend.delay_s = 30
        active = await post(stack.client, "slow")
        await wait_state(stack.client, active, "active")
        queued = await post(stack.client, "never")
        await backend.started.wait()

        started = time.monotonic()
        responses = {
            sid: await stack.client.delete(f"/api/scans/{sid}") for sid in (queued, flaky, active)
        }
        detail = await wait_state(stack.client, active, "cancelled")
        async with asyncio.timeout(1.0):
            while backend.cancelled == 0:
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        again = await stack.client.delete(f"/api/scans/{active}")
        missing = await stack.client.delete(f"/api/scans/{'f' * 32}")
        await asyncio.sleep(0.3)
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert {sid: r.json()["previous_state"] for sid, r in responses.items()} == {
        queued: "queued",
        flaky: "retrying",
        active: "active",
    }
    assert detail["progress"]["stage"] == "cancelled"  # type: ignore[index]
    assert elapsed < 1.0
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert missing.status_code == 404
    assert backend.calls.get("never") is None
    assert backend.calls["flaky"] == 1
    assert stats["cancelled"] == 3 and stats["active"] == 0 and stats["waiting"] == 0
    assert await redis.zcard(Keys(settings.prefix).delayed) == 0
    for sid in (queued, flaky, active):
        assert (await events_of(redis, settings, sid))[-1].type == "cancelled"


async def test_idempotency_key(settings: Settings, redis: Redis) -> None:
    """The same key returns the same scan (200); a different body with it is a 422."""
    async with running_stack(settings) as stack:
        headers = {"idempotency-key": "order-42"}
        first = await stack.client.post("/api/scans", json=body("A"), headers=headers)
        second = await stack.client.post("/api/scans", json=body("A"), headers=headers)
        other = await stack.client.post("/api/scans", json=body("B"), headers=headers)
        fresh = await stack.client.post(
            "/api/scans", json=body("A"), headers={"idempotency-key": "order-43"}
        )
    assert first.status_code == 202
    assert second.status_code == 200
    # The same scan, with its state as of the replay (an analyzer may have run it already).
    assert second.json()["status"] in {"queued", "active", "completed"}
    assert {**second.json(), "status": "queued"} == first.json()
    assert other.status_code == 422 and other.json()["field"] == "idempotency-key"
    assert fresh.status_code == 202 and fresh.json()["scan_id"] != first.json()["scan_id"]


async def test_stop_drains_then_hands_back(make_settings: SettingsFactory, redis: Redis) -> None:
    """On stop, short scans finish; long ones are handed back and finished by another worker."""
    settings = make_settings(shutdown_grace_s=0.5, worker_concurrency=4)
    backend = ScriptedBackend(settings, delays={"quick": 0.2, "slow": 5})
    async with running_stack(settings, analyzers=0) as stack:
        quick = [await post(stack.client, "quick") for _ in range(2)]
        slow = [await post(stack.client, "slow") for _ in range(2)]
        async with worker_task(settings, backend) as first:
            for sid in slow:
                await wait_state(stack.client, sid, "active")
            started = time.monotonic()
            first.stop()
        stop_took = time.monotonic() - started
        keys = Keys(settings.prefix)
        pending = await redis.xpending(keys.requests("normal"), GROUP)
        states = [(await stack.client.get(f"/api/scans/{s}")).json()["state"] for s in slow]
        backend.delays = {}
        async with worker_task(settings, backend):
            finished = [await stack.wait_terminal(s) for s in quick + slow]
    assert stop_took < 2.5
    assert backend.calls["quick"] == 2, "in-flight scans within the grace period finish"
    assert pending["pending"] == 0
    assert states == ["queued", "queued"]
    assert all(d["state"] == "completed" for d in finished)
    for sid in slow:
        events = await events_of(redis, settings, sid)
        assert [e.type for e in events].count("completed") == 1


async def test_stale_attempt_cannot_overwrite(settings: Settings, redis: Redis) -> None:
    """Only the attempt holding the token can finish a scan; a late one changes nothing."""
    async with running_stack(settings, analyzers=0) as stack:
        scan_id = await post(stack.client)
    keys = Keys(settings.prefix)
    client = connect(settings)
    store = AttemptStore(client, settings)
    await store.redis.xgroup_create(keys.requests("normal"), GROUP, id="0", mkstream=True)
    [[_, [(entry_id, fields)]]] = await client.xreadgroup(
        GROUP, "old", {keys.requests("normal"): ">"}, count=1
    )
    job = msgspec.json.decode(fields[b"job"], type=ScanJob)
    progress = Progress(stage="fetching", percentage=10, message="x")
    stream = keys.requests("normal")
    old = await store.claim(job, entry_id.decode(), stream, "old", progress)
    await client.xclaim(stream, GROUP, "new", 0, [entry_id])
    new = await store.claim(job, entry_id.decode(), stream, "new", progress)
    assert old is not None and new is not None and new.attempt == 2
    from shared.schemas import ScanError

    assert not await store.fail(old, ScanError(kind="x", message="late"), 10)
    assert not await store.progress(old, progress)
    assert await store.fail(new, ScanError(kind="x", message="real"), 10)
    detail = await ScanStore(client, settings).get(scan_id)
    assert detail is not None and detail.error is not None
    assert detail.error.message == "real"
    await client.aclose()


async def test_crashed_consumer_entries_are_reclaimed(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Entries pending on a consumer that died are reclaimed after the visibility timeout."""
    settings = make_settings(visibility_timeout_s=0.5)
    keys = Keys(settings.prefix)
    async with running_stack(settings, analyzers=0) as stack:
        ids = [await post(stack.client) for _ in range(3)]
        await redis.xgroup_create(keys.requests("normal"), GROUP, id="0", mkstream=True)
        # A consumer reads the entries and dies without a word.
        await redis.xreadgroup(GROUP, "dead-worker", {keys.requests("normal"): ">"}, count=10)
        async with worker_task(settings) as worker:
            details = [await stack.wait_terminal(i) for i in ids]
            reclaimed = worker.maintenance.reclaimed
    assert all(d["state"] == "completed" for d in details)
    assert reclaimed == 3


async def test_scan_that_keeps_crashing_is_dead_lettered(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A scan whose every delivery dies ends in dead letters as poison, not a crash loop."""
    settings = make_settings(visibility_timeout_s=0.3, max_attempts=2)
    keys = Keys(settings.prefix)
    stream = keys.requests("normal")
    async with running_stack(settings, analyzers=0) as stack:
        scan_id = await post(stack.client)
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        client = connect(settings)
        store = AttemptStore(client, settings)
        [[_, [(entry_id, fields)]]] = await redis.xreadgroup(GROUP, "w1", {stream: ">"}, count=1)
        job = msgspec.json.decode(fields[b"job"], type=ScanJob)
        progress = Progress(stage="fetching", percentage=10, message="x")
        for consumer in ("w1", "w2"):  # two deliveries that crashed mid-scan
            await redis.xclaim(stream, GROUP, consumer, 0, [entry_id])
            assert await store.claim(job, entry_id.decode(), stream, consumer, progress)
        await client.aclose()
        async with worker_task(settings):
            detail = await stack.wait_terminal(scan_id)
        dead = (await stack.client.get("/api/dead")).json()
    assert detail["state"] == "failed"
    assert detail["error"]["kind"] == "poison"  # type: ignore[index]
    assert dead["items"][0]["scan_id"] == scan_id


async def test_long_scan_is_renewed_not_stolen(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A scan running for several visibility timeouts keeps its claim: one attempt only."""
    settings = make_settings(visibility_timeout_s=0.4)
    backend = ScriptedBackend(settings, delay_s=1.6)
    async with running_stack(settings, analyzers=2, backend=backend) as stack:
        detail = await stack.wait_terminal(await post(stack.client, "long"))
    assert detail["state"] == "completed"
    assert detail["attempts"] == 1
    assert backend.calls["long"] == 1


async def test_health_endpoint_reports_liveness(make_settings: SettingsFactory) -> None:
    """The analyzer's /healthz is 200 while its loop turns and 503 once it stalls."""
    from shared.embedded import free_port

    port = free_port()
    settings = make_settings(analyzer_health_port=port, liveness_timeout_s=0.5)
    async with worker_task(settings) as worker, httpx.AsyncClient() as http:
        ok = await http.get(f"http://127.0.0.1:{port}/healthz")
        worker.last_turn -= 10  # as if the loop had been stuck for ten seconds
        stalled = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"


async def test_stale_attempt_outcome_is_discarded_and_logged_as_such(
    settings: Settings, redis: Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    """An attempt that lost its scan mid-call (reclaimed by another analyzer) and then
    fails retryably changes nothing and says so; it does not claim "will be retried"."""
    from analyzer.backends import Analysis, AnalysisRequest, Report
    from analyzer.fetch import ImageFetcher
    from analyzer.runner import ScanRunner

    scans = ScanStore(redis, settings)
    attempts = AttemptStore(redis, settings)
    keys = Keys(settings.prefix)
    stream = keys.requests("normal")
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    job = ScanJob(
        scan_id=scans.new_scan_id(),
        category="toys",
        marketplaces=["US"],
        product_name="Blocks",
        submitted_at_ms=1,
    )
    assert await scans.submit(job, label_png()) is None
    [[_, [(raw_id, _fields)]]] = await redis.xreadgroup(GROUP, "old", {stream: ">"}, count=1)
    entry_id = raw_id.decode()
    taken: list[object] = []

    class Overtaken:
        """While it runs, another analyzer takes the scan over; then the API fails."""

        name = "overtaken"

        async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
            await redis.xclaim(stream, GROUP, "new", 0, [entry_id])
            progress = Progress(stage="fetching", percentage=10, message="x")
            taken.append(await attempts.claim(job, entry_id, stream, "new", progress))
            raise BackendUnavailableError("overloaded")

        async def warm_up(self) -> None:
            """Nothing to load."""

        async def aclose(self) -> None:
            """Nothing to close."""

    fetcher = ImageFetcher(
        max_bytes=settings.max_image_bytes,
        timeout_s=settings.fetch_timeout_s,
        allow_http=True,
        allow_hosts=(),
        max_redirects=0,
    )
    runner = ScanRunner(attempts, Overtaken(), fetcher, settings)  # type: ignore[arg-type]
    capfd.readouterr()
    await runner.run(job, entry_id, stream, "old", 0)
    await fetcher.aclose()
    logged = capfd.readouterr().out
    record = await scans.record(job.scan_id)
    history = [f[b"event"] for _, f in await redis.xrange(keys.scan_events(job.scan_id))]
    new = taken[0]
    assert isinstance(new, Claim)
    assert record is not None and record.state == "active" and record.token == new.token
    assert not any(b'"retrying"' in event for event in history)
    assert "no longer owns the scan" in logged
    assert "will be retried" not in logged
