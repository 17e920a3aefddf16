"""Batches and webhooks: each scan of a batch is delivered like a single scan, and the
batch's end once, as ``batch.completed`` with the batch's status document."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import SettingsFactory
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import Received, run_receiver, verify
from tests.test_batches_end_to_end import RULES, VerdictBackend, body, wait_state
from tests.webhooks.test_delivery import webhook_settings

QUIET_S = 0.5
"""How long the receiver is watched for a delivery that should not come."""


async def add_endpoint(stack: Stack, url: str, events: list[str]) -> str:
    """Register an endpoint for ``events``; its signing secret."""
    created = await stack.client.post("/api/webhooks", json={"url": url, "events": events})
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret


def of_type(received: list[Received], kind: str) -> list[dict[str, Any]]:
    """The payloads of ``kind``, one per webhook-id (a retry is not a second event)."""
    seen: dict[str, dict[str, Any]] = {}
    for request in received:
        if request.payload["type"] == kind:
            seen[request.webhook_id] = request.payload
    return list(seen.values())


async def test_batch_scans_and_the_batch_end_are_delivered_signed(
    make_settings: SettingsFactory,
) -> None:
    """3 scans → 3 scan.completed and exactly one batch.completed, whose data is the
    batch as GET /api/batches/{id} shows it (counts, scan ids, aggregate); all verified."""
    settings = webhook_settings(make_settings)
    async with (
        run_receiver() as receiver,
        running_stack(settings, backend=VerdictBackend()) as stack,
    ):
        secret = await add_endpoint(stack, receiver.url(), ["scan.completed", "batch.completed"])
        made = await stack.client.post("/api/batches", json=body("ok-1", "bad-2", "ok-3"))
        assert made.status_code == 202, made.text
        accepted = made.json()
        batch_id, scan_ids = accepted["batch_id"], accepted["scan_ids"]
        assert "callback_secret" not in accepted

        await receiver.wait_for(lambda got: len(got) >= 4)
        await asyncio.sleep(QUIET_S)  # nothing more should come
        assert len(receiver.received) == 4
        for request in receiver.received:
            assert verify(secret, request.headers, request.body), "bad signature"
            assert request.payload["id"] == request.webhook_id

        scans = of_type(receiver.received, "scan.completed")
        assert sorted(p["data"]["scan_id"] for p in scans) == sorted(scan_ids)
        assert all(p["data"]["batch_id"] == batch_id for p in scans)
        (batch,) = of_type(receiver.received, "batch.completed")
        data = batch["data"]
        assert data == (await stack.client.get(f"/api/batches/{batch_id}")).json()
        assert (data["batch_id"], data["state"], data["total"]) == (batch_id, "finished", 3)
        assert data["progress"] == 100
        assert data["counts"]["completed"] == 3
        assert data["counts"]["pending"] == 0
        assert data["scan_ids"] == scan_ids
        assert data["aggregate"]["verdicts"]["US"] == {
            "compliant": 2,
            "non_compliant": 1,
            "needs_review": 0,
        }
        rules = {r["rule"]: r["count"] for r in data["aggregate"]["top_failing_rules"]}
        assert rules == {RULES["US"]: 1, RULES["DE"]: 1}

        endpoints = (await stack.client.get("/api/webhooks")).json()["items"]
        log = await stack.client.get(f"/api/webhooks/{endpoints[0]['id']}/deliveries")
        items = log.json()["items"]
        (logged,) = [i for i in items if i["type"] == "batch.completed"]
        assert logged["batch_id"] == batch_id
        assert logged["event_id"] == batch["id"]
        assert logged["status"] == "succeeded"
        assert logged.get("scan_id") is None


async def test_batch_of_a_tenant_without_endpoints_skips_the_outbox(
    make_settings: SettingsFactory, redis: Any
) -> None:
    """No endpoint: the batch and its scans end without any outbox entry."""
    settings = webhook_settings(make_settings)
    async with running_stack(settings, backend=VerdictBackend()) as stack:
        accepted = (await stack.client.post("/api/batches", json=body("ok-1", "ok-2"))).json()
        batch_id = accepted["batch_id"]
        await wait_state(stack, batch_id, "finished")
        part = stack.workers[0].store.keys.of_scan(batch_id)
        assert await redis.xlen(part.outbox) == 0
        assert await redis.hget(part.batch(batch_id), "webhook") is None
        for scan_id in accepted["scan_ids"]:
            assert await redis.hget(part.scan(scan_id), "webhook") is None


async def test_cancelled_batch_is_delivered_as_cancelled(make_settings: SettingsFactory) -> None:
    """DELETE /api/batches/{id}: one batch.completed whose data says cancelled."""
    settings = webhook_settings(make_settings, worker_concurrency=2)
    async with (
        run_receiver() as receiver,
        running_stack(settings, backend=VerdictBackend(delay_s=30)) as stack,
    ):
        secret = await add_endpoint(stack, receiver.url(), ["batch.completed"])
        accepted = (
            await stack.client.post("/api/batches", json=body("ok-1", "ok-2", "ok-3"))
        ).json()
        batch_id = accepted["batch_id"]
        cancelled = await stack.client.delete(f"/api/batches/{batch_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"

        await receiver.wait_for(lambda got: len(got) >= 1)
        await asyncio.sleep(QUIET_S)
        assert len(receiver.received) == 1  # not subscribed to scan.cancelled
        request = receiver.received[0]
        assert verify(secret, request.headers, request.body)
        event = request.payload
        assert event["type"] == "batch.completed"
        data = event["data"]
        assert (data["batch_id"], data["state"]) == (batch_id, "cancelled")
        assert data["counts"]["cancelled"] == 3
        assert data["aggregate"] == {"verdicts": {}, "top_failing_rules": []}


async def test_a_retried_batch_that_ends_again_is_a_new_event(
    make_settings: SettingsFactory,
) -> None:
    """A batch with a failed scan ends; retried, it ends again: a second batch.completed,
    with its own webhook-id and the new counts."""
    backend = VerdictBackend()
    settings = webhook_settings(make_settings, max_attempts=1)
    async with run_receiver() as receiver, running_stack(settings, backend=backend) as stack:
        await add_endpoint(stack, receiver.url(), ["batch.completed"])
        accepted = (await stack.client.post("/api/batches", json=body("ok-1", "boom-1"))).json()
        batch_id = accepted["batch_id"]
        await receiver.wait_for(lambda got: len(got) >= 1)
        first = receiver.received[0].payload
        assert first["data"]["counts"]["failed"] == 1

        backend.healed = True
        retried = await stack.client.post(f"/api/batches/{batch_id}/retry")
        assert retried.status_code == 202
        await receiver.wait_for(lambda got: len(got) >= 2)
        await asyncio.sleep(QUIET_S)
        assert len(receiver.received) == 2
        second = receiver.received[1].payload
        assert second["id"] != first["id"]
        assert second["data"]["state"] == "finished"
        assert second["data"]["counts"]["completed"] == 2
        assert second["data"]["counts"]["failed"] == 0


async def test_a_batch_refuses_callback_url(make_settings: SettingsFactory, redis: Any) -> None:
    """Batch scans take no callback_url (in a scan, the defaults or a multipart field):
    422 naming the field, nothing written."""
    settings = webhook_settings(make_settings)
    async with running_stack(settings) as stack:
        in_scan = body("ok-1", "ok-2")
        in_scan["scans"][1]["callback_url"] = "http://127.0.0.1:9/cb"
        in_defaults = body("ok-1")
        in_defaults["defaults"]["callback_url"] = "http://127.0.0.1:9/cb"
        for sent in (in_scan, in_defaults):
            refused = await stack.client.post("/api/batches", json=sent)
            assert refused.status_code == 422, refused.text
            assert refused.json()["field"] == "callback_url"
        multipart = await stack.client.post(
            "/api/batches",
            data={"category": "toys", "marketplaces": "US", "callback_url": "http://x/cb"},
            files=[("image", ("a.png", b"\x89PNG", "image/png"))],
        )
        assert multipart.status_code == 422, multipart.text
        assert multipart.json()["field"] == "callback_url"
        part = stack.workers[0].store.keys.only
        assert await redis.exists(part.scan_index) == 0
