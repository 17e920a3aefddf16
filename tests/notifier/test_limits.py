"""What one tenant can cost the notifier: open streams per tenant, and a resume's replay."""

from __future__ import annotations

import asyncio
import contextlib
import json

from redis.asyncio import Redis

from shared import tokens
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.notifier.conftest import running_notifier
from tests.notifier.scans import Publisher
from tests.notifier.test_tenant import EVENT_KEY, open_tenant, tenant_token


async def test_streams_per_tenant_are_capped_with_429(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """SSE_MAX_STREAMS_PER_TENANT open streams, tenant and scan streams alike; then 429."""
    settings = make_settings(auth=True, event_keys=(EVENT_KEY,), sse_max_streams_per_tenant=2)
    publisher = Publisher(redis, settings)
    await publisher.setup()
    scan_id = await publisher.submit("acme")
    async with running_notifier(settings) as notifier, contextlib.AsyncExitStack() as stack:
        client = notifier.client
        first = await stack.enter_async_context(open_tenant(client, tenant_token("acme")))
        await stack.enter_async_context(open_tenant(client, tenant_token("acme")))
        refused = await client.get("/api/events", params={"token": tenant_token("acme")})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_streams"
        assert refused.headers["retry-after"] == "5"
        # A scan's stream counts against its tenant, whatever token opened it.
        scan_token = tokens.sign((EVENT_KEY,), "s", scan_id, 300)
        refused = await client.get(f"/api/scans/{scan_id}/events", params={"token": scan_token})
        assert refused.status_code == 429, refused.text
        # Other tenants are not affected.
        await stack.enter_async_context(open_tenant(client, tenant_token("rival")))
        # Closing a stream frees its place.
        await first.response.aclose()
        async with asyncio.timeout(5):
            while notifier.hub.stats().subscribers > 2:
                await asyncio.sleep(0.02)
        await stack.enter_async_context(open_tenant(client, tenant_token("acme")))


async def test_resume_past_the_replay_bound_is_a_reset(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A tenant resume that would read more than SSE_MAX_REPLAY entries answers reset."""
    settings: Settings = make_settings(auth=True, event_keys=(EVENT_KEY,), sse_max_replay=50)
    publisher = Publisher(redis, settings)
    await publisher.setup()
    mine = await publisher.submit("acme")
    resume_from = (await publisher.events())[-1][0]
    near = await publisher.submit("acme")  # one entry after the resume point: replayed
    async with running_notifier(settings) as notifier:
        async with open_tenant(notifier.client, tenant_token("acme"), resume_from) as stream:
            event = await stream.next_event()
            assert event is not None and event.event == "queued", event
            assert json.loads(event.data or "{}")["scan_id"] == near
        for _ in range(60):  # other tenants' traffic: reading it is the cost
            await publisher.submit("rival")
        last = await publisher.submit("acme")
        async with open_tenant(notifier.client, tenant_token("acme"), resume_from) as stream:
            event = await stream.next_event()
            assert event is not None and event.event == "reset", event
            body = json.loads(event.data or "{}")
            assert body["reason"] == "history_trimmed"
            assert {scan["scan_id"] for scan in body["scans"]} == {mine, near, last}
