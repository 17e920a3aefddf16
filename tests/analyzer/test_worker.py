"""Analyzer workers against a real Valkey: stages, sharing work, failures, poison entries."""

from __future__ import annotations

import asyncio
import base64
import collections

import msgspec
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.keys import GROUP, Keys
from shared.schemas import ScanEvent
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.servers import serve
from tests.support.stack import running_stack, worker_task

PNG = label_png()


def body(**overrides: object) -> dict[str, object]:
    """A valid scan request with an uploaded image."""
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "electronics",
        "marketplaces": ["US", "FR"],
        "product_name": "Lamp",
        **overrides,
    }


async def events_of(redis: Redis, settings: Settings, scan_id: str) -> list[ScanEvent]:
    """The scan's event history as published."""
    raw = await redis.xrange(Keys(settings.prefix).scan_events(scan_id))
    return [msgspec.json.decode(fields[b"event"], type=ScanEvent) for _, fields in raw]


async def test_scan_runs_through_every_stage(settings: Settings, redis: Redis) -> None:
    """A scan goes queued → fetching → analyzing → parsing → completed, with its result."""
    async with running_stack(settings) as stack:
        scan_id = (await stack.client.post("/api/scans", json=body())).json()["scan_id"]
        detail = await stack.wait_terminal(scan_id)
    assert detail["state"] == "completed"
    assert detail["attempts"] == 1
    result = detail["result"]
    assert isinstance(result, dict)
    assert result["backend"] == "simulated"
    assert [m["marketplace"] for m in result["analysis"]["marketplaces"]] == ["US", "FR"]
    events = await events_of(redis, settings, scan_id)
    assert [(e.type, e.progress.stage, e.progress.percentage) for e in events] == [
        ("queued", "queued", 0),
        ("progress", "fetching", 10),
        ("progress", "analyzing", 30),
        ("progress", "parsing", 90),
        ("completed", "completed", 100),
    ]
    assert [e.attempt for e in events] == [0, 1, 1, 1, 1]
    assert events[-1].verdict == "needs_review"
    keys = Keys(settings.prefix)
    assert await redis.xlen(keys.requests("normal")) == 0, "acknowledged entries are deleted"
    assert await redis.exists(keys.image(scan_id)) == 0, "image dropped once completed"
    assert await redis.xpending(keys.requests("normal"), GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_two_analyzers_share_work_without_duplicates(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Two consumers split 40 scans; each scan completes once with one attempt."""
    settings = make_settings(simulated_delay_ms=20, worker_concurrency=2)
    async with running_stack(settings, analyzers=2) as stack:
        ids = [
            (await stack.client.post("/api/scans", json=body())).json()["scan_id"]
            for _ in range(40)
        ]
        details = [await stack.wait_terminal(i) for i in ids]
        processed = [w.processed for w in stack.workers]
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert all(d["state"] == "completed" and d["attempts"] == 1 for d in details)
    assert all(p > 0 for p in processed), processed
    assert sum(processed) == 40
    counts = collections.Counter()
    for _, fields in await redis.xrange(Keys(settings.prefix).events):
        event = msgspec.json.decode(fields[b"event"], type=ScanEvent)
        if event.type == "completed":
            counts[event.scan_id] += 1
    assert counts == dict.fromkeys(ids, 1)
    assert stats["completed"] == 40
    assert stats["waiting"] == 0
    assert stats["active"] == 0


async def test_stats_show_active_and_waiting(make_settings: SettingsFactory) -> None:
    """While one slot is busy, stats show one active and the rest waiting."""
    settings = make_settings(simulated_delay_ms=400, worker_concurrency=1)
    async with running_stack(settings) as stack:
        ids = [
            (await stack.client.post("/api/scans", json=body())).json()["scan_id"] for _ in range(3)
        ]
        await asyncio.sleep(0.2)
        stats = (await stack.client.get("/api/queue/stats")).json()
        assert (stats["active"], stats["waiting"], stats["consumers"]) == (1, 2, 1)
        for scan_id in ids:
            await stack.wait_terminal(scan_id)


async def test_image_url_is_fetched(settings: Settings) -> None:
    """An image_url scan downloads the image in the analyzer and completes."""

    async def image(request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async with (
        serve(Starlette(routes=[Route("/label.png", image)])) as origin,
        running_stack(settings) as stack,
    ):
        request = body(image_url=f"{origin.url}/label.png")
        del request["image_base64"]
        scan_id = (await stack.client.post("/api/scans", json=request)).json()["scan_id"]
        detail = await stack.wait_terminal(scan_id)
    assert detail["state"] == "completed"


async def test_unfetchable_image_fails_with_reason(settings: Settings, redis: Redis) -> None:
    """A 404 image_url ends the scan failed, with an invalid_image error and event."""

    async def missing(request: Request) -> Response:
        return Response("gone", status_code=404)

    async with (
        serve(Starlette(routes=[Route("/label.png", missing)])) as origin,
        running_stack(settings) as stack,
    ):
        request = body(image_url=f"{origin.url}/label.png")
        del request["image_base64"]
        scan_id = (await stack.client.post("/api/scans", json=request)).json()["scan_id"]
        detail = await stack.wait_terminal(scan_id)
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert detail["state"] == "failed"
    assert detail["error"] == {
        "kind": "invalid_image",
        "message": "image_url answered 404",
        "retryable": False,
    }
    assert stats["failed"] == 1
    events = await events_of(redis, settings, scan_id)
    assert events[-1].type == "failed"
    assert events[-1].error is not None


async def test_poison_entry_is_dead_lettered(settings: Settings, redis: Redis) -> None:
    """An undecodable entry goes to the dead-letter stream; good scans keep flowing."""
    keys = Keys(settings.prefix)
    async with running_stack(settings) as stack:
        await redis.xadd(keys.requests("normal"), {"scan_id": "x", "job": b"\xff{garbage"})
        scan_id = (await stack.client.post("/api/scans", json=body())).json()["scan_id"]
        assert (await stack.wait_terminal(scan_id))["state"] == "completed"
    dead = await redis.xrange(keys.dead)
    assert len(dead) == 1
    assert b"undecodable" in dead[0][1][b"reason"]
    assert await redis.xlen(keys.requests("normal")) == 0


async def test_worker_stops_cleanly_when_idle(settings: Settings) -> None:
    """stop() returns promptly from an idle blocking read."""
    async with worker_task(settings) as worker:
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
    assert worker.processed == 0
    assert loop.time() - started < 2.5


async def test_large_image_is_prepared_before_analysis(settings: Settings) -> None:
    """The backend gets the label downscaled to 1568 px, and the result says what was sent."""
    big = label_png(size=(3136, 1000))
    async with running_stack(settings) as stack:
        accepted = await stack.client.post(
            "/api/scans", json=body(image_base64=base64.b64encode(big).decode())
        )
        detail = await stack.wait_terminal(accepted.json()["scan_id"])
    assert detail["state"] == "completed"
    result = detail["result"]
    assert isinstance(result, dict)
    sent = result["image"]
    assert (sent["width"], sent["height"]) == (1568, 500)
    assert sent["token_estimate"] == 1046  # ceil(1568 * 500 / 750), Anthropic's formula
    assert sent["media_type"] in {"image/png", "image/jpeg"}
    assert 0 < sent["bytes"] <= 5 * 1024 * 1024 * 3 // 4
