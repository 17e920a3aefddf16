"""``SCAN_PARTITIONS``: the keyspace split over hash tags, on one real Valkey."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from analyzer.attempts import AttemptStore
from shared.keys import GROUP, Keys
from shared.layout import LayoutMismatchError, check_layout
from shared.schemas import Progress, ScanError, ScanJob
from shared.settings import Settings
from shared.store import ScanStore
from shared.streamids import parse_stream_id
from tests.conftest import SettingsFactory
from tests.notifier.conftest import running_notifier
from tests.notifier.scans import Publisher
from tests.notifier.test_tenant import EVENT_KEY, last_id, open_tenant, tenant_token
from tests.support.images import label_png
from tests.support.processes import spawn, stop
from tests.support.redis import completed_events
from tests.support.stack import running_stack

PARTS = 3
BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Three partitions on the suite's Valkey."""
    return make_settings(partitions=PARTS)


async def test_scans_spread_over_partitions_and_all_complete(
    settings: Settings, redis: Redis
) -> None:
    """Two analyzers drain three partitions; one tenant's scans land in every partition."""
    keys = Keys(settings.prefix, PARTS)
    async with running_stack(settings, analyzers=2) as stack:
        ids = [
            (await stack.client.post("/api/scans", json={**BODY, "tenant": "big"})).json()[
                "scan_id"
            ]
            for _ in range(30)
        ]
        details = [await stack.wait_terminal(i) for i in ids]
        stats = (await stack.client.get("/api/queue/stats")).json()
    assert all(d["state"] == "completed" for d in details)
    by_partition = collections.Counter(keys.of_scan(i).index for i in ids)
    assert set(by_partition) == {0, 1, 2}, "one tenant's scans spread over every partition"
    for part in keys.partitions:
        counted = await redis.hget(part.stats, "completed")
        assert int(counted or 0) == by_partition[part.index]
    assert stats["completed"] == 30 and stats["waiting"] == 0
    assert await completed_events(redis, keys) == dict.fromkeys(ids, 1)


async def test_idempotent_replay_finds_the_scan_in_its_partition(settings: Settings) -> None:
    """The same Idempotency-Key gives the same scan, whichever partition holds it."""
    async with running_stack(settings, analyzers=0) as stack:
        answers = [
            await stack.client.post(
                "/api/scans", json=BODY, headers={"idempotency-key": f"order-{n}"}
            )
            for n in range(6)
            for _ in range(2)
        ]
    ids = [a.json()["scan_id"] for a in answers]
    assert [a.status_code for a in answers[::2]] == [202] * 6
    assert ids[::2] == ids[1::2]
    assert len(set(ids)) == 6


async def test_dead_letters_merge_partitions_and_cursors_stay_the_callers(
    settings: Settings, redis: Redis
) -> None:
    """Pages newest first across partitions; a cursor never names another tenant's entry."""
    scans = ScanStore(redis, settings)
    attempts = AttemptStore(redis, settings)
    for part in scans.keys.partitions:
        await redis.xgroup_create(part.requests("normal"), GROUP, id="0", mkstream=True)
    failed: dict[str, list[str]] = {"acme": [], "rival": []}
    for n in range(8):
        tenant = "acme" if n % 4 else "rival"
        job = ScanJob(
            scan_id=scans.new_scan_id(),
            category="toys",
            marketplaces=["US"],
            product_name=f"Item {n}",
            tenant=tenant,
            submitted_at_ms=1,
        )
        assert await scans.submit(job, b"\x89PNG") is None
        stream = scans.keys.of_scan(job.scan_id).requests("normal")
        reply: Any = await redis.xreadgroup(GROUP, "w", {stream: ">"}, count=1)
        entry_id = reply[0][1][0][0].decode()
        claim = await attempts.claim(
            job, entry_id, stream, "w", Progress(stage="fetching", percentage=10, message="x")
        )
        assert claim is not None
        assert await attempts.fail(claim, ScanError(kind="x", message=f"boom {n}"), 10)
        failed[tenant].append(job.scan_id)
        await asyncio.sleep(0.002)  # distinct entry ids, so newest-first is well defined
    assert {scans.keys.of_scan(s).index for s in failed["acme"]} != {0}

    seen: list[str] = []
    cursors: list[str] = []
    before = None
    while True:
        page = await scans.dead_letters(1, before, "acme")
        seen += [item.scan_id for item in page.items]
        if page.next is None:
            break
        cursors.append(page.next)
        before = page.next
    assert seen == list(reversed(failed["acme"]))
    own_ids = {item.id for item in (await scans.dead_letters(50, None, "acme")).items}
    assert set(cursors) <= own_ids
    nobody = await scans.dead_letters(1, None, "nobody")
    assert nobody.items == [] and nobody.next is None
    everyone = await scans.dead_letters(50, None)
    assert {i.scan_id for i in everyone.items} == {*failed["acme"], *failed["rival"]}
    order = [parse_stream_id(i.id) for i in everyone.items]
    assert order == sorted(order, reverse=True)


async def test_tenant_stream_resumes_exactly_across_partitions_and_replicas(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """The tenant stream's id holds one position per partition: a resume on another
    notifier replica gets exactly what was missed, in every partition."""
    settings = make_settings(partitions=PARTS, auth=True, event_keys=(EVENT_KEY,))
    publisher = Publisher(redis, settings)
    await publisher.setup()
    token = tenant_token("acme")
    async with running_notifier(settings) as one, running_notifier(settings) as two:
        async with open_tenant(one.client, token) as stream:
            await stream.next_message()  # retry:
            await stream.next_message()  # the starting position
            first_scans = [await publisher.submit("acme", partition=n % PARTS) for n in range(6)]
            for scan_id in first_scans[:3]:
                await publisher.run_to_completion(scan_id, steps=1)
            seen = await stream.events(6 + 3 * 3)  # six queued, three scans run
            resume = last_id(stream)
        assert resume is not None and resume.count(",") == PARTS - 1
        for scan_id in first_scans[3:]:
            await publisher.run_to_completion(scan_id, steps=1)
        await publisher.submit("rival")
        everything = await publisher.tenant_events("acme")
        missed = len(everything) - len(seen)
        async with open_tenant(two.client, token, resume) as again:
            replayed = await again.events(missed)
            late = await publisher.submit("acme")
            live = await again.events(1)
    got = [(json.loads(m.data or "")["scan_id"], m.data) for m in seen + replayed]
    want = [(json.loads(data)["scan_id"], data) for _, data in everything]
    assert sorted(got) == sorted(want), "every event once, none missing"
    assert len(got) == len(set(got))
    for scan_id in first_scans:  # per scan (so per partition), in order
        mine = [d for s, d in got if s == scan_id]
        assert mine == [d for s, d in want if s == scan_id]
    assert json.loads(live[0].data or "")["scan_id"] == late


async def test_a_different_partition_count_refuses_to_start(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """The count is recorded at first start; another count stops with one clear line."""
    settings = make_settings(partitions=PARTS)
    await check_layout(settings)
    await check_layout(settings)  # the same count starts again
    other = make_settings(partitions=2)
    with pytest.raises(LayoutMismatchError, match="SCAN_PARTITIONS=3"):
        await check_layout(other)
    log = tmp_path / "gateway.log"
    proc = spawn("gateway", other, log=log)
    try:
        code = await asyncio.to_thread(proc.wait, 20)
    finally:
        stop(proc)
    lines = [line for line in log.read_text().splitlines() if "configuration error" in line]
    assert code == 2
    assert len(lines) == 1 and "SCAN_PARTITIONS=2" in lines[0]


def test_scan_ids_and_tags_spread_evenly() -> None:
    """Tags sit in equal slot ranges; new ids spread evenly, or land where asked."""
    from redis.crc import key_slot

    keys = Keys("spread", 6)
    slots = [key_slot(p.tag.encode()) for p in keys.partitions]
    assert slots == sorted(slots)
    assert all(i * 16384 // 6 <= s < (i + 1) * 16384 // 6 for i, s in enumerate(slots))
    counts = collections.Counter(keys.of_scan(keys.new_scan_id()).index for _ in range(6000))
    assert min(counts.values()) > 800
    for part in keys.partitions:
        assert keys.of_scan(keys.new_scan_id(part)) is part
    assert Keys("spread").only.tag == "{spread}"  # one partition: the layout of old
