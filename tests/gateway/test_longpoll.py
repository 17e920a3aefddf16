"""Long-poll (``?wait=``) and conditional answers (ETag, 304) of status and result."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from shared.embedded import free_port
from shared.keys import Keys
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.processes import spawn, stop, wait_http
from tests.support.servers import serve
from tests.support.stack import worker_task

PNG = base64.b64encode(label_png()).decode()
BODY = {
    "image_url": "https://example.invalid/label.png",
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}
WAIT_S = 30  # far above anything a scan here takes: returning early proves the wake-up


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real gateway (no analyzer)."""
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S + 10) as http,
    ):
        yield http


async def submit(client: httpx.AsyncClient, *, image: bool = False) -> str:
    """A queued scan's id; with ``image``, one an analyzer can run (uploaded, not a URL)."""
    body: dict[str, object] = dict(BODY)
    if image:
        del body["image_url"]
        body["image_base64"] = PNG
    response = await client.post("/api/scans", json=body)
    assert response.status_code == 202, response.text
    scan_id: str = response.json()["scan_id"]
    return scan_id


def wall_ms(iso_time: str) -> float:
    """Milliseconds since the epoch of the gateway's ISO times."""
    from datetime import datetime

    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000


async def test_wait_returns_when_the_scan_completes(make_settings: SettingsFactory) -> None:
    """A real analyzer completes the scan ~1.5 s in: the 30 s long-poll answers right after."""
    settings = make_settings()
    backend = ScriptedBackend(settings, delay_s=1.5)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S + 10) as http,
        worker_task(settings, backend),
    ):
        scan_id = await submit(http, image=True)
        started = time.monotonic()
        response = await http.get(f"/api/scans/{scan_id}", params={"wait": WAIT_S})
        answered_ms = time.time() * 1000
        elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 200
    assert body["state"] == "completed" and body["result"] is not None
    assert elapsed < WAIT_S, "answered at the scan's end, not at the end of the wait"
    latency = answered_ms - wall_ms(body["updated_at"])
    print(f"long-poll answered {latency:.1f} ms after the scan completed ({elapsed:.2f} s wait)")
    assert latency >= 0


async def test_wait_answers_right_after_a_cancel(client: httpx.AsyncClient) -> None:
    """The status long-poll of a queued scan answers when another request cancels it."""
    scan_id = await submit(client)
    poll = asyncio.create_task(client.get(f"/api/scans/{scan_id}/status", params={"wait": WAIT_S}))
    await asyncio.sleep(0.5)
    assert not poll.done(), "a queued scan is not finished: the long-poll waits"
    cancelled = await client.delete(f"/api/scans/{scan_id}")
    cancelled_at = time.monotonic()
    response = await poll
    latency_ms = (time.monotonic() - cancelled_at) * 1000
    print(f"long-poll answered {latency_ms:.1f} ms after the cancel's answer")
    assert cancelled.status_code == 200
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert latency_ms < WAIT_S * 1000


async def test_follow_progress_with_if_none_match(make_settings: SettingsFactory) -> None:
    """?wait= with If-None-Match answers at each change: a client follows every stage."""
    settings = make_settings()
    backend = ScriptedBackend(settings, delay_s=0.5)
    states: list[str] = []
    etags: list[str] = []
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S + 10) as http,
        worker_task(settings, backend),
    ):
        scan_id = await submit(http, image=True)
        response = await http.get(f"/api/scans/{scan_id}/status")
        while True:
            etags.append(response.headers["etag"])
            states.append(response.json()["state"])
            if states[-1] == "completed":
                break
            response = await http.get(
                f"/api/scans/{scan_id}/status",
                params={"wait": WAIT_S},
                headers={"if-none-match": etags[-1]},
            )
            assert response.status_code == 200, "a change before the wait ended"
    assert states[-1] == "completed" and "active" in states
    assert len(set(etags)) == len(etags), "each answer a new version"


async def test_wait_ends_with_the_unchanged_document(client: httpx.AsyncClient) -> None:
    """Nothing happens: after the wait, 200 with the same document and ETag as before."""
    scan_id = await submit(client)
    before = await client.get(f"/api/scans/{scan_id}")
    started = time.monotonic()
    after = await client.get(f"/api/scans/{scan_id}", params={"wait": 1})
    assert time.monotonic() - started >= 0.9
    assert after.status_code == 200
    assert after.content == before.content
    assert after.headers["etag"] == before.headers["etag"]


async def test_wait_with_if_none_match_ends_with_304(client: httpx.AsyncClient) -> None:
    """Nothing changes from the client's version within the wait: 304, no body."""
    scan_id = await submit(client)
    etag = (await client.get(f"/api/scans/{scan_id}/status")).headers["etag"]
    response = await client.get(
        f"/api/scans/{scan_id}/status", params={"wait": 1}, headers={"if-none-match": etag}
    )
    assert response.status_code == 304 and response.content == b""
    assert response.headers["etag"] == etag


async def test_a_finished_scan_answers_at_once(client: httpx.AsyncClient) -> None:
    """wait on a scan that has ended: no waiting at all."""
    scan_id = await submit(client)
    await client.delete(f"/api/scans/{scan_id}")
    started = time.monotonic()
    response = await client.get(f"/api/scans/{scan_id}", params={"wait": WAIT_S})
    assert time.monotonic() - started < WAIT_S / 2
    assert response.json()["state"] == "cancelled"


async def test_etags_and_304(client: httpx.AsyncClient) -> None:
    """Status and result carry a strong ETag; If-None-Match naming it: 304; a change: a new one."""
    scan_id = await submit(client)
    for path in (f"/api/scans/{scan_id}", f"/api/scans/{scan_id}/status"):
        first = await client.get(path)
        etag = first.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"'), "strong"
        assert first.headers["cache-control"] == "private, no-cache"
        assert first.headers["x-content-type-options"] == "nosniff"
        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            cached = await client.get(path, headers={"if-none-match": header})
            assert cached.status_code == 304, header
            assert cached.content == b"" and cached.headers["etag"] == etag
            assert cached.headers["cache-control"] == "private, no-cache"
        other = await client.get(path, headers={"if-none-match": '"other"'})
        assert other.status_code == 200 and other.content == first.content
    before = {
        p: (await client.get(f"/api/scans/{scan_id}{p}")).headers["etag"] for p in ("", "/status")
    }
    await client.delete(f"/api/scans/{scan_id}")
    for suffix, etag in before.items():
        changed = await client.get(f"/api/scans/{scan_id}{suffix}", headers={"if-none-match": etag})
        assert changed.status_code == 200 and changed.json()["state"] == "cancelled"
        assert changed.headers["etag"] != etag


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "1.5", "", "100"])
async def test_bad_wait_is_400(client: httpx.AsyncClient, wait: str) -> None:
    """wait: whole seconds 0-60, else 400 naming it."""
    scan_id = await submit(client)
    for path in (f"/api/scans/{scan_id}", f"/api/scans/{scan_id}/status"):
        response = await client.get(path, params={"wait": wait})
        assert response.status_code == 400, (path, wait)
        assert response.json()["field"] == "wait"


async def test_wait_limit_is_a_setting(make_settings: SettingsFactory) -> None:
    """SCAN_WAIT_LIMIT=2: wait=2 waits, wait=3 is a 400 naming the limit, and the OpenAPI
    document says so."""
    async with (
        serve(create_app(make_settings(scan_wait_limit_s=2))) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        scan_id = await submit(http)
        started = time.monotonic()
        assert (await http.get(f"/api/scans/{scan_id}", params={"wait": "2"})).status_code == 200
        assert time.monotonic() - started >= 1.9
        refused = await http.get(f"/api/scans/{scan_id}", params={"wait": "3"})
        assert refused.status_code == 400 and "0 to 2" in refused.json()["detail"]
        document = (await http.get("/openapi.json")).json()
        wait = next(
            p
            for p in document["paths"]["/api/scans/{scan_id}"]["get"]["parameters"]
            if p["name"] == "wait"
        )
        assert wait["schema"]["maximum"] == 2


async def test_unknown_scan_is_404_without_waiting(client: httpx.AsyncClient) -> None:
    """A scan that does not exist is not waited for."""
    response = await client.get(f"/api/scans/{'0' * 32}", params={"wait": WAIT_S})
    assert response.status_code == 404


async def test_waiters_are_capped(make_settings: SettingsFactory) -> None:
    """SCAN_WAIT_MAX=2: a third long-poll is a 503 with Retry-After; room again once one ends."""
    settings = make_settings(scan_wait_max=2)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S + 10) as http,
    ):
        first, second = await submit(http), await submit(http)

        async def hold(scan_id: str) -> httpx.Response:
            while True:  # until it gets a place (the probe below may hold one for a second)
                response = await http.get(f"/api/scans/{scan_id}", params={"wait": WAIT_S})
                if response.status_code != 503:
                    return response
                await asyncio.sleep(0.05)

        polls = [asyncio.create_task(hold(i)) for i in (first, second)]
        async with asyncio.timeout(WAIT_S):
            while True:  # until both hold their place (each probe waits at most a second)
                third = await http.get(f"/api/scans/{first}", params={"wait": 1})
                if third.status_code == 503:
                    break
                # Leave the place to a holder retrying after its 503, or the probe may
                # take it back every time on a slow machine.
                await asyncio.sleep(0.3)
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"] == "too_many_waiters"
        assert (await http.get(f"/api/scans/{first}")).status_code == 200, "no wait: no cap"
        await http.delete(f"/api/scans/{first}")
        assert (await polls[0]).json()["state"] == "cancelled"
        room = await http.get(f"/api/scans/{second}", params={"wait": 1})
        assert room.status_code == 200
        await http.delete(f"/api/scans/{second}")
        await polls[1]


async def commands(redis: Redis, name: str) -> int:
    """How many times Valkey has run command ``name`` (INFO commandstats)."""
    stats: Any = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_waiting_requests_make_no_redis_calls(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """Forty long-polls wait on one reader: no scan is read while they wait, and the cancels
    wake exactly their own waiters."""
    ids = [await submit(client) for _ in range(40)]
    polls = [
        asyncio.create_task(client.get(f"/api/scans/{i}/status", params={"wait": WAIT_S}))
        for i in ids
    ]
    await asyncio.sleep(1.0)  # every request has read its scan once and sleeps
    before = await commands(redis, "hgetall")
    await asyncio.sleep(2.0)
    assert await commands(redis, "hgetall") == before, "no request reads while it waits"
    clients: Any = await redis.client_list()
    assert sum(c["cmd"] == "xread" for c in clients) <= 1, "one events reader"
    metrics = (await client.get("/metrics")).text
    assert "\nlabelscan_long_polls_waiting 40.0\n" in metrics
    for scan_id in ids[:20]:
        await client.delete(f"/api/scans/{scan_id}")
    done, pending = await asyncio.wait(polls[:20], timeout=WAIT_S / 2)
    assert not pending and all(t.result().json()["state"] == "cancelled" for t in done)
    assert not any(t.done() for t in polls[20:]), "the others still wait"
    for scan_id in ids[20:]:
        await client.delete(f"/api/scans/{scan_id}")
    await asyncio.gather(*polls)


async def test_the_reader_resumes_after_its_connection_is_killed(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    """CLIENT KILL of the events reader's connection: it reconnects from where it was, and a
    cancel made meanwhile still wakes its waiter."""
    scan_id = await submit(client)
    poll = asyncio.create_task(client.get(f"/api/scans/{scan_id}", params={"wait": WAIT_S}))
    async with asyncio.timeout(WAIT_S):
        while True:  # the reader is blocked in XREAD
            clients: Any = await redis.client_list()
            readers = [c for c in clients if c["cmd"] == "xread"]
            if readers:
                break
            await asyncio.sleep(0.05)
    for reader in readers:
        await redis.client_kill_filter(_id=reader["id"])
    await client.delete(f"/api/scans/{scan_id}")  # while the reader is reconnecting
    response = await poll
    assert response.status_code == 200 and response.json()["state"] == "cancelled"


async def test_long_poll_over_partitions(make_settings: SettingsFactory) -> None:
    """SCAN_PARTITIONS=3: one reader per partition; a waiter wakes whichever holds its scan."""
    settings = make_settings(partitions=3)
    keys = Keys(settings.prefix, 3)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S + 10) as http,
    ):
        ids: list[str] = []
        while len({keys.of_scan(i).index for i in ids}) < 3:  # one in each partition at least
            ids.append(await submit(http))
        polls = [
            asyncio.create_task(http.get(f"/api/scans/{i}/status", params={"wait": WAIT_S}))
            for i in ids
        ]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for scan_id in ids:
            await http.delete(f"/api/scans/{scan_id}")
        answers = await asyncio.gather(*polls)
        elapsed = time.monotonic() - started
    assert all(a.json()["state"] == "cancelled" for a in answers)
    assert elapsed < WAIT_S


async def test_a_stopping_gateway_answers_its_long_polls(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """SIGTERM to a gateway process: its waiting requests get the current document at once
    (not a dropped connection after the shutdown grace), and it exits on the signal."""
    port = free_port()
    settings = make_settings(gateway_port=port)
    gateway = spawn("gateway", settings, log=tmp_path / "gateway.log")
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, f"{url}/readyz", gateway)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S + 10) as http:
            scan_id = await submit(http)
            poll = asyncio.create_task(http.get(f"/api/scans/{scan_id}", params={"wait": WAIT_S}))
            await asyncio.sleep(0.5)
            assert not poll.done()
            stopping = time.monotonic()
            gateway.send_signal(signal.SIGTERM)
            response = await poll
            answered_s = time.monotonic() - stopping
    finally:
        code = await asyncio.to_thread(stop, gateway)
    assert response.status_code == 200 and response.json()["state"] == "queued"
    assert answered_s < 5, "answered as the shutdown began, not cut off after its grace"
    assert code in (0, -signal.SIGTERM), "uvicorn re-raises the SIGTERM once it has stopped"
