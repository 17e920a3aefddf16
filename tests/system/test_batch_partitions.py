"""Batches over partitions: one batch, one partition, so its scripts keep to one slot."""

from __future__ import annotations

import base64

from redis.asyncio import Redis

from shared.keys import Keys
from tests.conftest import SettingsFactory
from tests.support.cluster import ValkeyCluster
from tests.support.images import label_png
from tests.support.sse import open_batch_stream
from tests.support.stack import Stack, running_stack

PARTS = 3
BODY = {
    "scans": [{"product_name": f"p{i}"} for i in range(12)],
    "defaults": {
        "image_base64": base64.b64encode(label_png()).decode(),
        "category": "toys",
        "marketplaces": ["US"],
    },
}


async def run_batch(stack: Stack) -> tuple[str, list[str], dict[str, object]]:
    """Submit BODY, follow its stream to the end, return its ids and final status."""
    accepted = (await stack.client.post("/api/batches", json=BODY)).json()
    batch_id = accepted["batch_id"]
    async with open_batch_stream(stack.events, batch_id) as stream:
        messages = await stream.rest(within=60)
    assert messages[-1].event == "batch.completed"
    status = (await stack.client.get(f"/api/batches/{batch_id}")).json()
    return batch_id, accepted["scan_ids"], status


async def test_a_batch_lives_in_one_partition(make_settings: SettingsFactory, redis: Redis) -> None:
    """With three partitions, a batch and all its scans share one tag, and it completes."""
    settings = make_settings(partitions=PARTS)
    keys = Keys(settings.prefix, PARTS)
    async with running_stack(settings, analyzers=1) as stack:
        batch_id, scan_ids, status = await run_batch(stack)
    part = keys.of_scan(batch_id)
    assert {keys.of_scan(s) for s in scan_ids} == {part}
    assert status["state"] == "finished"
    counts = status["counts"]
    assert isinstance(counts, dict)
    assert (counts["completed"], counts["pending"]) == (12, 0)
    assert await redis.exists(part.batch(batch_id), part.batch_events(batch_id)) == 2


async def test_a_batch_runs_on_a_cluster(
    make_settings: SettingsFactory, valkey_cluster: ValkeyCluster
) -> None:
    """On a real Valkey Cluster: accepted in one script call, ended, streamed, cancelled."""
    settings = make_settings(redis_url=valkey_cluster.url, redis_mode="cluster", partitions=PARTS)
    async with running_stack(settings, analyzers=1) as stack:
        _, _, status = await run_batch(stack)
        assert status["state"] == "finished"
        assert status["aggregate"] is not None
        # A cancel's scripts too: the batch's keys are in its scans' slot.
        slow = await stack.client.post("/api/batches", json={**BODY, "scans": BODY["scans"][:2]})
        batch_id = slow.json()["batch_id"]
        cancelled = (await stack.client.delete(f"/api/batches/{batch_id}")).json()
        assert cancelled["counts"]["pending"] == 0
