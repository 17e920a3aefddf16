"""Every terminal scan reaches a real receiver, signed, retried on 503 + Retry-After."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from analyzer.backends import Backend
from shared.errors import BackendError
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import Answer, Received, run_receiver, verify

PNG = base64.b64encode(label_png("CE")).decode()
ALL_EVENTS = ["scan.completed", "scan.failed", "scan.cancelled", "scan.dead_lettered"]


def webhook_settings(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    """Test settings whose webhooks may go to loopback receivers, retried fast."""
    base: dict[str, Any] = {
        "webhook_allow_hosts": ("127.0.0.1",),
        "webhook_retry_base_s": 0.05,
        "webhook_timeout_s": 3.0,
        "webhook_presence_cache_s": 0.0,
    }
    return make_settings(**{**base, **overrides})


def doomed(settings: Settings) -> Backend:
    """Fails scans named "doomed" for good; runs the rest."""

    def errors(name: str, attempt: int) -> Exception | None:
        return BackendError("the label cannot be read") if name == "doomed" else None

    return ScriptedBackend(settings, errors=errors)


async def submit(stack: Stack, name: str, **extra: Any) -> str:
    """Submit one scan and return its id."""
    body = {
        "image_base64": PNG,
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": name,
        **extra,
    }
    response = await stack.client.post("/api/scans", json=body)
    assert response.status_code == 202, response.text
    scan_id: str = response.json()["scan_id"]
    return scan_id


async def test_each_terminal_scan_is_delivered_verified_and_retried(
    make_settings: SettingsFactory,
) -> None:
    """Completed, failed (and dead-lettered) and cancelled scans each reach the receiver:
    503 + Retry-After, then 500, then 200; every attempt verifies; one webhook-id each."""

    async def flaky(request: Received, seen: int) -> Answer:
        if seen == 0:
            return 503, {"retry-after": "1"}
        if seen == 1:
            return 500, {}
        return 200, {}

    settings = webhook_settings(make_settings)
    async with (
        run_receiver(flaky) as receiver,
        running_stack(settings, backend=doomed(settings)) as stack,
    ):
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ALL_EVENTS}
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        secret = endpoint["secret"]

        done = await submit(stack, "fine")
        failed = await submit(stack, "doomed")
        later = await submit(stack, "later", delay_ms=60_000)
        assert (await stack.client.delete(f"/api/scans/{later}")).status_code == 200
        for scan_id in (done, failed):
            await stack.wait_terminal(scan_id)

        def all_delivered(got: list[Received]) -> bool:
            return sum(r.status == 200 for r in got) >= 4

        await receiver.wait_for(all_delivered)
        await asyncio.sleep(0.3)  # nothing more should come

        by_id: dict[str, list[Received]] = {}
        for request in receiver.received:
            assert verify(secret, request.headers, request.body), "bad signature"
            by_id.setdefault(request.webhook_id, []).append(request)
        assert len(by_id) == 4
        kinds = {}
        for webhook_id, attempts in by_id.items():
            assert [a.status for a in attempts] == [503, 500, 200]
            # Retry-After: 1 was honoured between the first and second attempt.
            assert attempts[1].at - attempts[0].at >= 0.9
            payloads = [a.payload for a in attempts]
            assert all(p == payloads[0] for p in payloads)  # the same body every time
            event = payloads[0]
            assert event["id"] == webhook_id
            kinds[event["type"]] = event["data"]
        assert set(kinds) == set(ALL_EVENTS)
        assert kinds["scan.completed"]["scan_id"] == done
        assert kinds["scan.completed"]["state"] == "completed"
        assert kinds["scan.completed"]["result"]["analysis"]["verdict"]
        for kind in ("scan.failed", "scan.dead_lettered"):
            assert kinds[kind]["scan_id"] == failed
            assert kinds[kind]["error"]["message"] == "the label cannot be read"
        assert kinds["scan.cancelled"]["scan_id"] == later
        assert kinds["scan.cancelled"]["state"] == "cancelled"

        log = await stack.client.get(f"/api/webhooks/{endpoint['id']}/deliveries")
        assert log.status_code == 200
        items = log.json()["items"]
        assert len(items) == 4
        assert {i["event_id"] for i in items} == set(by_id)
        for item in items:
            assert item["status"] == "succeeded"
            assert item["attempts"] == 3
            assert item["last_status_code"] == 200
            assert item["last_latency_ms"] >= 0
        created_at = [i["created_at"] for i in items]
        assert created_at == sorted(created_at, reverse=True)


async def test_scans_of_tenants_without_webhooks_skip_the_outbox(
    make_settings: SettingsFactory, redis: Any
) -> None:
    """No endpoint, no callback_url: the scan ends without an outbox entry."""
    settings = webhook_settings(make_settings)
    async with running_stack(settings) as stack:
        scan_id = await submit(stack, "quiet")
        await stack.wait_terminal(scan_id)
        part = stack.workers[0].store.keys.only
        assert await redis.xlen(part.outbox) == 0
        assert await redis.hget(part.scan(scan_id), "webhook") is None


async def test_callback_url_gets_the_scans_end_signed_with_its_own_secret(
    make_settings: SettingsFactory,
) -> None:
    """A scan's callback_url receives its end, signed with the secret from its 202."""
    settings = webhook_settings(make_settings)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        response = await stack.client.post(
            "/api/scans",
            json={
                "image_base64": PNG,
                "category": "toys",
                "marketplaces": ["US"],
                "product_name": "callback",
                "callback_url": receiver.url("/cb"),
            },
        )
        assert response.status_code == 202
        accepted = response.json()
        assert accepted["callback_secret"].startswith("whsec_")
        await receiver.wait_for(lambda got: len(got) >= 1)
        request = receiver.received[0]
        assert request.path == "/cb"
        assert verify(accepted["callback_secret"], request.headers, request.body)
        assert request.payload["type"] == "scan.completed"
        assert request.payload["data"]["scan_id"] == accepted["scan_id"]


async def test_a_replayed_request_answers_the_first_callback_secret(
    make_settings: SettingsFactory,
) -> None:
    """The same Idempotency-Key and body again: 200 with the first request's scan and the
    callback secret its deliveries are signed with, not a new one."""
    settings = webhook_settings(make_settings)
    body = {
        "image_base64": PNG,
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "callback",
        "callback_url": "https://127.0.0.1:9/cb",
    }
    headers = {"idempotency-key": "replay-callback-1"}
    async with running_stack(settings) as stack:
        first = await stack.client.post("/api/scans", json=body, headers=headers)
        again = await stack.client.post("/api/scans", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["scan_id"] == first.json()["scan_id"]
    assert again.json()["callback_secret"] == first.json()["callback_secret"]


async def test_every_partitions_outbox_is_delivered(make_settings: SettingsFactory) -> None:
    """With several partitions each has its own outbox; scans of all of them are delivered."""
    settings = webhook_settings(make_settings, partitions=3)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        assert created.status_code == 201
        ids = [await submit(stack, f"part {n}") for n in range(9)]
        keys = stack.workers[0].store.keys
        assert len({keys.of_scan(i).index for i in ids}) > 1
        await receiver.wait_for(lambda got: len(got) >= len(ids))
        assert sorted(r.payload["data"]["scan_id"] for r in receiver.received) == sorted(ids)
        assert len({r.webhook_id for r in receiver.received}) == len(ids)
