"""Per-scan SSE streams against a real Valkey and uvicorn: order, replay, resume, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from shared.embedded import EmbeddedValkey
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.notifier.conftest import Notifier, running_notifier
from tests.notifier.scans import OTHER_DIGITS_ID, Publisher
from tests.support.sse import Message, messages, open_stream


def pairs(events: list[Message]) -> list[tuple[str | None, str | None]]:
    """(id, data) of each event, to compare with the stored history."""
    return [(e.id, e.data) for e in events]


async def test_live_events_arrive_in_order_and_stream_closes_after_completed(
    notifier: Notifier, publisher: Publisher, settings: Settings
) -> None:
    """Every event arrives once, in order, with the stored id, type and JSON; then EOF."""
    scan_id = await publisher.submit()
    async with open_stream(notifier.client, scan_id) as stream:
        response = stream.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        first = await stream.next_message()
        assert first is not None
        assert first.retry == settings.sse_retry_ms
        queued = await stream.events(1)
        await publisher.run_to_completion(scan_id, steps=2)
        rest = await stream.rest()
    history = await publisher.history(scan_id)
    assert pairs(queued + rest) == history
    assert [e.event for e in queued + rest] == [
        "queued",
        "progress",
        "progress",
        "progress",
        "completed",
    ]


async def test_client_after_completion_gets_full_history_then_close(
    notifier: Notifier, publisher: Publisher
) -> None:
    """A finished scan replays from its history alone and the stream ends."""
    scan_id = await publisher.submit()
    await publisher.run_to_completion(scan_id, steps=3)
    async with open_stream(notifier.client, scan_id) as stream:
        events = await stream.rest()
    assert pairs(events) == await publisher.history(scan_id)
    assert events[-1].event == "completed"


@pytest.mark.parametrize("via", ["header", "query"])
async def test_last_event_id_resumes_exactly_after_it(
    notifier: Notifier, publisher: Publisher, via: str
) -> None:
    """Resuming replays only what came after the id, then live events, with no duplicates."""
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)
    await publisher.progress(claim, 40)
    await publisher.progress(claim, 60)
    history = await publisher.history(scan_id)
    resume_from = history[1][0]
    header = resume_from if via == "header" else None
    query = resume_from if via == "query" else None
    async with open_stream(notifier.client, scan_id, header, query_id=query) as stream:
        replayed = await stream.events(2)
        await publisher.progress(claim, 80)
        await publisher.complete(claim)
        live = await stream.rest()
    assert pairs(replayed + live) == (await publisher.history(scan_id))[2:]


async def test_header_wins_over_query_parameter(notifier: Notifier, publisher: Publisher) -> None:
    """A browser reconnect sends a newer Last-Event-ID than the URL it was opened with."""
    scan_id = await publisher.submit()
    await publisher.run_to_completion(scan_id, steps=2)
    history = await publisher.history(scan_id)
    async with open_stream(
        notifier.client, scan_id, history[2][0], query_id=history[0][0]
    ) as stream:
        events = await stream.rest()
    assert pairs(events) == history[3:]


async def test_resume_after_the_terminal_event_answers_204(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Nothing left to send for a finished scan: 204 makes EventSource stop reconnecting."""
    scan_id = await publisher.submit()
    await publisher.run_to_completion(scan_id, steps=1)
    last_id = (await publisher.history(scan_id))[-1][0]
    response = await notifier.client.get(
        f"/api/scans/{scan_id}/events", headers={"last-event-id": last_id}
    )
    assert response.status_code == 204


async def test_live_event_latency_is_small(notifier: Notifier, publisher: Publisher) -> None:
    """An event published while connected reaches the client within milliseconds."""
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)
    async with open_stream(notifier.client, scan_id) as stream:
        await stream.events(2)
        latencies = []
        for pct in (40, 50, 60):
            started = time.perf_counter()
            await publisher.progress(claim, pct)
            event = await stream.next_event()
            latencies.append(time.perf_counter() - started)
            assert event is not None
            assert f'"percentage":{pct}' in (event.data or "")
    # Pushed, not polled: far below the 15 s heartbeat, with room for a busy machine.
    assert max(latencies) < 1.0, latencies


async def test_two_subscribers_of_one_scan_both_get_everything(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Fan-out: both connections receive every event, then both end."""
    scan_id = await publisher.submit()
    async with (
        open_stream(notifier.client, scan_id) as a,
        open_stream(notifier.client, scan_id) as b,
    ):
        await a.events(1)
        await b.events(1)
        assert notifier.hub.stats().subscribers == 2
        await publisher.run_to_completion(scan_id, steps=3)
        got_a, got_b = await asyncio.gather(a.rest(), b.rest())
    history = await publisher.history(scan_id)
    assert pairs(a.all[1:2] + got_a) == history
    assert pairs(b.all[1:2] + got_b) == history
    assert notifier.hub.stats().subscribers == 0


async def test_heartbeat_comments_keep_an_idle_stream_alive(
    make_settings: SettingsFactory, publisher: Publisher
) -> None:
    """With nothing to send, ping comments still flow every sse_heartbeat_s."""
    settings = make_settings(sse_heartbeat_s=0.1)
    scan_id = await publisher.submit()
    async with (
        running_notifier(settings) as notifier,
        open_stream(notifier.client, scan_id) as stream,
    ):
        await stream.events(1)
        ping = await stream.next_message(within=2)
        assert ping is not None
        assert ping.data is None
        assert ping.comments and ping.comments[0].startswith("ping")


async def test_unknown_scan_is_404(notifier: Notifier) -> None:
    """A well-formed id with no hash and no history: 404 with a JSON body, no stream."""
    response = await notifier.client.get(f"/api/scans/{'a' * 32}/events")
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": "no such scan (or it has expired)",
        "field": "scan_id",
    }


@pytest.mark.parametrize("scan_id", ["nope", "A" * 32, "a" * 31, "a" * 33])
async def test_malformed_scan_id_is_404(notifier: Notifier, scan_id: str) -> None:
    """Ids that cannot exist are refused before any Redis call."""
    response = await notifier.client.get(f"/api/scans/{scan_id}/events")
    assert response.status_code == 404
    assert response.json()["field"] == "scan_id"


@pytest.mark.parametrize(
    "bad", ["abc", "1-", "-1", "1-2-3", "1", "1.5-0", "99999999999999999999-0", "0x1-0"]
)
async def test_malformed_last_event_id_is_400(
    notifier: Notifier, publisher: Publisher, bad: str
) -> None:
    """A Last-Event-ID that is not a stream id: 400 naming the field."""
    scan_id = await publisher.submit()
    for params, headers in (({}, {"last-event-id": bad}), ({"last_event_id": bad}, {})):
        response = await notifier.client.get(
            f"/api/scans/{scan_id}/events", headers=headers, params=params
        )
        assert response.status_code == 400, bad
        body = response.json()
        assert body["error"] == "bad_request"
        assert body["field"] == "Last-Event-ID"


async def test_health_and_readiness(notifier: Notifier) -> None:
    """healthz answers; readyz checks Redis and the events reader."""
    assert (await notifier.client.get("/healthz")).json() == {"status": "ok"}
    ready = await notifier.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_clients_joining_mid_flight_get_a_gapless_duplicate_free_stream(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Connections opened while events are being written each see exactly the history."""
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)

    async def produce() -> None:
        for pct in range(20, 80):
            await publisher.progress(claim, pct)
            await asyncio.sleep(0.002)
        await publisher.complete(claim)

    async def consume(delay: float, resume: bool) -> tuple[str | None, list[Message]]:
        await asyncio.sleep(delay)
        after = (await publisher.history(scan_id))[-1][0] if resume else None
        async with open_stream(notifier.client, scan_id, after) as stream:
            return after, await stream.rest()

    producer = asyncio.create_task(produce())
    results = await asyncio.gather(*(consume(i * 0.01, resume=i % 2 == 1) for i in range(16)))
    await producer
    history = await publisher.history(scan_id)
    ids = [entry_id for entry_id, _ in history]
    for after, events in results:
        start = ids.index(after) + 1 if after is not None else 0
        assert pairs(events) == history[start:]


async def test_stream_routes_keep_cors_and_method_errors(
    make_settings: SettingsFactory, publisher: Publisher
) -> None:
    """Stream routes answer CORS (preflight too) and 405 like every route."""
    origin = "http://dashboard.example"
    settings = make_settings(cors_origins=(origin,))
    scan_id = await publisher.submit()
    await publisher.run_to_completion(scan_id, steps=1)
    url = f"/api/scans/{scan_id}/events"
    async with running_notifier(settings) as notifier:
        simple = await notifier.client.get(url, headers={"origin": origin})
        async with notifier.client.stream(  # a tenant stream never ends: headers only
            "GET", "/api/events", params={"tenant": "t"}, headers={"origin": "http://evil.example"}
        ) as tenant:
            assert tenant.status_code == 200
        preflight = await notifier.client.options(
            url,
            headers={
                "origin": origin,
                "access-control-request-method": "GET",
                "access-control-request-headers": "last-event-id",
            },
        )
        wrong_method = await notifier.client.post(url)
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in tenant.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "last-event-id" in preflight.headers["access-control-allow-headers"].lower()
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_redis_down_tells_eventsource_to_come_back(
    make_settings: SettingsFactory, own_valkey: EmbeddedValkey
) -> None:
    """Redis unreachable: EventSource gets a 200 that says reconnect; other clients a 503."""
    settings = make_settings(redis_url=own_valkey.url, redis_timeout_s=1.0)
    async with running_notifier(settings) as notifier:
        own_valkey.stop()
        url = f"/api/scans/{'b' * 32}/events"
        async with notifier.client.stream(
            "GET", url, headers={"accept": "text/event-stream"}
        ) as response:
            told = [m async for m in messages(response)]
        plain = await notifier.client.get(url)
    assert response.status_code == 200
    assert [(m.event, m.data) for m in told if m.data] == [
        ("reconnect", '{"reason":"unavailable"}')
    ]
    assert told[0].retry == settings.sse_retry_ms
    assert plain.status_code == 503
    assert (plain.json()["error"], plain.headers["retry-after"]) == ("unavailable", "1")


async def test_last_event_id_in_other_digits_is_400_on_a_finished_scan(
    notifier: Notifier, publisher: Publisher
) -> None:
    """A resume point Redis would refuse is the client's mistake: 400, not a 500 or a 204."""
    scan_id = await publisher.submit()
    await publisher.run_to_completion(scan_id, steps=1)
    response = await notifier.client.get(
        f"/api/scans/{scan_id}/events",
        params={"last_event_id": OTHER_DIGITS_ID},
        headers={"accept": "text/event-stream"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "bad_request",
        "detail": "Last-Event-ID must be an event id like 1700000000000-0 (ASCII digits)",
        "field": "Last-Event-ID",
    }


async def test_stream_errors_go_through_the_apps_error_handling(
    make_settings: SettingsFactory, redis: Redis, prefix: str
) -> None:
    """Refusals carry CORS like any answer; an unexpected failure is the shared JSON 500,
    and the notifier keeps serving."""
    origin = "http://dashboard.example"
    settings = make_settings(cors_origins=(origin,))
    broken = "c" * 32
    await redis.set(Keys(prefix).scan(broken), "not a hash")  # HGET answers WRONGTYPE
    async with running_notifier(settings) as notifier:
        missing = await notifier.client.get(
            f"/api/scans/{'d' * 32}/events", headers={"origin": origin}
        )
        failed = await notifier.client.get(f"/api/scans/{broken}/events")
        wrong_method = await notifier.client.delete("/api/events")
        alive = await notifier.client.get("/healthz")
    assert (missing.status_code, missing.json()["field"]) == (404, "scan_id")
    assert missing.headers["access-control-allow-origin"] == origin
    assert failed.status_code == 500
    assert failed.json() == {
        "error": "internal_error",
        "detail": "an unexpected error; it was logged",
        "field": None,
    }
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert alive.status_code == 200
