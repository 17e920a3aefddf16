"""Operator controls at runtime: pause and resume, limits, audit; admins only."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime

import httpx
import msgspec
from redis.asyncio import Redis

from gateway.app import create_app
from shared.embedded import free_port
from shared.errors import BackendError, InvalidImageError
from shared.keys import Keys
from shared.schemas import ScanEvent
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import run_emulator
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.processes import spawn, stop, wait_http
from tests.support.servers import serve
from tests.support.stack import Stack, running_stack

PNG = base64.b64encode(label_png()).decode()
ADMIN_KEY = "key-admin-0123456789abcdef"
TENANT_KEY = "key-a-0123456789abcdef"

ADMIN_ROUTES = [
    ("POST", "/api/admin/pause"),
    ("POST", "/api/admin/resume"),
    ("GET", "/api/admin/controls"),
    ("GET", "/api/admin/limits"),
    ("PATCH", "/api/admin/limits"),
    ("GET", "/api/admin/audit"),
    ("POST", "/api/admin/dead/retry"),
    ("POST", "/api/admin/dead/purge"),
    ("POST", "/api/admin/cancel-queued"),
    ("POST", "/api/admin/drain"),
]


def body(name: str, tenant: str, priority: str = "normal") -> dict[str, object]:
    return {
        "image_base64": PNG,
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": name,
        "tenant": tenant,
        "priority": priority,
    }


async def submit(stack: Stack, tenant: str, n: int) -> list[str]:
    return [
        (await stack.client.post("/api/scans", json=body(f"{tenant}-{i}", tenant))).json()[
            "scan_id"
        ]
        for i in range(n)
    ]


async def history(redis: Redis, settings: Settings, scan_id: str) -> list[ScanEvent]:
    keys = Keys(settings.prefix, settings.partitions)
    raw = await redis.xrange(keys.scan_events(scan_id))
    return [msgspec.json.decode(f[b"event"], type=ScanEvent) for _, f in raw]


async def waiting_in_streams(redis: Redis, settings: Settings) -> int:
    keys = Keys(settings.prefix, settings.partitions)
    return sum([await redis.xlen(s) for p in keys.partitions for s in p.request_streams])


async def test_pause_holds_scans_queued_and_resume_runs_them(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Paused: nothing starts, scans leave the request streams and say `paused` once;
    a tenant's pause leaves other tenants running; after resume every scan completes."""
    settings = make_settings(worker_concurrency=2, partitions=2)
    backend = ScriptedBackend(settings, delay_s=0.02)
    async with running_stack(settings, analyzers=2, backend=backend) as stack:
        paused = await stack.client.post("/api/admin/pause", json={})
        assert paused.status_code == 200 and paused.json()["pauses"][0]["tenant"] is None
        a_ids = await submit(stack, "A", 5)
        b_ids = await submit(stack, "B", 5)
        await asyncio.sleep(1.2)
        assert backend.order == []
        # Out of the request streams: no lag for the autoscaler to scale up for.
        assert await waiting_in_streams(redis, settings) == 0
        status = (await stack.client.get(f"/api/scans/{a_ids[0]}/status")).json()
        assert status["state"] == "scheduled" and status["progress"]["stage"] == "paused"
        assert "all scans" in status["progress"]["message"]

        await stack.client.post("/api/admin/pause", json={"tenant": "A"})
        await stack.client.post("/api/admin/resume", json={})
        for sid in b_ids:
            assert (await stack.wait_terminal(sid))["state"] == "completed"
        await asyncio.sleep(0.5)
        assert not any(name.startswith("A") for name in backend.order)
        status = (await stack.client.get(f"/api/scans/{a_ids[0]}/status")).json()
        assert status["progress"]["stage"] == "paused"
        assert "tenant A" in status["progress"]["message"]

        await stack.client.post("/api/admin/resume", json={"tenant": "A"})
        for sid in a_ids:
            assert (await stack.wait_terminal(sid))["state"] == "completed"
        log = (await stack.client.get("/api/admin/audit")).json()["entries"]
    assert sorted(backend.order) == sorted(f"{t}-{i}" for t in "AB" for i in range(5))
    assert [e["action"] for e in log] == ["resume", "resume", "pause", "pause"]
    assert log[0]["who"] and msgspec.json.decode(log[0]["detail"]) == {
        "tenant": "A",
        "priority": None,
    }
    events = await history(redis, settings, a_ids[0])
    stages = [e.progress.stage for e in events]
    # Announced once per pause that held it (all, then tenant A), not at every turn.
    assert stages.count("paused") == 2, stages
    assert "failed" not in stages and stages[-1] == "completed"


async def test_priority_pause_holds_due_scheduled_scans(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A paused priority holds only that level; a scheduled scan of it that falls due
    stays in the schedule and says it is paused."""
    settings = make_settings(worker_concurrency=2)
    backend = ScriptedBackend(settings)
    async with running_stack(settings, backend=backend) as stack:
        await stack.client.post("/api/admin/pause", json={"priority": "low"})
        low = (await stack.client.post("/api/scans", json=body("low", "A", "low"))).json()
        later = {**body("later", "A", "low"), "delay_ms": 200}
        scheduled = (await stack.client.post("/api/scans", json=later)).json()
        high = (await stack.client.post("/api/scans", json=body("high", "A", "high"))).json()
        assert (await stack.wait_terminal(high["scan_id"]))["state"] == "completed"
        await asyncio.sleep(0.9)
        assert backend.order == ["high"]
        status = (await stack.client.get(f"/api/scans/{scheduled['scan_id']}/status")).json()
        assert status["state"] == "scheduled" and status["progress"]["stage"] == "paused"
        assert await waiting_in_streams(redis, settings) == 0
        await stack.client.post("/api/admin/resume", json={"priority": "low"})
        for sid in (low["scan_id"], scheduled["scan_id"]):
            assert (await stack.wait_terminal(sid))["state"] == "completed"
    stages = [e.progress.stage for e in await history(redis, settings, scheduled["scan_id"])]
    assert stages[:3] == ["scheduled", "paused", "queued"], stages


async def test_admin_routes_are_404_for_tenants_and_bodies_are_checked(
    make_settings: SettingsFactory,
) -> None:
    """Every admin route answers a tenant's key as an unknown path; admins get through."""
    settings = make_settings(
        auth=True,
        api_keys=(("a", Secret(TENANT_KEY)), ("ops", Secret(ADMIN_KEY))),
        admin_tenants=("ops",),
        event_keys=(Secret("e" * 40),),
    )
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        tenant = {"authorization": f"Bearer {TENANT_KEY}"}
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        for method, path in ADMIN_ROUTES:
            answer = await http.request(method, path, headers=tenant, json={})
            assert answer.status_code == 404, (method, path)
        bad = await http.post("/api/admin/pause", headers=admin, json={"tenant": "a:b"})
        unknown = await http.post("/api/admin/pause", headers=admin, json={"queue": "x"})
        negative = await http.patch("/api/admin/limits", headers=admin, json={"anthropic_rpm": -1})
        ok = await http.post("/api/admin/pause", headers=admin, json={"tenant": "a"})
        log = (await http.get("/api/admin/audit", headers=admin)).json()["entries"]
    assert [bad.status_code, unknown.status_code, negative.status_code] == [422, 422, 422]
    assert bad.json()["field"] == "tenant" and negative.json()["field"] == "anthropic_rpm"
    assert ok.status_code == 200
    assert [(e["who"], e["action"]) for e in log] == [("ops", "pause")]


LOWERED_RPM = 5
WINDOW_S = 60.0  # the API's window: a minute
SETTLE_LIMIT_S = 1.5
"""The claim is one second (a replica applies a change on the control channel's hint
at once, or when its copy is half a second old); the rest is for a loaded 2-core
machine, where a replica's event loop may wait its turn."""


def settle_time(arrivals: list[float], changed_at: float, limit: int) -> float:
    """Seconds after ``changed_at`` until the API stops seeing more than ``limit`` calls
    in any window ending at a call (counting the calls before the change too)."""
    late = 0.0
    for index, at in enumerate(arrivals):
        in_window = sum(1 for earlier in arrivals[: index + 1] if earlier > at - WINDOW_S)
        if at >= changed_at and in_window > limit:
            late = at - changed_at
    return late


async def test_rpm_lowered_at_runtime_is_obeyed_by_three_replicas(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Three analyzer processes call the (emulated) API freely; an admin lowers the
    fleet-wide RPM below what the last minute already holds: measured at the API, the
    calls stop within a second and none follow while scans wait; restoring the setting
    lets every scan finish."""
    # The emulated API sets no limit of its own: what it counts is what the fleet sent.
    async with run_emulator(delay_s=0.3) as emulator:
        settings = make_settings(
            analyzer_backend="claude",
            anthropic_api_key=Secret("sk-rt"),
            anthropic_base_url=emulator.base_url,
            anthropic_rpm=6000,  # the fleet's calls are booked, far from this limit
            worker_concurrency=4,
            shutdown_grace_s=0.5,
        )
        ports = [free_port() for _ in range(3)]
        procs = [spawn("analyzer", settings, ANALYZER_HEALTH_PORT=str(p)) for p in ports]
        try:
            for proc, port in zip(procs, ports, strict=True):
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
            async with running_stack(settings, analyzers=0) as stack:
                ids = await submit(stack, "A", 60)
                async with asyncio.timeout(30):
                    while len(emulator.arrived_at) < 15:
                        await asyncio.sleep(0.01)
                changed_at = time.monotonic()
                patched = await stack.client.patch(
                    "/api/admin/limits", json={"anthropic_rpm": LOWERED_RPM}
                )
                answered_at = time.monotonic()
                await asyncio.sleep(SETTLE_LIMIT_S + 3.0)
                arrivals = sorted(emulator.arrived_at)
                stages = [
                    (await stack.client.get(f"/api/scans/{sid}/status")).json()["progress"]["stage"]
                    for sid in ids
                ]
                limiter = (await stack.client.get("/api/queue/stats")).json()["limiter"]
                keys = Keys(settings.prefix, settings.partitions)
                held_by = {
                    await redis.hget(keys.scan(sid), "owner")
                    for sid, stage in zip(ids, stages, strict=True)
                    if stage == "waiting"
                }
                restored = await stack.client.patch(
                    "/api/admin/limits", json={"anthropic_rpm": None}
                )
                for sid in ids:
                    assert (await stack.wait_terminal(sid, timeout=60))["state"] == "completed"
        finally:
            for proc in procs:
                stop(proc)
    before = [t for t in arrivals if t < changed_at]
    after = [t for t in arrivals if t >= changed_at]
    settle = settle_time(arrivals, changed_at, LOWERED_RPM)
    rate = len([t for t in before if t >= changed_at - 1.0])
    print(
        f"\nRPM {LOWERED_RPM} set by PATCH (answered in {answered_at - changed_at:.3f} s) "
        f"with {len(before)} calls already in the minute ({rate} in the second before); "
        f"calls at the API after it: {len(after)}, the last {settle:.3f} s after the PATCH "
        f"was sent; none in the {changed_at + SETTLE_LIMIT_S + 3.0 - max(arrivals):.1f} s "
        f"after that, while {stages.count('waiting')} scans waited"
    )
    assert patched.json()["limits"]["anthropic_rpm"] == LOWERED_RPM
    assert len(before) >= 15 > LOWERED_RPM
    assert settle <= SETTLE_LIMIT_S, f"calls still reached the API {settle:.2f} s after"
    assert not [t for t in arrivals if t > changed_at + SETTLE_LIMIT_S]
    # Every slot of every replica (3 x 4) holds a scan waiting for API capacity.
    assert stages.count("waiting") == 12, stages
    assert len(held_by) == 3, held_by  # every replica had scans held back by the limit
    assert limiter["requests_per_minute_limit"] == LOWERED_RPM
    assert restored.json()["limits"]["anthropic_rpm"] == 6000
    assert emulator.ok_count == 60 and emulator.rejected == 0


async def test_key_rate_and_daily_quota_change_at_runtime(make_settings: SettingsFactory) -> None:
    """Per-key requests per second and scans per day follow the admin's change at once."""
    settings = make_settings(
        auth=True,
        api_keys=(("a", Secret(TENANT_KEY)), ("ops", Secret(ADMIN_KEY))),
        admin_tenants=("ops",),
        event_keys=(Secret("e" * 40),),
    )
    tenant = {"authorization": f"Bearer {TENANT_KEY}"}
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        before = [
            (await http.get("/api/queue/stats", headers=tenant)).status_code for _ in range(5)
        ]
        await http.patch("/api/admin/limits", headers=admin, json={"tenant_rps": 1})
        after = [(await http.get("/api/queue/stats", headers=tenant)).status_code for _ in range(5)]
        await http.patch(
            "/api/admin/limits",
            headers=admin,
            json={"tenant_rps": None, "tenant_scans_per_day": 1},
        )
        scans = [
            await http.post("/api/scans", headers=tenant, json=body(f"q{i}", "default"))
            for i in range(2)
        ]
        limits = (await http.get("/api/admin/limits", headers=admin)).json()
    assert before == [200] * 5
    assert after[0] == 200 and 429 in after
    assert [r.status_code for r in scans] == [202, 429]
    assert scans[1].json()["error"] == "quota_exceeded"
    assert limits["limits"]["tenant_rps"] == settings.tenant_rps
    assert limits["overridden"] == ["tenant_scans_per_day"]


async def test_bulk_retry_purge_and_cancel_queued(make_settings: SettingsFactory) -> None:
    """Dead letters retried or purged by tenant, kind and time, counted first by a dry
    run; a tenant's waiting scans cancelled at once, other tenants' left alone."""
    settings = make_settings(worker_concurrency=4, partitions=2)

    def first_fails(name: str, n: int) -> Exception | None:
        if n > 1:
            return None
        if name.startswith("bad"):
            return BackendError("400 bad request")
        if name.startswith("odd"):
            return InvalidImageError("unreadable")
        return None

    backend = ScriptedBackend(settings, errors=first_fails)
    async with running_stack(settings, backend=backend) as stack:
        client = stack.client

        async def failed(name: str, tenant: str) -> str:
            sid = (await client.post("/api/scans", json=body(name, tenant))).json()["scan_id"]
            assert (await stack.wait_terminal(sid))["state"] == "failed"
            return sid

        early = [await failed(f"bad{i}", "A") for i in range(3)]
        odd = [await failed(f"odd{i}", "B") for i in range(2)]
        await asyncio.sleep(0.01)
        middle = datetime.now(UTC).isoformat()
        late = await failed("bad-late", "A")

        where = {"tenant": "A", "kind": "backend_error", "failed_before": middle}
        dry = (await client.post("/api/admin/dead/retry", json={**where, "dry_run": True})).json()
        assert dry == {"matched": 3, "done": 0, "dry_run": True}
        assert len((await client.get("/api/dead")).json()["items"]) == 6
        ancient = {"failed_before": "1960-01-01T00:00:00Z", "dry_run": True}
        assert (await client.post("/api/admin/dead/purge", json=ancient)).json()["matched"] == 0
        done = (await client.post("/api/admin/dead/retry", json=where)).json()
        assert done == {"matched": 3, "done": 3, "dry_run": False}
        for sid in early:
            assert (await stack.wait_terminal(sid))["state"] == "completed"

        purge = {"kind": "invalid_image"}
        counted = await client.post("/api/admin/dead/purge", json={**purge, "dry_run": True})
        assert counted.json()["matched"] == 2
        assert (await client.post("/api/admin/dead/purge", json=purge)).json()["done"] == 2
        left = [d["scan_id"] for d in (await client.get("/api/dead")).json()["items"]]
        assert left == [late] and odd[0] not in left

        await client.post("/api/admin/pause", json={"tenant": "C"})
        await asyncio.sleep(0.6)  # the promised bound, not the control channel's hint
        held = [
            (await client.post("/api/scans", json=body(f"c{i}", "C"))).json()["scan_id"]
            for i in range(3)
        ]
        other = (await client.post("/api/scans", json=body("d", "D"))).json()["scan_id"]
        await asyncio.sleep(0.3)
        which = {"tenant": "C"}
        dry = await client.post("/api/admin/cancel-queued", json={**which, "dry_run": True})
        assert dry.json()["matched"] == 3
        done = (await client.post("/api/admin/cancel-queued", json=which)).json()
        assert done == {"matched": 3, "done": 3, "dry_run": False}
        await client.post("/api/admin/resume", json={"tenant": "C"})
        assert [(await stack.wait_terminal(sid))["state"] for sid in held] == ["cancelled"] * 3
        assert (await stack.wait_terminal(other))["state"] == "completed"
        log = (await client.get("/api/admin/audit")).json()["entries"]
    actions = [e["action"] for e in log]
    assert actions[:4] == ["resume", "cancel_queued", "pause", "purge_dead"]
    assert "retry_dead" in actions


async def test_drain_hands_back_and_stops_taking_work(make_settings: SettingsFactory) -> None:
    """A drained analyzer hands its running scans back at once (another runs them) and
    takes nothing new; undrained, it takes work again."""
    settings = make_settings(worker_concurrency=2, visibility_timeout_s=30.0)
    backend = ScriptedBackend(settings, delay_s=0.4)
    async with running_stack(settings, analyzers=2, backend=backend) as stack:
        first = stack.workers[0]
        stats = (await stack.client.get("/api/queue/stats")).json()
        assert sorted(stats["consumer_names"]) == sorted(w.consumer for w in stack.workers)
        ids = await submit(stack, "A", 4)
        async with asyncio.timeout(5):
            while len(first._inflight) == 0:
                await asyncio.sleep(0.01)
        drained = await stack.client.post("/api/admin/drain", json={"consumer": first.consumer})
        assert drained.json() == {"consumer": first.consumer, "draining": True, "delivered": 2}
        async with asyncio.timeout(2):
            while first._inflight or not first.health().draining:
                await asyncio.sleep(0.01)
        processed = first.processed
        more = await submit(stack, "B", 4)
        # Handed back, not waiting out the visibility timeout: done in a few seconds.
        for sid in ids + more:
            assert (await stack.wait_terminal(sid, timeout=8))["state"] == "completed"
        assert first.processed == processed and first.health().draining
        unknown = await stack.client.post("/api/admin/drain", json={"consumer": "nobody"})
        await stack.client.post("/api/admin/drain", json={"consumer": first.consumer, "undo": True})
        async with asyncio.timeout(2):
            while first.drained:
                await asyncio.sleep(0.01)
        late = await submit(stack, "C", 6)
        for sid in late:
            await stack.wait_terminal(sid)
    assert unknown.status_code == 404
    assert first.processed > processed


async def test_tenant_cap_set_at_runtime(make_settings: SettingsFactory) -> None:
    """No cap configured; an admin sets 1: the tenant's scans then run one at a time."""
    settings = make_settings(worker_concurrency=4)
    backend = ScriptedBackend(settings, delay_s=0.15)
    async with running_stack(settings, analyzers=2, backend=backend) as stack:
        await stack.client.patch("/api/admin/limits", json={"tenant_max_active": 1})
        await asyncio.sleep(0.6)  # the promised bound, not the control channel's hint
        ids = await submit(stack, "A", 4)
        for sid in ids:
            assert (await stack.wait_terminal(sid))["state"] == "completed"
    assert backend.max_running["A"] == 1
