"""POST /api/batches and its reads, against a real Valkey and uvicorn."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from shared.keys import Keys
from shared.schemas import ScanJob
from shared.settings import Secret, Settings, SettingsError
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.redis import prefix_keys
from tests.support.servers import serve

PNG = label_png()
B64 = base64.b64encode(PNG).decode()
KEY = "k" * 40


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a real gateway."""
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        yield http


def batch(count: int, **defaults: object) -> dict[str, Any]:
    """A valid JSON batch of ``count`` scans sharing ``defaults``."""
    return {
        "scans": [{"image_base64": B64, "product_name": f"Label {i}"} for i in range(count)],
        "defaults": {"category": "toys", "marketplaces": ["US", "DE"], **defaults},
    }


async def commands(redis: Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats)."""
    info = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


async def test_json_batch_is_accepted_in_order(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Every scan is queued with its batch; the answer lists their ids in the order sent."""
    body = batch(3)
    body["scans"][1]["priority"] = "high"
    body["scans"][2]["marketplaces"] = ["FR"]  # an item's field wins over the defaults
    response = await client.post("/api/batches", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    batch_id, scan_ids = accepted["batch_id"], accepted["scan_ids"]
    assert len(scan_ids) == 3
    assert accepted["status_url"].endswith(f"/api/batches/{batch_id}")
    assert accepted["events_url"].endswith(f"/api/batches/{batch_id}/events")

    keys = Keys(settings.prefix)
    jobs = [
        msgspec.json.decode(fields[b"job"], type=ScanJob)
        for stream in keys.request_streams
        for _, fields in await redis.xrange(stream)
    ]
    by_id = {job.scan_id: job for job in jobs}
    assert set(by_id) == set(scan_ids)
    assert [by_id[s].product_name for s in scan_ids] == ["Label 0", "Label 1", "Label 2"]
    assert by_id[scan_ids[1]].priority == "high"
    assert by_id[scan_ids[2]].marketplaces == ["FR"]
    assert {job.batch for job in jobs} == {batch_id}
    assert await redis.get(keys.image(scan_ids[0])) == PNG

    status = (await client.get(f"/api/batches/{batch_id}")).json()
    assert status["state"] == "running"
    assert status["total"] == 3
    assert status["counts"]["queued"] == 3
    assert status["counts"]["pending"] == 3
    assert status["progress"] == 0
    assert status["scan_ids"] == scan_ids
    assert status["next_cursor"] is None
    assert "aggregate" not in status or status["aggregate"] is None
    scan = (await client.get(f"/api/scans/{scan_ids[0]}")).json()
    assert scan["state"] == "queued"
    assert scan["batch_id"] == batch_id
    # A batch's scans are listed like single ones (accepted in one millisecond: by id).
    listed = (await client.get("/api/scans", params={"limit": 10})).json()
    assert sorted(item["scan_id"] for item in listed["items"]) == sorted(scan_ids)


async def test_scan_ids_are_paged(client: httpx.AsyncClient) -> None:
    """?cursor=&limit= walks the scan ids in order; bad values are a 422 naming the field."""
    accepted = (await client.post("/api/batches", json=batch(5))).json()
    url = f"/api/batches/{accepted['batch_id']}"
    seen: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = (await client.get(url, params={"cursor": cursor, "limit": 2})).json()
        seen += page["scan_ids"]
        cursor = page["next_cursor"]
    assert seen == accepted["scan_ids"]
    bad = await client.get(url, params={"limit": "0"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "limit"


async def test_invalid_batch_names_every_refused_scan_and_writes_nothing(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """All or nothing: per-scan errors by index and field, and not one key written."""
    body = batch(5)
    body["scans"][1]["category"] = "weapons"
    body["scans"][3]["image_base64"] = "not base64!"
    body["scans"][4]["image_url"] = "https://example.com/label.png"  # two image sources
    response = await client.post("/api/batches", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "invalid_batch"
    found = {(e["index"], e["field"]) for e in answer["errors"]}
    assert found == {(1, "category"), (3, "image_base64"), (4, "image")}
    assert all(e["reason"] for e in answer["errors"])
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_batch_size_and_body_caps(make_settings: SettingsFactory) -> None:
    """More scans than BATCH_MAX_SCANS, or a body over BATCH_MAX_BODY_BYTES, is refused."""
    settings = make_settings(batch_max_scans=3, batch_max_body_bytes=64 * 1024)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        many = await http.post("/api/batches", json=batch(4))
        assert many.status_code == 422
        assert many.json()["field"] == "scans"
        empty = await http.post("/api/batches", json={"scans": []})
        assert empty.status_code == 422
        odd = await http.post("/api/batches", json={"scans": [], "defaults": 3})
        assert (odd.status_code, odd.json()["field"]) == (422, "defaults")
        stray = await http.post("/api/batches", json={"scans": [], "extra": 1})
        assert (stray.status_code, stray.json()["field"]) == (422, "extra")
        big = batch(3)
        big["scans"][0]["product_name"] = "x" * 100_000
        too_large = await http.post("/api/batches", json=big)
        assert too_large.status_code == 413


async def test_500_scans_are_accepted_in_one_round_of_redis_work(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """500 scans in one request: one script call, whatever the count; all 500 queued."""
    body = batch(500)
    await client.post("/api/batches", json=batch(1))  # warm: the script is loaded
    before = await commands(redis)
    started = time.perf_counter()
    response = await client.post("/api/batches", json=body)
    elapsed = time.perf_counter() - started
    after = await commands(redis)
    assert response.status_code == 202, response.text
    print(f"500-scan batch accepted in {elapsed * 1000:.0f} ms")
    assert elapsed < 5.0  # generous: the machine is shared
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 1
    keys = Keys(settings.prefix)
    assert await redis.xlen(keys.requests("normal")) == 501
    assert len(response.json()["scan_ids"]) == 500


async def test_multipart_batch_takes_many_files_and_shared_fields(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Many `image` parts plus shared fields; a product name defaults to the file's name."""
    files = [("image", (f"sku-{i}.png", PNG, "image/png")) for i in range(3)]
    data = {"category": "cosmetics", "marketplaces": "FR,DE", "priority": "low"}
    response = await client.post("/api/batches", files=files, data=data)
    assert response.status_code == 202, response.text
    scan_ids = response.json()["scan_ids"]
    details = [(await client.get(f"/api/scans/{s}")).json() for s in scan_ids]
    assert [d["product_name"] for d in details] == ["sku-0", "sku-1", "sku-2"]
    assert {d["category"] for d in details} == {"cosmetics"}
    assert details[0]["marketplaces"] == ["FR", "DE"]
    keys = Keys(settings.prefix)
    assert await redis.xlen(keys.requests("low")) == 3
    assert await redis.get(keys.image(scan_ids[2])) == PNG

    bad = [
        ("image", ("a.png", PNG, "image/png")),
        ("image", ("b.png", b"not an image", "image/png")),
    ]
    before = await prefix_keys(redis, settings.prefix)
    refused = await client.post("/api/batches", files=bad, data=data)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"index": 1, "field": "image", "reason": "image must be PNG, JPEG, GIF or WebP"}
    ]
    assert await prefix_keys(redis, settings.prefix) == before


async def test_idempotency_key_replays_the_batch(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Same key and body: the same batch, nothing new; another body: 422, nothing written."""
    headers = {"idempotency-key": "catalogue-2026-11"}
    first = await client.post("/api/batches", json=batch(3), headers=headers)
    again = await client.post("/api/batches", json=batch(3), headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["batch_id"] == first.json()["batch_id"]
    assert again.json()["scan_ids"] == first.json()["scan_ids"]
    other = await client.post("/api/batches", json=batch(2), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_conflict"
    assert await redis.xlen(Keys(settings.prefix).requests("normal")) == 3


async def test_quota_counts_each_scan_and_refuses_a_batch_it_cannot_cover(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A quota of 5: a batch of 3 passes, the next batch of 3 is a 429 writing nothing."""
    settings = make_settings(tenant_scans_per_day=5)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        assert (await http.post("/api/batches", json=batch(3))).status_code == 202
        stream = Keys(settings.prefix).requests("normal")
        refused = await http.post("/api/batches", json=batch(3))
        assert refused.status_code == 429
        assert refused.json()["error"] == "quota_exceeded"
        assert "cannot cover 3" in refused.json()["detail"]
        assert await redis.xlen(stream) == 3
        assert (await http.post("/api/batches", json=batch(2))).status_code == 202
        assert await redis.xlen(stream) == 5


async def test_request_rate_counts_a_batch_as_one_request(make_settings: SettingsFactory) -> None:
    """At 2 requests/s a batch of 50 leaves room for one more request, then 429."""
    settings = make_settings(
        auth=True,
        api_keys=(("acme", Secret(KEY)),),
        event_keys=(Secret("e" * 40),),
        tenant_rps=2.0,
    )
    auth = {"authorization": f"Bearer {KEY}"}
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10, headers=auth) as http,
    ):
        first = await http.post("/api/batches", json=batch(50))
        assert first.status_code == 202, first.text
        assert "token=" in first.json()["events_url"]
        second = await http.get(f"/api/batches/{first.json()['batch_id']}")
        assert second.status_code == 200
        assert second.json()["total"] == 50
        assert (await http.get("/api/queue/stats")).status_code == 429


async def test_other_tenants_batch_is_not_found(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """No key: 401, nothing written; a batch is its tenant's: another key gets a 404."""
    settings = make_settings(
        auth=True,
        api_keys=(("acme", Secret(KEY)), ("other", Secret("o" * 40))),
        event_keys=(Secret("e" * 40),),
    )
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        anonymous = await http.post("/api/batches", json=batch(1))
        assert anonymous.status_code == 401
        assert await prefix_keys(redis, settings.prefix) == set()
        made = await http.post(
            "/api/batches", json=batch(1), headers={"authorization": f"Bearer {KEY}"}
        )
        url = f"/api/batches/{made.json()['batch_id']}"
        theirs = await http.get(url, headers={"authorization": f"Bearer {'o' * 40}"})
        assert theirs.status_code == 404
        assert theirs.json()["field"] == "batch_id"


def test_batch_settings_are_bounded() -> None:
    """BATCH_MAX_SCANS is 1..1000 (one script call unpacks its arguments); both are read."""
    settings = Settings.from_env({"BATCH_MAX_SCANS": "20", "BATCH_MAX_BODY_BYTES": "1000"})
    assert (settings.batch_max_scans, settings.batch_max_body_bytes) == (20, 1000)
    for bad in ("0", "1001", "many"):
        with pytest.raises(SettingsError, match="BATCH_MAX_SCANS"):
            Settings.from_env({"BATCH_MAX_SCANS": bad})
