"""Webhooks on a Valkey Cluster: the outboxes live in the partitions' slots, the
endpoint and delivery keys under the deployment's own tag, every script in one slot."""

from __future__ import annotations

from tests.conftest import SettingsFactory
from tests.support.cluster import ValkeyCluster
from tests.support.stack import running_stack
from tests.support.webhooks import run_receiver, verify
from tests.system.test_ha import cluster_settings
from tests.webhooks.test_delivery import submit


async def test_deliveries_on_a_cluster(
    make_settings: SettingsFactory, valkey_cluster: ValkeyCluster
) -> None:
    """Scans of every partition are delivered once each, signed, over the cluster."""
    settings = cluster_settings(
        make_settings,
        valkey_cluster,
        webhook_allow_hosts=("127.0.0.1",),
        webhook_presence_cache_s=0.0,
    )
    async with run_receiver() as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        assert created.status_code == 201
        ids = [await submit(stack, f"cluster {n}") for n in range(6)]
        await receiver.wait_for(lambda got: len(got) >= len(ids), timeout=60)
        assert sorted(r.payload["data"]["scan_id"] for r in receiver.received) == sorted(ids)
        assert all(verify(created.json()["secret"], r.headers, r.body) for r in receiver.received)
        log = await stack.client.get(f"/api/webhooks/{created.json()['id']}/deliveries")
        assert {i["status"] for i in log.json()["items"]} == {"succeeded"}
