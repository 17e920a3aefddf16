"""Low-priority Claude scans in provider Message Batches, against the emulated API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from analyzer import metrics
from analyzer.backends import AnalysisRequest
from analyzer.backends.claude import ClaudeBackend
from gateway.app import create_app as create_gateway
from shared.embedded import free_port
from shared.keys import GROUP, Keys
from shared.schemas import ScanEvent, Usage
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import MessagesEmulator, run_emulator
from tests.support.images import label_png
from tests.support.processes import spawn, stop, wait_http, wait_log
from tests.support.redis import completed_events
from tests.support.servers import serve
from tests.support.stack import running_stack, worker_task

PNG = label_png()
MODEL = "claude-sonnet-4-6"


def body(priority: str = "low", name: str = "Blocks") -> dict[str, object]:
    """A scan request of ``priority``."""
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "toys",
        "marketplaces": ["US", "DE"],
        "product_name": name,
        "priority": priority,
    }


@pytest.fixture
async def emulator() -> AsyncIterator[MessagesEmulator]:
    """The emulated Messages API, batches ending half a second after creation."""
    async with run_emulator(batch_delay_s=0.5) as running:
        yield running


def batch_settings(
    make_settings: SettingsFactory, emulator: MessagesEmulator, **more: Any
) -> Settings:
    """Claude against the emulator, low priority in batches that poll fast."""
    options: dict[str, Any] = {
        "analyzer_backend": "claude",
        "anthropic_api_key": Secret("sk-test"),
        "anthropic_base_url": emulator.base_url,
        "anthropic_model": MODEL,
        "anthropic_batch_low_priority": True,
        "anthropic_batch_max": 100,
        "anthropic_batch_window_s": 1.0,
        "anthropic_batch_poll_s": 0.1,
        "anthropic_batch_poll_max_s": 0.5,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.2,
    }
    options.update(more)
    return make_settings(**options)


async def post(client: httpx.AsyncClient, priority: str = "low") -> str:
    """Submit a scan; its id."""
    response = await client.post("/api/scans", json=body(priority))
    assert response.status_code == 202, response.text
    scan_id: str = response.json()["scan_id"]
    return scan_id


async def wait_all(
    client: httpx.AsyncClient, ids: list[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Each scan's detail once it has ended."""
    out: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout):
        for scan_id in ids:
            while True:
                detail = (await client.get(f"/api/scans/{scan_id}")).json()
                if detail["state"] in ("completed", "failed", "cancelled"):
                    out[scan_id] = detail
                    break
                await asyncio.sleep(0.05)
    return out


async def history(redis: Redis, settings: Settings, scan_id: str) -> list[ScanEvent]:
    """The scan's events as published."""
    raw = await redis.xrange(Keys(settings.prefix, settings.partitions).scan_events(scan_id))
    return [msgspec.json.decode(fields[b"event"], type=ScanEvent) for _, fields in raw]


def cost_total() -> float:
    """What the analyzer's cost counter holds for the test model."""
    return float(metrics.COST.labels(MODEL)._value.get())


async def test_emulated_batches_api_answers_the_sdk_in_the_documented_shapes(
    settings: Settings, emulator: MessagesEmulator
) -> None:
    """The emulation speaks the real SDK: create, retrieve, cancel, JSONL results (succeeded,
    errored for invalid params, canceled), 400 for a bad custom_id, 404 for an unknown id."""
    params = ClaudeBackend(
        msgspec.structs.replace(settings, anthropic_api_key=Secret("sk-test"))
    ).params(
        AnalysisRequest(
            image=PNG,
            media_type="image/png",
            category="toys",
            marketplaces=["US"],
            product_name="Blocks",
        )
    )
    client = anthropic.AsyncAnthropic(api_key="sk-test", base_url=emulator.base_url)
    batches = client.messages.batches
    try:
        emulator.batch_delay_s = 60
        slow = await batches.create(requests=[{"custom_id": "a", "params": params}])
        assert slow.processing_status == "in_progress" and slow.results_url is None
        assert slow.request_counts.processing == 1
        assert (await batches.cancel(slow.id)).processing_status == "canceling"
        ended = await batches.retrieve(slow.id)
        assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
        assert [r.result.type async for r in await batches.results(slow.id)] == ["canceled"]

        emulator.batch_delay_s = 0
        broken = {**params, "max_tokens": 0}
        made = await batches.create(
            requests=[{"custom_id": "ok", "params": params}, {"custom_id": "bad", "params": broken}]
        )
        assert (await batches.retrieve(made.id)).request_counts.errored == 1
        results = {r.custom_id: r.result async for r in await batches.results(made.id)}
        ok, bad = results["ok"], results["bad"]
        assert ok.type == "succeeded" and ok.message.usage.output_tokens > 0
        assert bad.type == "errored" and bad.error.error.type == "invalid_request_error"
        with pytest.raises(anthropic.BadRequestError):
            await batches.create(requests=[{"custom_id": "not ok!", "params": params}])
        with pytest.raises(anthropic.NotFoundError):
            await batches.retrieve("msgbatch_unknown")
    finally:
        await client.close()


async def test_low_priority_scans_go_in_one_batch_at_half_price(
    make_settings: SettingsFactory, emulator: MessagesEmulator, redis: Redis
) -> None:
    """Six low-priority scans on two worker slots: one batch of six, no Messages calls for
    them, results validated and marked `batch`, usage recorded, the cost counted at half
    the price the same scan costs at normal priority; high and normal ones call /v1/messages."""
    settings = batch_settings(make_settings, emulator, worker_concurrency=2)
    async with running_stack(settings) as stack:
        # One after the other: the second reads the prompt cache the first wrote.
        done_urgent = await wait_all(stack.client, [await post(stack.client, "high")])
        done_urgent |= await wait_all(stack.client, [await post(stack.client, "normal")])
        urgent = list(done_urgent)
        before = cost_total()
        low = [await post(stack.client) for _ in range(6)]
        done_low = await wait_all(stack.client, low)
        batched_cost = cost_total() - before

    [batch] = emulator.batches.values()
    assert sorted(custom_id for custom_id, _ in batch.requests) == sorted(low)
    assert len(emulator.requests) == 2, "only the high and normal scans called /v1/messages"
    assert all(emulator.batch_requests[i] == 1 for i in low)
    # Each batch entry is the request a single call sends.
    single = emulator.requests[1]
    assert all(params == single for _, params in batch.requests)

    normal = done_urgent[urgent[1]]["result"]
    assert normal["batch"] is False and normal["usage"]["cache_read_input_tokens"] > 0
    for scan_id in low:
        detail = done_low[scan_id]
        assert detail["state"] == "completed" and detail["attempts"] == 1
        result = detail["result"]
        assert result["batch"] is True
        assert [m["marketplace"] for m in result["analysis"]["marketplaces"]] == ["US", "DE"]
        assert result["usage"]["output_tokens"] > 0
        assert result["usage"] == normal["usage"], "the same scan reports the same usage"
        stages = [e.progress.stage for e in await history(redis, settings, scan_id)]
        assert stages.count("batched") == 2  # collected, then in the provider's batch
        assert stages[-2:] == ["parsing", "completed"]  # published by the one last write
        events = await history(redis, settings, scan_id)
        sent = next(e for e in events if batch.id in e.progress.message)
        assert "half price" in sent.progress.message
    list_price = metrics.cost_usd(settings, MODEL, msgspec.convert(normal["usage"], Usage))
    assert list_price > 0
    assert batched_cost == pytest.approx(6 * list_price / 2)
    assert await completed_events(redis, Keys(settings.prefix)) == dict.fromkeys(urgent + low, 1)
    assert await redis.zcard(Keys(settings.prefix).msgbatch_leases) == 0, "no batch left open"


async def test_errored_expired_and_invalid_requests_take_the_retry_path(
    make_settings: SettingsFactory, emulator: MessagesEmulator, redis: Redis
) -> None:
    """An overloaded, expired or canceled batch request is retried in a later batch and
    completes; an invalid one is dead-lettered with its reason. Scans of two partitions
    share a batch."""
    settings = batch_settings(make_settings, emulator, partitions=2)
    keys = Keys(settings.prefix, settings.partitions)
    fates: dict[str, dict[int, str]] = {}
    emulator.batch_outcome = lambda custom_id, n: fates.get(custom_id, {}).get(n)
    async with running_stack(settings) as stack:
        overloaded, expired, canceled, invalid = [await post(stack.client) for _ in range(4)]
        fine = [await post(stack.client)]
        while len({keys.of_scan(i).index for i in [overloaded, expired, invalid, *fine]}) < 2:
            fine.append(await post(stack.client))  # until both partitions have one
        fates[overloaded] = {1: "errored:overloaded_error"}
        fates[expired] = {1: "expired"}
        fates[canceled] = {1: "canceled"}
        fates[invalid] = {1: "errored:invalid_request_error"}
        done = await wait_all(stack.client, [overloaded, expired, canceled, invalid, *fine])
        dead = (await stack.client.get("/api/dead")).json()["items"]

    for scan_id in (overloaded, expired, canceled):
        assert done[scan_id]["state"] == "completed"
        assert done[scan_id]["attempts"] == 2
        assert done[scan_id]["result"]["batch"] is True
        assert emulator.batch_requests[scan_id] == 2
        assert emulator.batch_succeeded[scan_id] == 1
    assert all(done[i]["state"] == "completed" and done[i]["attempts"] == 1 for i in fine)
    failed = done[invalid]
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert failed["error"]["retryable"] is False
    assert "invalid_request_error" in failed["error"]["message"]
    assert [d["scan_id"] for d in dead] == [invalid]
    assert len(emulator.requests) == 0, "nothing went to /v1/messages"
    first = next(iter(emulator.batches.values()))
    assert len({keys.of_scan(c).index for c, _ in first.requests}) == 2
    assert await completed_events(redis, keys) == dict.fromkeys(
        [overloaded, expired, canceled, *fine], 1
    )


async def test_a_batched_answer_is_validated_like_a_single_one(
    make_settings: SettingsFactory, emulator: MessagesEmulator
) -> None:
    """An answer from a batch that does not match the result schema takes the single call's
    path: tried once more (in the next batch), then failed with the reason."""
    settings = batch_settings(make_settings, emulator, anthropic_batch_window_s=0.2)
    emulator.answer = '{"verdict": "compliant"}'
    async with running_stack(settings) as stack:
        scan_id = await post(stack.client)
        [failed] = (await wait_all(stack.client, [scan_id])).values()
    assert failed["state"] == "failed" and failed["attempts"] == 2
    assert failed["error"]["kind"] == "invalid_answer"
    assert "does not match the result schema" in failed["error"]["message"]
    assert "provider batch msgbatch_emu_" in failed["error"]["message"]
    assert emulator.batch_requests[scan_id] == 2


async def test_a_failed_batch_create_is_retried_and_counted_by_the_rate_limiter(
    make_settings: SettingsFactory, emulator: MessagesEmulator, redis: Redis
) -> None:
    """A batch create refused with 529 makes nothing: its scans are retried, go out in the
    next batch and complete once; each create call counts one request against ANTHROPIC_RPM
    (the polls do not: they are cheap reads of the Message Batches API's own budget)."""
    settings = batch_settings(
        make_settings, emulator, anthropic_batch_window_s=0.3, anthropic_rpm=1000
    )
    emulator.fail_next_batch(1, 529)
    async with running_stack(settings) as stack:
        ids = [await post(stack.client) for _ in range(3)]
        done = await wait_all(stack.client, ids)
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert all(d["state"] == "completed" and d["attempts"] == 2 for d in done.values())
    assert emulator.batch_creates == 2 and len(emulator.batches) == 1
    assert all(emulator.batch_succeeded[i] == 1 for i in ids)
    assert stats["limiter"]["requests_last_minute"] == 2
    retried = [e for e in await history(redis, settings, ids[0]) if e.type == "retrying"]
    assert retried and "overloaded_error" in (retried[0].error.message if retried[0].error else "")


async def test_a_scan_cancelled_in_a_batch_stays_cancelled(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Cancelling a scan whose request is out in a batch wins: the batch's answer is dropped."""
    async with run_emulator(batch_delay_s=2.0) as emulator:
        settings = batch_settings(make_settings, emulator, anthropic_batch_window_s=0.2)
        async with running_stack(settings) as stack:
            kept, cancelled = await post(stack.client), await post(stack.client)
            async with asyncio.timeout(10):
                while not emulator.batches:
                    await asyncio.sleep(0.05)
            assert (await stack.client.delete(f"/api/scans/{cancelled}")).status_code == 200
            done = await wait_all(stack.client, [kept, cancelled])
    assert done[kept]["state"] == "completed"
    assert done[cancelled]["state"] == "cancelled"
    assert await completed_events(redis, Keys(settings.prefix)) == {kept: 1}


async def test_a_stopping_analyzer_hands_back_what_it_collected(
    make_settings: SettingsFactory, emulator: MessagesEmulator, redis: Redis
) -> None:
    """Scans collected for a batch not yet sent go back to the queue when the analyzer
    stops; the next analyzer sends them, once each."""
    slow = batch_settings(make_settings, emulator, anthropic_batch_window_s=120)
    keys = Keys(slow.prefix)
    async with (
        serve(create_gateway(slow)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
    ):
        async with worker_task(slow):
            ids = [await post(client) for _ in range(3)]

            async def collected() -> bool:
                last = [(await history(redis, slow, i))[-1].progress.stage for i in ids]
                return await redis.zcard(keys.msgbatch_leases) == 1 and last == ["batched"] * 3

            await _wait_for(collected)
        states = [(await client.get(f"/api/scans/{i}")).json()["state"] for i in ids]
        assert states == ["queued"] * 3
        assert await redis.zcard(keys.msgbatch_leases) == 0
        assert emulator.batch_creates == 0
        fast = msgspec.structs.replace(slow, anthropic_batch_window_s=0.2)
        async with worker_task(fast):
            done = await wait_all(client, ids)
    assert all(d["state"] == "completed" and d["attempts"] == 2 for d in done.values())
    assert all(emulator.batch_requests[i] == 1 for i in ids)


async def test_a_stopping_analyzer_lets_another_poll_its_batch_at_once(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """An analyzer stopped while its batch is out releases the lease: the next analyzer
    polls that batch long before the lease would have lapsed, and nothing is sent again."""
    async with run_emulator(batch_delay_s=1.0) as emulator:
        settings = batch_settings(
            make_settings, emulator, anthropic_batch_window_s=0.2, anthropic_batch_lease_s=60
        )
        keys = Keys(settings.prefix)
        async with (
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            async with worker_task(settings):
                ids = [await post(client) for _ in range(2)]

                async def sent() -> bool:
                    return bool(emulator.batches) and all(
                        any("In provider batch" in e.progress.message for e in events)
                        for events in [await history(redis, settings, i) for i in ids]
                    )

                await _wait_for(sent)
            [(_, lease)] = await redis.zrange(keys.msgbatch_leases, 0, -1, withscores=True)
            assert lease == 0, "released, not left to lapse"
            async with worker_task(settings):
                done = await wait_all(client, ids, timeout=15)
    assert all(d["state"] == "completed" and d["attempts"] == 1 for d in done.values())
    assert len(emulator.batches) == 1
    assert all(emulator.batch_requests[i] == 1 for i in ids)


async def _wait_for(check: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


BATCH_ENV = {
    "ANTHROPIC_BATCH_LOW_PRIORITY": "on",
    "ANTHROPIC_BATCH_POLL": "0.2",
    "ANTHROPIC_BATCH_POLL_MAX": "0.5",
    "ANTHROPIC_BATCH_LEASE": "1.5",
}


@contextlib.asynccontextmanager
async def takeover(
    settings: Settings, **env: str
) -> AsyncIterator[Callable[..., Awaitable[subprocess.Popen[bytes]]]]:
    """A healthy analyzer (with ``env``), and ``succeed(**heir_env)`` that kills it with
    SIGKILL and starts its heir; both are stopped at the end."""
    port = free_port()
    procs = [spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(port), **env)]

    async def succeed(log: Path | None = None, **heir_env: str) -> subprocess.Popen[bytes]:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        heir = spawn(
            "analyzer", settings, ANALYZER_HEALTH_PORT=str(free_port()), log=log, **heir_env
        )
        procs.append(heir)
        return heir

    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", procs[0])
        yield succeed
    finally:
        for proc in procs:
            stop(proc)


async def test_kill_9_of_the_analyzer_polling_a_batch(
    make_settings: SettingsFactory, redis: Redis, tmp_path: Path
) -> None:
    """kill -9 the analyzer whose batch is out: another takes the batch over by its id in
    Redis and finishes every scan once; no request is sent twice."""
    async with run_emulator(batch_delay_s=4.0) as emulator:
        settings = batch_settings(make_settings, emulator)
        keys = Keys(settings.prefix)
        env = {**BATCH_ENV, "ANTHROPIC_BATCH_WINDOW": "0.5"}
        async with (
            takeover(settings, **env) as succeed,
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            ids = [await post(client) for _ in range(5)]

            async def batch_out() -> bool:
                records = await redis.zrange(keys.msgbatch_leases, 0, -1)
                return len(records) == 1 and bool(
                    await redis.hget(keys.msgbatch(records[0].decode()), "batch_id")
                )

            await _wait_for(batch_out)
            [created] = emulator.batches
            heir = await succeed(log=tmp_path / "heir.log", **env)
            done = await wait_all(client, ids, timeout=40)
            took = await asyncio.to_thread(
                wait_log, tmp_path / "heir.log", heir, lambda e: "took over" in e["event"]
            )
    assert all(d["state"] == "completed" and d["attempts"] == 1 for d in done.values())
    assert all(d["result"]["batch"] is True for d in done.values())
    assert took["batch_id"] == created and took["scans"] == 5
    assert len(emulator.batches) == 1
    assert all(emulator.batch_requests[i] == 1 for i in ids), "no request was sent twice"
    assert emulator.requests == []
    assert await completed_events(redis, keys) == dict.fromkeys(ids, 1)
    assert (await redis.xpending(keys.requests("low"), GROUP))["pending"] == 0
    assert await redis.zcard(keys.msgbatch_leases) == 0


async def test_kill_9_while_collecting_hands_the_scans_back(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """kill -9 the analyzer that collected scans but has not sent them: another hands them
    back to the queue, sends them itself, and each is analysed once."""
    async with run_emulator(batch_delay_s=0.3) as emulator:
        settings = batch_settings(make_settings, emulator)
        keys = Keys(settings.prefix)
        # A long window: the victim is killed while it waits for more scans.
        async with (
            takeover(settings, **{**BATCH_ENV, "ANTHROPIC_BATCH_WINDOW": "120"}) as succeed,
            serve(create_gateway(settings)) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as client,
        ):
            ids = [await post(client) for _ in range(4)]

            async def all_collected() -> bool:
                stages = [
                    [e.progress.stage for e in await history(redis, settings, i)] for i in ids
                ]
                return all("batched" in s for s in stages)

            await _wait_for(all_collected)
            await succeed(**{**BATCH_ENV, "ANTHROPIC_BATCH_WINDOW": "0.3"})
            done = await wait_all(client, ids, timeout=40)
    assert all(d["state"] == "completed" for d in done.values())
    assert all(d["result"]["batch"] is True for d in done.values())
    assert all(emulator.batch_requests[i] == 1 for i in ids), "no request was sent twice"
    assert emulator.requests == []
    assert await completed_events(redis, keys) == dict.fromkeys(ids, 1)
    assert await redis.zcard(keys.msgbatch_leases) == 0
