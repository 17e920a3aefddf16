"""labelscan on a real Valkey Cluster and a real Sentinel setup, through a primary's death."""

from __future__ import annotations

import asyncio
import base64
import collections
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from shared.connection import connect
from shared.embedded import free_port
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.cluster import SentinelSetup, ValkeyCluster, running
from tests.support.images import label_png
from tests.support.processes import spawn, stop, wait_http
from tests.support.redis import completed_events
from tests.support.stack import running_stack

PARTS = 3
BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}


def cluster_settings(make_settings: SettingsFactory, cluster: ValkeyCluster, **kw: Any) -> Settings:
    """This test's prefix on the cluster, three partitions."""
    return make_settings(redis_url=cluster.url, redis_mode="cluster", partitions=PARTS, **kw)


def sentinel_settings(make_settings: SettingsFactory, setup: SentinelSetup, **kw: Any) -> Settings:
    """This test's prefix behind the sentinels."""
    hosts = tuple(("127.0.0.1", s.port) for s in setup.sentinels)
    return make_settings(
        redis_url="redis://127.0.0.1:1/0",  # credentials and db only; the host is not used
        redis_mode="sentinel",
        redis_sentinels=hosts,
        redis_sentinel_master=setup.master_name,
        **kw,
    )


async def test_cluster_end_to_end_spreads_keys_over_every_primary(
    make_settings: SettingsFactory, valkey_cluster: ValkeyCluster
) -> None:
    """Gateway, notifier and analyzers on the cluster: scans complete, events stream, and
    the run's keys live on every primary."""
    settings = cluster_settings(make_settings, valkey_cluster)
    async with running_stack(settings, analyzers=1) as stack:
        ids = [
            (await stack.client.post("/api/scans", json=BODY)).json()["scan_id"] for _ in range(12)
        ]
        details = [await stack.wait_terminal(i) for i in ids]
        token = (await stack.client.get(f"/api/scans/{ids[0]}")).json()
        async with stack.events.stream("GET", f"/api/scans/{ids[0]}/events") as response:
            body = (await response.aread()).decode()
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert token["state"] == "completed"
    assert all(d["state"] == "completed" for d in details)
    assert "event: completed" in body
    assert stats["completed"] == 12
    for node in valkey_cluster.primaries():
        with node.admin() as client:
            assert list(client.scan_iter(match=f"{{{settings.prefix}:*", count=1000)), (
                f"no key of this run on the primary at port {node.port}"
            )


async def _load_through_failover(
    settings: Settings, kill: Any, logs: Path, scans: int = 150
) -> tuple[list[str], list[int], list[dict[str, Any]], tuple[int | None, ...]]:
    """A gateway and two analyzers as processes; ``kill()`` a primary mid-load.

    Returns the accepted ids, every POST status, the final details and the processes'
    poll() after the load (None: still running).
    """
    gateway_port = free_port()
    env_settings = msgspec.structs.replace(
        settings, gateway_port=gateway_port, simulated_delay_ms=50, visibility_timeout_s=3
    )
    gateway = spawn("gateway", env_settings, log=logs / "gateway.log")
    analyzers = [
        spawn(
            "analyzer",
            env_settings,
            log=logs / f"analyzer-{n}.log",
            SCAN_WORKER_CONCURRENCY="16",
            ANALYZER_HEALTH_PORT="0",
        )
        for n in range(2)
    ]
    statuses: list[int] = []
    accepted: list[str] = []
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway_port}", timeout=15
        ) as client:

            async def post() -> None:
                # As a careful client does: a 503 is retried with the same Idempotency-Key,
                # so a write that landed before the answer was lost is not made twice.
                key = uuid.uuid4().hex
                for _ in range(50):
                    response = await client.post(
                        "/api/scans", json=BODY, headers={"idempotency-key": key}
                    )
                    statuses.append(response.status_code)
                    if response.status_code in (200, 202):
                        accepted.append(response.json()["scan_id"])
                        return
                    await asyncio.sleep(0.2)

            killer = None
            while len(accepted) < scans:
                await asyncio.gather(*(post() for _ in range(10)))
                if killer is None and len(accepted) >= scans // 3:
                    killer = asyncio.create_task(asyncio.to_thread(kill))
                await asyncio.sleep(0.02)
            assert killer is not None
            await killer
            details = []
            async with asyncio.timeout(60):
                for scan_id in accepted:
                    while True:
                        response = await client.get(f"/api/scans/{scan_id}")
                        if response.status_code == 200 and response.json()["state"] in (
                            "completed",
                            "failed",
                            "cancelled",
                        ):
                            details.append(response.json())
                            break
                        await asyncio.sleep(0.1)
        alive = (gateway.poll(), *(a.poll() for a in analyzers))
    finally:
        for proc in (gateway, *analyzers):
            stop(proc)
    return accepted, statuses, details, alive


@pytest.mark.timeout(150)
async def test_cluster_primary_killed_under_load_loses_nothing(
    make_settings: SettingsFactory, valkey_cluster: ValkeyCluster, tmp_path: Path
) -> None:
    """``kill -9`` of a primary while 150 strictly durable scans run: the replica takes
    over, every accepted scan completes with one ``completed`` event, nothing exits, and
    the gateway answers 503 (never 500) while the slot has no primary."""
    settings = cluster_settings(make_settings, valkey_cluster, durability="strict")
    keys = Keys(settings.prefix, PARTS)
    victim_key = keys.partitions[0].events
    failovers = []

    def kill() -> None:
        failovers.append(valkey_cluster.kill_primary(victim_key))

    try:
        accepted, statuses, details, alive = await _load_through_failover(settings, kill, tmp_path)
    finally:
        for failover in failovers:
            # In this thread: a server started from a worker thread dies with that thread
            # (its parent-death signal follows the thread, not the process).
            valkey_cluster.revive(failover.killed)
    client = connect(settings)
    try:
        counts = await completed_events(client, keys)
    finally:
        await client.aclose()
    assert failovers and failovers[0].promoted.port != failovers[0].killed.port
    assert len(accepted) >= 150
    assert set(statuses) <= {200, 202, 503}, collections.Counter(statuses)
    assert all(d["state"] == "completed" for d in details)
    assert counts == dict.fromkeys(accepted, 1)
    assert alive == (None, None, None)


@pytest.fixture
def fresh_sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A primary, a replica and three sentinels of this test's own: a setup that other
    tests already failed over has its roles swapped and sentinels still learning."""
    setup = SentinelSetup(tmp_path / "sentinel")
    with running(setup):
        yield setup


@pytest.mark.timeout(150)
async def test_sentinel_failover_under_load_loses_nothing(
    make_settings: SettingsFactory, fresh_sentinel: SentinelSetup, tmp_path: Path
) -> None:
    """The same on Sentinel: the primary dies, the sentinels promote the replica, the
    services follow without a restart and every accepted scan completes once."""
    settings = sentinel_settings(make_settings, fresh_sentinel, durability="strict")
    keys = Keys(settings.prefix)
    failovers = []

    def kill() -> None:
        failovers.append(fresh_sentinel.kill_primary())

    accepted, statuses, details, alive = await _load_through_failover(settings, kill, tmp_path)
    client = connect(settings)
    try:
        counts = await completed_events(client, keys)
    finally:
        await client.aclose()
    assert failovers
    assert set(statuses) <= {200, 202, 503}, collections.Counter(statuses)
    assert all(d["state"] == "completed" for d in details)
    assert counts == dict.fromkeys(accepted, 1)
    assert alive == (None, None, None)


async def test_rolling_upgrade_entry_with_a_new_field_is_processed(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """An entry written by a newer gateway (an extra field in the job) runs, not dead-letters."""
    settings = make_settings()
    async with running_stack(settings, analyzers=1) as stack:
        scan_id = (await stack.client.post("/api/scans", json=BODY)).json()["scan_id"]
        await stack.wait_terminal(scan_id)
        keys = Keys(settings.prefix)
        raw: Any = await redis.hget(keys.scan(scan_id), "job")
        job = msgspec.json.decode(raw)
        newer = {**job, "scan_id": "f" * 32, "seller_note": "added in version N+1"}
        # What a newer gateway's submit would write, with the field the older analyzer lacks.
        await redis.hset(
            keys.scan("f" * 32),
            mapping={
                "state": "queued",
                "job": msgspec.json.encode(newer),
                "priority": "normal",
                "tenant": "default",
                "attempts": 0,
                "created_ms": int(time.time() * 1000),
                "entry_id": "",
                "colour": "added in version N+1",
            },
        )
        await redis.set(keys.image("f" * 32), label_png())
        entry = await redis.xadd(
            keys.requests("normal"),
            {"scan_id": "f" * 32, "attempts": 0, "job": msgspec.json.encode(newer), "extra": "x"},
        )
        await redis.hset(keys.scan("f" * 32), "entry_id", entry)
        detail = await stack.wait_terminal("f" * 32)
    assert detail["state"] == "completed"
