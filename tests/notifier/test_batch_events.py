"""GET /api/batches/{id}/events: a batch's progress over SSE, resumable, behind its token."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator

import httpx
from redis.asyncio import Redis

from gateway.app import create_app as create_gateway
from notifier.app import create_app as create_notifier
from shared import tokens
from shared.batchstore import BatchItem, BatchStore
from shared.schemas import ScanJob
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.notifier.conftest import Notifier
from tests.support.images import label_png
from tests.support.servers import serve
from tests.support.sse import EventStream, open_batch_stream
from tests.support.stack import running_stack

B64 = base64.b64encode(label_png()).decode()
KEY = "k" * 40
EVENT_KEY = Secret("e" * 40)


def body(count: int) -> dict[str, object]:
    """A batch of ``count`` scans."""
    return {
        "scans": [{"image_base64": B64, "product_name": f"p{i}"} for i in range(count)],
        "defaults": {"category": "toys", "marketplaces": ["US"]},
    }


async def test_a_dropped_stream_resumes_with_last_event_id(
    make_settings: SettingsFactory,
) -> None:
    """Cut after three events, resumed by id: nothing lost, nothing twice, as a late replay."""
    settings = make_settings(simulated_delay_ms=100, worker_concurrency=1)
    async with running_stack(settings) as stack:
        batch_id = (await stack.client.post("/api/batches", json=body(4))).json()["batch_id"]
        async with open_batch_stream(stack.events, batch_id) as stream:
            first = await stream.events(3, within=10)
        async with open_batch_stream(stack.events, batch_id, first[-1].id) as stream:
            rest = await stream.rest(within=30)
        assert rest[-1].event == "batch.completed"
        seen = [m.id for m in first + rest]
        assert len(seen) == len(set(seen))
        async with open_batch_stream(stack.events, batch_id) as late:
            replay = await late.rest(within=10)
        assert [m.id for m in replay] == seen
        assert [m.data for m in replay] == [m.data for m in first + rest]
        # 1 first progress + per scan (its end, the progress) + the end.
        assert len(replay) == 1 + 4 * 2 + 1

        # Seen to the end: 204 tells EventSource to stop reconnecting.
        headers = {"last-event-id": seen[-1]}
        done = await stack.events.get(f"/api/batches/{batch_id}/events", headers=headers)
        assert done.status_code == 204


@contextlib.asynccontextmanager
async def secured(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """A gateway (client with tenant acme's key) and a notifier, auth on."""
    async with (
        serve(create_gateway(settings)) as gateway,
        serve(create_notifier(settings)) as notifier,
        httpx.AsyncClient(
            base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10
        ) as api,
        httpx.AsyncClient(base_url=notifier.url, timeout=10) as events,
    ):
        yield api, events


async def test_the_batch_token_opens_its_stream_and_nothing_else(
    make_settings: SettingsFactory,
) -> None:
    """The 202's token (or the tenant's) opens the batch's stream; a scan's token does not."""
    settings = make_settings(auth=True, api_keys=(("acme", Secret(KEY)),), event_keys=(EVENT_KEY,))
    async with secured(settings) as (api, events):
        accepted = (await api.post("/api/batches", json=body(2))).json()
        batch_id = accepted["batch_id"]
        url = f"/api/batches/{batch_id}/events"
        assert (await events.get(url)).status_code == 401
        scan_token = tokens.sign(settings.event_keys, "s", accepted["scan_ids"][0], 60)
        refused = await events.get(url, params={"token": scan_token})
        assert refused.status_code == 404
        assert refused.json()["field"] == "batch_id"
        other = tokens.sign(settings.event_keys, "b", "0" * 32, 60)
        assert (await events.get(url, params={"token": other})).status_code == 404
        tenant_token = tokens.sign(settings.event_keys, "t", "acme", 60)
        for token in (accepted["events_token"], tenant_token):
            async with open_batch_stream(events, batch_id, token=token) as stream:
                assert stream.response.status_code == 200
                first = await stream.next_event()
                assert first is not None
                assert first.event == "batch"
        unknown = await events.get(f"/api/batches/{'1' * 32}/events", params={"token": other})
        assert unknown.status_code == 404


async def test_tenant_streams_do_not_carry_batch_progress(make_settings: SettingsFactory) -> None:
    """A tenant's stream shows its scans' events only: batch entries name no tenant."""
    async with running_stack(make_settings()) as stack:
        headers = {"accept": "text/event-stream"}
        async with stack.events.stream(
            "GET", "/api/events", params={"tenant": "default"}, headers=headers
        ) as response:
            stream = EventStream(response)
            await stream.next_message()  # retry:
            batch_id = (await stack.client.post("/api/batches", json=body(1))).json()["batch_id"]
            async with open_batch_stream(stack.events, batch_id) as batch_stream:
                await batch_stream.rest(within=20)
            kinds = []
            while (message := await stream.next_event(within=1)) is not None:
                kinds.append(message.event)
                if message.event == "completed":
                    break
        assert "batch" not in kinds
        assert "batch.completed" not in kinds
        assert kinds[-1] == "completed"


async def test_a_draining_notifier_tells_batch_streams_to_reconnect(
    notifier: Notifier, redis: Redis, settings: Settings
) -> None:
    """Shutdown ends an open batch stream with `reconnect`; a new one is told to come back."""
    store = BatchStore(redis, settings)
    batch_id, scan_ids = store.new_ids(2, None)
    jobs = [
        BatchItem(
            job=ScanJob(scan_id=s, category="toys", marketplaces=["US"], product_name="p"),
            image=None,
        )
        for s in scan_ids
    ]
    assert await store.submit_batch(batch_id, "default", jobs) is None
    async with open_batch_stream(notifier.client, batch_id) as stream:
        first = await stream.next_event()
        assert first is not None and first.event == "batch"
        notifier.hub.drain()
        rest = await stream.rest(within=5)
    assert [m.event for m in rest] == ["reconnect"]
    again = await notifier.client.get(
        f"/api/batches/{batch_id}/events", headers={"accept": "text/event-stream"}
    )
    assert again.status_code == 200
    assert "event: reconnect" in again.text
