"""Scan lists and long-polls on a real Valkey Cluster: three partitions over three primaries."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.app import create_app
from shared.keys import Keys
from tests.conftest import SettingsFactory
from tests.support.cluster import ValkeyCluster
from tests.support.servers import serve

PARTS = 3
BODY = {
    "image_url": "https://example.invalid/label.png",
    "category": "toys",
    "marketplaces": ["US"],
}


async def test_list_and_long_poll_on_a_cluster(
    make_settings: SettingsFactory, valkey_cluster: ValkeyCluster
) -> None:
    """Listing pages merge the partitions (whose keys sit on different primaries) in order,
    search works across them, and a long-poll wakes on a cancel in any partition."""
    settings = make_settings(redis_url=valkey_cluster.url, redis_mode="cluster", partitions=PARTS)
    keys = Keys(settings.prefix, PARTS)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=40) as http,
    ):
        ids: list[str] = []
        while (
            len(ids) < 15
            or min(sum(keys.of_scan(i) is p for i in ids) for p in keys.partitions) < 2
        ):
            name = f"Item-{len(ids):03d}"
            response = await http.post("/api/scans", json={**BODY, "product_name": name})
            assert response.status_code == 202, response.text
            ids.append(response.json()["scan_id"])
        listed: list[str] = []
        cursor = None
        while True:
            params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/scans", params=params)).json()
            listed += [item["scan_id"] for item in page["items"]]
            if (cursor := page["next"]) is None:
                break
        found = (await http.get("/api/scans", params={"q": "ITEM-007"})).json()["items"]

        polls = {
            scan_id: asyncio.create_task(
                http.get(f"/api/scans/{scan_id}/status", params={"wait": 30})
            )
            for scan_id in [next(i for i in ids if keys.of_scan(i) is p) for p in keys.partitions]
        }
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for scan_id in polls:
            assert (await http.delete(f"/api/scans/{scan_id}")).status_code == 200
        answers = await asyncio.gather(*polls.values())
        elapsed = time.monotonic() - started
    assert {keys.of_scan(i).index for i in ids} == set(range(PARTS))
    assert listed == ids[::-1]
    assert [item["scan_id"] for item in found] == [ids[7]]
    assert {keys.of_scan(i).index for i in polls} == set(range(PARTS)), "every partition"
    assert all(a.json()["state"] == "cancelled" for a in answers)
    assert elapsed < 30, "woken by the cancels, not by the end of the wait"
