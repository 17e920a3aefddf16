"""API keys and tenants: 401 without a key, 404 for other tenants' scans, per-key limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from notifier.app import create_app as create_notifier
from shared import tokens
from shared.errors import BackendError
from shared.settings import Secret, Settings, SettingsError
from tests.conftest import SettingsFactory
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.servers import serve
from tests.support.sse import EventStream
from tests.support.stack import running_stack

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
EVENT_KEY = Secret("e" * 40)
BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}


def secured(make_settings: SettingsFactory, **extra: object) -> Settings:
    """Settings with auth on: tenants a and b."""
    return make_settings(
        auth=True,
        api_keys=(("a", Secret(KEY_A)), ("b", Secret(KEY_B))),
        event_keys=(EVENT_KEY,),
        **extra,
    )


def as_tenant(key: str) -> dict[str, str]:
    """The Authorization header of ``key``."""
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway with auth on."""
    async with (
        serve(create_app(secured(make_settings))) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        yield http


async def test_requests_without_a_valid_key_are_401(client: httpx.AsyncClient) -> None:
    """No key, a wrong key, or another scheme: 401 with a JSON body and WWW-Authenticate."""
    for headers in ({}, as_tenant("nope-nope-nope-nope"), {"authorization": f"Basic {KEY_A}"}):
        response = await client.post("/api/scans", json=BODY, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get("/api/queue/stats")).status_code == 401
    assert (await client.get("/healthz")).status_code == 200


async def test_other_tenants_scans_are_404(client: httpx.AsyncClient) -> None:
    """Every read and write on another tenant's scan answers 404, as if it did not exist."""
    created = await client.post("/api/scans", json=BODY, headers=as_tenant(KEY_A))
    assert created.status_code == 202
    scan_id = created.json()["scan_id"]
    for method, path in (
        ("GET", ""),
        ("GET", "/status"),
        ("GET", "/events-url"),
        ("DELETE", ""),
        ("POST", "/retry"),
    ):
        theirs = await client.request(
            method, f"/api/scans/{scan_id}{path}", headers=as_tenant(KEY_B)
        )
        assert theirs.status_code == 404, (method, path)
        assert theirs.json()["error"] == "not_found"
    mine = await client.get(f"/api/scans/{scan_id}", headers=as_tenant(KEY_A))
    assert mine.status_code == 200 and mine.json()["tenant"] == "a"


async def test_tenant_comes_from_the_key(client: httpx.AsyncClient) -> None:
    """A body naming another tenant is refused; the key decides."""
    response = await client.post(
        "/api/scans", json={**BODY, "tenant": "b"}, headers=as_tenant(KEY_A)
    )
    assert response.status_code == 422 and response.json()["field"] == "tenant"


async def test_accepted_scan_carries_an_event_token(client: httpx.AsyncClient) -> None:
    """The 202 gives a signed, short-lived token for this scan and an events_url with it."""
    body = (await client.post("/api/scans", json=BODY, headers=as_tenant(KEY_A))).json()
    grant = tokens.verify((EVENT_KEY,), body["events_token"])
    assert (grant.scope, grant.subject) == ("s", body["scan_id"])
    assert body["events_url"].endswith(f"?token={body['events_token']}")
    fresh = await client.get(f"/api/scans/{body['scan_id']}/events-url", headers=as_tenant(KEY_A))
    assert tokens.verify((EVENT_KEY,), fresh.json()["events_token"]).subject == body["scan_id"]


async def test_dead_letters_are_per_tenant(make_settings: SettingsFactory) -> None:
    """Each tenant lists only its own dead letters."""
    settings = secured(make_settings)
    backend = ScriptedBackend(settings, errors=lambda name, n: BackendError("refused"))
    async with running_stack(settings, backend=backend) as stack:
        for key in (KEY_A, KEY_B, KEY_B):
            sid = (await stack.client.post("/api/scans", json=BODY, headers=as_tenant(key))).json()[
                "scan_id"
            ]
            await _wait_failed(stack.client, sid, key)
        mine = (await stack.client.get("/api/dead", headers=as_tenant(KEY_A))).json()
        theirs = (await stack.client.get("/api/dead", headers=as_tenant(KEY_B))).json()
    assert [d["tenant"] for d in mine["items"]] == ["a"]
    assert [d["tenant"] for d in theirs["items"]] == ["b", "b"]


async def _wait_failed(client: httpx.AsyncClient, scan_id: str, key: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = (await client.get(f"/api/scans/{scan_id}/status", headers=as_tenant(key))).json()[
            "state"
        ]
        if state == "failed":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("scan did not fail in time")


async def test_keys_file_holds_hashes(make_settings: SettingsFactory, tmp_path: Path) -> None:
    """LABELSCAN_API_KEYS_FILE lists tenant:sha256(key); the key itself is never stored."""
    key = "file-key-0123456789abcdef"
    keys = tmp_path / "keys"
    keys.write_text(f"# tenant:sha256\nfiled:{hashlib.sha256(key.encode()).hexdigest()}\n")
    settings = make_settings(auth=True, api_keys_file=str(keys), event_keys=(EVENT_KEY,))
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        ok = await http.post("/api/scans", json=BODY, headers=as_tenant(key))
        bad = await http.post(
            "/api/scans", json=BODY, headers=as_tenant(hashlib.sha256(key.encode()).hexdigest())
        )
    assert ok.status_code == 202 and bad.status_code == 401


def test_misconfigured_auth_fails_at_start(make_settings: SettingsFactory, tmp_path: Path) -> None:
    """Auth on without keys, without an event key, or with a bad keys file: one clear error."""
    with pytest.raises(SettingsError, match="no API keys"):
        create_app(make_settings(auth=True, event_keys=(EVENT_KEY,)))
    with pytest.raises(SettingsError, match="LABELSCAN_EVENT_KEYS"):
        create_app(make_settings(auth=True, api_keys=(("a", Secret(KEY_A)),)))
    bad = tmp_path / "bad"
    bad.write_text("a:not-hex\n")
    with pytest.raises(SettingsError, match="line 1"):
        create_app(make_settings(auth=True, api_keys_file=str(bad), event_keys=(EVENT_KEY,)))


async def test_requests_per_second_per_key(make_settings: SettingsFactory) -> None:
    """Past LABELSCAN_TENANT_RPS a key gets 429 with Retry-After; other keys are unaffected."""
    settings = secured(make_settings, tenant_rps=3.0)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        codes = [
            (await http.get("/api/queue/stats", headers=as_tenant(KEY_A))).status_code
            for _ in range(6)
        ]
        limited = await http.get("/api/queue/stats", headers=as_tenant(KEY_A))
        other = await http.get("/api/queue/stats", headers=as_tenant(KEY_B))
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    assert other.status_code == 200


async def test_scans_per_day_quota(make_settings: SettingsFactory, redis: Redis) -> None:
    """Past LABELSCAN_TENANT_SCANS_PER_DAY: 429 quota_exceeded, and no scan is written."""
    settings = secured(make_settings, tenant_scans_per_day=2)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        codes = [
            (await http.post("/api/scans", json=BODY, headers=as_tenant(KEY_A))).status_code
            for _ in range(3)
        ]
        other = await http.post("/api/scans", json=BODY, headers=as_tenant(KEY_B))
        over = await http.post("/api/scans", json=BODY, headers=as_tenant(KEY_A))
    assert codes == [202, 202, 429]
    assert over.json()["error"] == "quota_exceeded" and int(over.headers["retry-after"]) > 0
    assert other.status_code == 202
    scans = [
        k
        async for k in redis.scan_iter(match=f"{{{settings.prefix}}}:scan:*")
        if k.count(b":") == 2
    ]
    assert len(scans) == 3


def test_event_tokens_sign_verify_expire_and_rotate() -> None:
    """A token verifies with any configured key, not after expiry, not if tampered with."""
    old, new = Secret("o" * 40), Secret("n" * 40)
    token = tokens.sign((old,), "s", "abc", 60)
    assert tokens.verify((new, old), token).subject == "abc"
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify((new,), token)
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.verify((old,), token.replace(".abc.", ".abd."))
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify((old,), tokens.sign((old,), "t", "a", -1))
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify((old,), "garbage")


async def test_tenant_events_url_streams_only_that_tenants_scans(
    make_settings: SettingsFactory,
) -> None:
    """The gateway's tenant link opens the notifier's tenant stream: own scans, nobody else's."""
    settings = secured(make_settings)
    async with (
        serve(create_notifier(settings)) as notifier,
        serve(create_app(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
        httpx.AsyncClient(base_url=notifier.url, timeout=10) as sse,
    ):
        assert (await http.get("/api/events-url")).status_code == 401
        link = (await http.get("/api/events-url", headers=as_tenant(KEY_A))).json()
        grant = tokens.verify(settings.event_keys, link["events_token"])
        assert (grant.scope, grant.subject) == ("t", "a")
        assert link["events_url"].endswith(f"/api/events?token={link['events_token']}")
        path = link["events_url"].split("/", 3)[3]
        async with sse.stream("GET", f"/{path}", headers={"accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            stream = EventStream(r)
            await stream.next_message()  # the resume point comes before any event
            other = await http.post("/api/scans", json=BODY, headers=as_tenant(KEY_B))
            mine = await http.post("/api/scans", json=BODY, headers=as_tenant(KEY_A))
            event = await stream.next_event(within=10)
        assert event is not None and event.data is not None
        assert mine.json()["scan_id"] in event.data
        assert other.json()["scan_id"] not in event.data
        forged = link["events_token"].replace(".a.", ".b.")
        refused = await sse.get("/api/events", params={"token": forged})
        assert refused.status_code in {401, 403}


async def test_tenant_events_url_with_auth_off_names_the_tenant(settings: Settings) -> None:
    """Without keys the link carries ?tenant=; a malformed tenant is a 422."""
    async with serve(create_app(settings)) as gateway, httpx.AsyncClient(base_url=gateway.url) as c:
        link = (await c.get("/api/events-url", params={"tenant": "shop-1"})).json()
        assert link["events_token"] is None
        assert link["events_url"].endswith("/api/events?tenant=shop-1")
        bad = await c.get("/api/events-url", params={"tenant": "no/slashes"})
    assert bad.status_code == 422 and bad.json()["field"] == "tenant"
