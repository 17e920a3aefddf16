"""Receivers that refuse: 4xx is permanent, continuous failure disables the endpoint,
a redelivery carries the same webhook-id, and a rotated secret signs beside the old one."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import SettingsFactory
from tests.support.stack import running_stack
from tests.support.webhooks import Answer, Received, run_receiver, verify
from tests.webhooks.test_delivery import submit, webhook_settings
from tests.webhooks.test_ssrf import wait_settled

FAILED = 'labelscan_webhook_attempts_total{outcome="failed"}'
TIMED = "labelscan_webhook_request_seconds_count"


def sample(response: httpx.Response, name: str) -> float:
    """One sample's value in a /metrics answer (0 when absent)."""
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return 0.0


async def test_a_4xx_answer_is_permanent(make_settings: SettingsFactory) -> None:
    """400: one attempt, recorded as failed with its status code, never retried."""

    async def refuse(request: Received, seen: int) -> Answer:
        return 400, {}

    settings = webhook_settings(make_settings)
    async with run_receiver(refuse) as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        failed_before = sample(await stack.events.get("/metrics"), FAILED)
        timed_before = sample(await stack.events.get("/metrics"), TIMED)
        await submit(stack, "refused")
        item = await wait_settled(stack.client, created.json()["id"])
        assert (item["status"], item["attempts"], item["last_status_code"]) == ("failed", 1, 400)
        await asyncio.sleep(0.5)
        assert len(receiver.received) == 1
        metrics = await stack.events.get("/metrics")
        assert sample(metrics, FAILED) == failed_before + 1
        assert sample(metrics, TIMED) == timed_before + 1


async def test_an_endpoint_failing_continuously_is_disabled_then_redelivered(
    make_settings: SettingsFactory,
) -> None:
    """500 for longer than WEBHOOK_DISABLE_AFTER_HOURS (here one second): the endpoint is
    disabled with its reason; re-enabled, a redelivery arrives with the same webhook-id."""
    healthy = asyncio.Event()

    async def down(request: Received, seen: int) -> Answer:
        return (200, {}) if healthy.is_set() else (500, {})

    settings = webhook_settings(
        make_settings, webhook_disable_after_hours=1 / 3600, webhook_retry_cap_s=0.2
    )
    async with run_receiver(down) as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        endpoint = created.json()
        path = f"/api/webhooks/{endpoint['id']}"
        await submit(stack, "down")
        async with asyncio.timeout(20):
            while (shown := (await stack.client.get(path)).json())["enabled"]:
                await asyncio.sleep(0.05)
        assert "failing for 1 s" in shown["disabled_reason"]
        assert "answered 500" in shown["disabled_reason"]
        assert shown["failures"] >= 2
        assert shown["disabled_at"] is not None
        item = await wait_settled(stack.client, endpoint["id"])
        assert item["status"] == "failed"
        tried = len(receiver.received)

        healthy.set()
        enabled = await stack.client.patch(path, json={"enabled": True})
        assert enabled.json()["enabled"] is True
        assert enabled.json()["disabled_reason"] is None
        assert enabled.json()["failures"] == 0
        again = await stack.client.post(f"{path}/deliveries/{item['id']}/redeliver")
        assert again.status_code == 202
        assert again.json()["status"] == "pending"
        await receiver.wait_for(lambda got: any(r.status == 200 for r in got))
        assert len(receiver.received) == tried + 1
        assert len({r.webhook_id for r in receiver.received}) == 1
        assert all(verify(endpoint["secret"], r.headers, r.body) for r in receiver.received)
        item = await wait_settled(stack.client, endpoint["id"])
        assert item["status"] == "succeeded"


async def test_after_rotation_both_secrets_verify_during_the_grace_period(
    make_settings: SettingsFactory,
) -> None:
    """Rotated with a grace period: two v1 signatures, one per secret; without: the new one."""
    async with run_receiver() as receiver:
        for grace, expect_old in ((3600, True), (0, False)):
            settings = webhook_settings(make_settings, webhook_rotation_grace_s=grace)
            async with running_stack(settings) as stack:
                path = f"/hook/{grace}"  # the same tenant: the first endpoint is still there
                created = (
                    await stack.client.post(
                        "/api/webhooks",
                        json={"url": receiver.url(path), "events": ["scan.completed"]},
                    )
                ).json()
                rotated = await stack.client.post(f"/api/webhooks/{created['id']}/rotate-secret")
                new = rotated.json()["secret"]
                await submit(stack, "rotated")
                await receiver.wait_for(lambda got, p=path: any(r.path == p for r in got))
                [request] = [r for r in receiver.received if r.path == path]
                assert verify(new, request.headers, request.body)
                assert verify(created["secret"], request.headers, request.body) is expect_old
                signatures = request.headers["webhook-signature"].split(" ")
                assert len(signatures) == (2 if expect_old else 1)


async def test_a_slow_receiver_times_out_and_is_retried(make_settings: SettingsFactory) -> None:
    """An answer slower than WEBHOOK_TIMEOUT is a failed, retried attempt."""

    async def slow_first(request: Received, seen: int) -> Answer:
        if seen == 0:
            await asyncio.sleep(3)
        return 200, {}

    settings = webhook_settings(make_settings, webhook_timeout_s=0.5)
    async with run_receiver(slow_first) as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        await submit(stack, "slow")
        async with asyncio.timeout(20):
            while True:
                item = await wait_settled(stack.client, created.json()["id"])
                if item["attempts"] == 2:
                    break
                await asyncio.sleep(0.05)
        assert item["status"] == "succeeded"
        assert len({r.webhook_id for r in receiver.received}) == 1


async def test_retries_end_with_the_retry_window(make_settings: SettingsFactory) -> None:
    """Still failing when WEBHOOK_RETRY_HOURS (here one second) is over: given up."""

    async def unavailable(request: Received, seen: int) -> Answer:
        return 503, {}

    settings = webhook_settings(
        make_settings, webhook_retry_hours=1 / 3600, webhook_retry_cap_s=0.2
    )
    async with run_receiver(unavailable) as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        await submit(stack, "gone")
        item = await wait_settled(stack.client, created.json()["id"])
        assert item["status"] == "failed"
        assert item["attempts"] >= 2
        assert item["attempts"] == len(receiver.received)
        assert f"gave up after {item['attempts']} attempts" in str(item["last_error"])
        shown = (await stack.client.get(f"/api/webhooks/{created.json()['id']}")).json()
        assert shown["enabled"] is True  # failing for a second is not a day
        assert shown["failures"] == item["attempts"]
