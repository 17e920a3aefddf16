"""``GET /api/events``: every scan of the caller's tenant, resumable, reset when trimmed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from shared import tokens
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.notifier.conftest import Notifier, running_notifier
from tests.notifier.scans import OTHER_DIGITS_ID, Publisher
from tests.support.sse import EventStream, Message

EVENT_KEY = Secret("e" * 40)


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Auth on: the tenant comes from the event token, as a browser would present it."""
    return make_settings(auth=True, event_keys=(EVENT_KEY,))


def tenant_token(tenant: str) -> str:
    """A tenant-scope event token, like the gateway hands out."""
    return tokens.sign((EVENT_KEY,), "t", tenant, 300)


@contextlib.asynccontextmanager
async def open_tenant(
    client: httpx.AsyncClient,
    token: str,
    last_event_id: str | None = None,
    **params: str,
) -> AsyncIterator[EventStream]:
    """GET /api/events with ``token``; the response is closed when the block exits."""
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    async with client.stream(
        "GET", "/api/events", headers=headers, params={"token": token, **params}
    ) as response:
        assert response.status_code == 200, await response.aread()
        yield EventStream(response)


def pairs(events: list[Message]) -> list[tuple[str | None, str | None]]:
    """(id, data) of each event, to compare with the stored events."""
    return [(e.id, e.data) for e in events]


def last_id(stream: EventStream) -> str | None:
    """What EventSource would send as Last-Event-ID: the last ``id:`` of any block."""
    ids = [m.id for m in stream.all if m.id is not None]
    return ids[-1] if ids else None


async def until_completed(stream: EventStream, scan_id: str) -> list[Message]:
    """Events until ``scan_id``'s completed one (a tenant stream does not end by itself)."""
    got: list[Message] = []
    while True:
        event = await stream.next_event(within=10)
        assert event is not None, f"stream ended after {len(got)} events"
        got.append(event)
        if event.event == "completed" and json.loads(event.data or "{}")["scan_id"] == scan_id:
            return got


async def hub_caught_up(notifier: Notifier, publisher: Publisher) -> None:
    """Wait until the notifier's reader has dispatched everything written so far."""
    newest = (await publisher.events())[-1][0]
    async with asyncio.timeout(10):
        while notifier.hub.stats().last_id != newest:
            await asyncio.sleep(0.01)


async def test_tenant_stream_carries_only_the_callers_scans(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Two tenants at once: each stream has exactly its tenant's events, in order."""
    async with (
        open_tenant(notifier.client, tenant_token("acme")) as acme,
        open_tenant(notifier.client, tenant_token("rival")) as rival,
    ):
        for stream in (acme, rival):
            opening = await stream.next_message()
            assert opening is not None and opening.retry is not None
            # A resume point from the first byte: EventSource keeps it as lastEventId.
            start = await stream.next_message()
            assert start is not None and start.data is None and start.id is not None
        a1 = await publisher.submit("acme")
        r1 = await publisher.submit("rival")
        a2 = await publisher.submit("acme")
        for scan_id in (a1, r1, a2):
            await publisher.run_to_completion(scan_id)
        got_acme = await until_completed(acme, a2)
        got_rival = await until_completed(rival, r1)
    assert pairs(got_acme) == await publisher.tenant_events("acme")
    assert pairs(got_rival) == await publisher.tenant_events("rival")
    assert {json.loads(e.data or "")["scan_id"] for e in got_acme} == {a1, a2}
    assert {json.loads(e.data or "")["scan_id"] for e in got_rival} == {r1}
    assert len(got_acme) == len(await publisher.history(a1)) + len(await publisher.history(a2))


async def test_tenant_stream_refuses_other_tenants_and_scan_tokens(
    notifier: Notifier, publisher: Publisher
) -> None:
    """A tenant token opens only its own tenant's stream; a scan token opens none."""
    scan_id = await publisher.submit("acme")
    other = await notifier.client.get(
        "/api/events", params={"token": tenant_token("acme"), "tenant": "rival"}
    )
    scan_scope = await notifier.client.get(
        "/api/events", params={"token": tokens.sign((EVENT_KEY,), "s", scan_id, 300)}
    )
    missing = await notifier.client.get("/api/events")
    assert (other.status_code, other.json()["error"]) == (403, "forbidden")
    assert (scan_scope.status_code, scan_scope.json()["field"]) == (401, "token")
    assert missing.status_code == 401


async def test_tenant_stream_resumes_after_last_event_id_without_gaps(
    notifier: Notifier, publisher: Publisher
) -> None:
    """Disconnect mid-way; reconnecting with Last-Event-ID replays exactly what was missed."""
    token = tenant_token("acme")
    a1 = await publisher.submit("acme")
    claim = await publisher.claim(a1)
    async with open_tenant(notifier.client, token) as first:
        await publisher.progress(claim, 40)
        seen = await first.events(1)
        resume = last_id(first)
    assert resume == seen[-1].id
    # Missed while disconnected: the rest of a1, another tenant's scan, a new acme scan.
    await publisher.progress(claim, 60)
    await publisher.complete(claim)
    r1 = await publisher.submit("rival")
    await publisher.run_to_completion(r1)
    a2 = await publisher.submit("acme")
    ids = [i for i, _ in await publisher.tenant_events("acme")]
    missed = len(ids) - ids.index(resume) - 1
    async with open_tenant(notifier.client, token, resume) as second:
        replayed = await second.events(missed)
        await publisher.run_to_completion(a2)  # live after the replay
        live = await until_completed(second, a2)
    # Everything from the first event this client saw on, each once, in order.
    acme = await publisher.tenant_events("acme")
    assert pairs(seen + replayed + live) == acme[ids.index(resume) :]


async def test_tenant_resume_from_trimmed_history_gets_a_reset(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """The resume point fell off the capped events stream: ``event: reset``, then live."""
    settings = make_settings(auth=True, event_keys=(EVENT_KEY,), events_maxlen=10)
    publisher = Publisher(redis, settings)  # writes with the small cap
    await publisher.setup()
    a1 = await publisher.submit("acme")
    resume = (await publisher.history(a1))[0][0]
    claim_a1 = await publisher.claim(a1)
    r1 = await publisher.submit("rival")
    claim_r1 = await publisher.claim(r1)
    # Busy other tenants push acme's first event off the capped stream.
    for step in range(2_000):
        if await publisher.trimmed_past(publisher.keys.events, resume):
            break
        await publisher.progress(claim_r1, step % 100, f"rival {step}")
    else:
        pytest.fail("the events stream was never trimmed")
    await publisher.progress(claim_a1, 55, "still going")
    latest_a1 = (await publisher.history(a1))[-1]
    async with running_notifier(settings) as notifier:
        await hub_caught_up(notifier, publisher)
        async with open_tenant(notifier.client, tenant_token("acme"), resume) as stream:
            reset = await stream.next_event()
            await publisher.complete(claim_a1)
            live = await until_completed(stream, a1)
    assert reset is not None and reset.event == "reset"
    assert reset.id == latest_a1[0], "the reset moves Last-Event-ID to now"
    body = json.loads(reset.data or "")
    assert (body["tenant"], body["reason"]) == ("acme", "history_trimmed")
    # Each acme scan still on the stream, as its latest event; nothing of the rival's.
    assert body["scans"] == [json.loads(latest_a1[1])]
    assert pairs(live) == (await publisher.history(a1))[-1:]


async def test_tenant_stream_refuses_a_resume_point_in_other_digits(notifier: Notifier) -> None:
    """Arabic-Indic digits pass str.isdigit() but not Redis: 400, never a false reconnect."""
    response = await notifier.client.get(
        "/api/events",
        params={"token": tenant_token("acme"), "last_event_id": OTHER_DIGITS_ID},
        headers={"accept": "text/event-stream"},
    )
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("bad_request", "Last-Event-ID")
