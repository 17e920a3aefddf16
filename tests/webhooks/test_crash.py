"""A deliverer killed with SIGKILL mid-delivery loses nothing: another one sends it again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from shared.embedded import free_port
from shared.keys import WEBHOOK_GROUP
from shared.webhooks.deliverer import Deliverer
from tests.conftest import SettingsFactory
from tests.support.processes import spawn, stop, wait_http
from tests.support.stack import running_stack
from tests.support.webhooks import Answer, Received, run_receiver, verify
from tests.webhooks.test_delivery import submit, webhook_settings

DELIVERER_ENV = {
    "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_RETRY_BASE": "0.05",
}


async def test_kill_9_mid_delivery_then_another_deliverer_delivers(
    make_settings: SettingsFactory, tmp_path: Path, redis: Redis
) -> None:
    """The receiver holds the first request; its notifier is SIGKILLed; a new notifier
    sends the delivery again with the same webhook-id, and it is recorded as delivered."""
    release = asyncio.Event()

    async def hold_first(request: Received, seen: int) -> Answer:
        if seen == 0:
            await release.wait()
        return 200, {}

    # Gateway and analyzer in this process; deliveries only by the notifier subprocesses.
    settings = webhook_settings(make_settings, webhook_delivery=False, notifier_port=free_port())
    procs: list[Any] = []
    async with run_receiver(hold_first) as receiver, running_stack(settings) as stack:
        try:
            first = spawn("notifier", settings, log=tmp_path / "n1.log", **DELIVERER_ENV)
            procs.append(first)
            await asyncio.to_thread(wait_http, f"{settings.notifier_url}/readyz", first)
            created = await stack.client.post(
                "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
            )
            endpoint = created.json()
            scan_id = await submit(stack, "crash")
            await receiver.wait_for(lambda got: len(got) >= 1)
            os.kill(first.pid, signal.SIGKILL)
            await asyncio.to_thread(first.wait, 10)

            second = spawn("notifier", settings, log=tmp_path / "n2.log", **DELIVERER_ENV)
            procs.append(second)
            await receiver.wait_for(lambda got: any(r.status == 200 for r in got), timeout=60)
        finally:
            release.set()
            for proc in procs:
                await asyncio.to_thread(stop, proc)

        assert len(receiver.received) == 2
        held, again = receiver.received
        assert held.webhook_id == again.webhook_id  # a duplicate, recognisable as one
        assert held.body == again.body
        for request in receiver.received:
            assert verify(endpoint["secret"], request.headers, request.body)
        assert again.payload["data"]["scan_id"] == scan_id
        log = (await stack.client.get(f"/api/webhooks/{endpoint['id']}/deliveries")).json()
        [item] = log["items"]
        assert item["status"] == "succeeded"
        assert item["event_id"] == held.webhook_id
        part = stack.workers[0].store.keys.only
        assert await redis.xlen(part.outbox) == 0


async def test_an_outbox_entry_left_by_a_dead_deliverer_is_reclaimed(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A deliverer that read an outbox entry and died before its deliveries existed:
    another deliverer claims the entry after the lease and delivers it."""
    settings = webhook_settings(make_settings, webhook_delivery=False, webhook_timeout_s=0.5)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        scan_id = await submit(stack, "orphan")
        await stack.wait_terminal(scan_id)
        outbox = stack.workers[0].store.keys.only.outbox
        await redis.xgroup_create(outbox, WEBHOOK_GROUP, id="0")
        taken = await redis.xreadgroup(WEBHOOK_GROUP, "dead-one", {outbox: ">"}, count=1)
        assert len(taken[0][1]) == 1  # read, never acknowledged: its reader "died"

        deliverer = Deliverer(redis, redis, settings)
        await deliverer.start()
        try:
            await receiver.wait_for(lambda got: len(got) == 1, timeout=30)
        finally:
            await deliverer.stop()
        request = receiver.received[0]
        assert verify(created.json()["secret"], request.headers, request.body)
        assert request.payload["data"]["scan_id"] == scan_id
        assert await redis.xlen(outbox) == 0
        pending = await redis.xpending(outbox, WEBHOOK_GROUP)
        assert pending["pending"] == 0
