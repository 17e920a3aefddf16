"""The webhook endpoints API: register, read, change, rotate, delete; tenants kept apart."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from shared.settings import Secret
from tests.conftest import SettingsFactory
from tests.support.servers import serve

KEYS = {"acme": "key-acme-0123456789", "globex": "key-globex-0123456789", "admin": "key-adm-01"}
URL = "https://hooks.example.com/labelscan"


def auth(tenant: str) -> dict[str, str]:
    """The Authorization header of ``tenant``'s key."""
    return {"authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture
async def gateway(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with auth on: tenants acme and globex, and an operator."""
    settings = make_settings(
        auth=True,
        api_keys=tuple((t, Secret(k)) for t, k in KEYS.items()),
        event_keys=(Secret("e" * 40),),
        webhook_rotation_grace_s=3600,
    )
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        yield client


async def register(client: httpx.AsyncClient, tenant: str, **body: object) -> dict[str, object]:
    """Register an endpoint for ``tenant``; its 201 body."""
    payload = {"url": URL, "events": ["scan.completed"], **body}
    response = await client.post("/api/webhooks", json=payload, headers=auth(tenant))
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_register_shows_the_secret_once_in_standard_webhooks_form(
    gateway: httpx.AsyncClient,
) -> None:
    """201 with a whsec_ secret (24-64 random bytes); GET and list never show it."""
    created = await register(gateway, "acme", description="orders", events=["scan.failed"] * 2)
    secret = str(created["secret"])
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert created["events"] == ["scan.failed"]
    assert created["tenant"] == "acme"
    assert created["enabled"] is True
    one = await gateway.get(f"/api/webhooks/{created['id']}", headers=auth("acme"))
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert one.json()["description"] == "orders"
    listed = (await gateway.get("/api/webhooks", headers=auth("acme"))).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert all("secret" not in e for e in listed)


async def test_patch_and_delete(gateway: httpx.AsyncClient) -> None:
    """PATCH changes only the fields given; DELETE makes it unknown."""
    created = await register(gateway, "acme")
    path = f"/api/webhooks/{created['id']}"
    changed = await gateway.patch(
        path, json={"events": ["scan.cancelled", "scan.completed"]}, headers=auth("acme")
    )
    assert changed.status_code == 200
    assert changed.json()["events"] == ["scan.cancelled", "scan.completed"]
    assert changed.json()["url"] == URL
    off = await gateway.patch(path, json={"enabled": False}, headers=auth("acme"))
    assert off.json()["enabled"] is False
    assert (await gateway.delete(path, headers=auth("acme"))).status_code == 204
    assert (await gateway.get(path, headers=auth("acme"))).status_code == 404


async def test_another_tenants_endpoint_is_unknown_but_operators_see_all(
    gateway: httpx.AsyncClient,
) -> None:
    """globex gets 404 on every route of acme's endpoint and never sees it listed."""
    created = await register(gateway, "acme")
    path = f"/api/webhooks/{created['id']}"
    other = auth("globex")
    assert (await gateway.get(path, headers=other)).status_code == 404
    assert (await gateway.patch(path, json={"enabled": False}, headers=other)).status_code == 404
    assert (await gateway.delete(path, headers=other)).status_code == 404
    assert (await gateway.post(f"{path}/rotate-secret", headers=other)).status_code == 404
    assert (await gateway.get(f"{path}/deliveries", headers=other)).status_code == 404
    assert (await gateway.get("/api/webhooks", headers=other)).json()["items"] == []
    assert (await gateway.get(path, headers=auth("acme"))).json()["enabled"] is True
    mine = await register(gateway, "globex")
    everything = (await gateway.get("/api/webhooks", headers=auth("admin"))).json()["items"]
    assert {e["id"] for e in everything} == {created["id"], mine["id"]}
    assert (await gateway.get(path, headers=auth("admin"))).status_code == 200
    assert (await gateway.get(path)).status_code == 401


async def test_rotation_returns_a_new_secret_and_a_grace_period(
    gateway: httpx.AsyncClient,
) -> None:
    """rotate-secret: a different secret, the old one honoured until the time shown."""
    created = await register(gateway, "acme")
    path = f"/api/webhooks/{created['id']}"
    rotated = await gateway.post(f"{path}/rotate-secret", headers=auth("acme"))
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    assert body["previous_secret_expires_at"] > str(created["created_at"])
    shown = (await gateway.get(path, headers=auth("acme"))).json()
    assert shown["previous_secret_expires_at"] == body["previous_secret_expires_at"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"events": ["scan.completed"]}, 422, "url"),
        ({"url": URL}, 422, "events"),
        ({"url": URL, "events": []}, 422, "events"),
        ({"url": URL, "events": ["scan.exploded"]}, 422, "events"),
        ({"url": URL, "events": ["scan.completed"], "secret": "mine"}, 422, "secret"),
        ({"url": URL, "events": ["scan.completed"], "description": "x" * 501}, 422, "description"),
        ({"url": "ftp://hooks.example.com/", "events": ["scan.completed"]}, 422, "url"),
        ({"url": "http://hooks.example.com/", "events": ["scan.completed"]}, 422, "url"),
        ({"url": "not a url", "events": ["scan.completed"]}, 422, "url"),
        ({"url": "https://u:p@hooks.example.com/", "events": ["scan.completed"]}, 422, "url"),
        ({"url": URL, "events": ["scan.completed"], "tenant": "globex"}, 422, "tenant"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    gateway: httpx.AsyncClient, body: dict[str, object], status: int, field: str
) -> None:
    """Each malformed registration is refused with the field at fault; nothing is stored."""
    response = await gateway.post("/api/webhooks", json=body, headers=auth("acme"))
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert (await gateway.get("/api/webhooks", headers=auth("acme"))).json()["items"] == []


async def test_malformed_bodies_and_ids(gateway: httpx.AsyncClient) -> None:
    """Not JSON, wrong media type, unknown ids, bad cursors: clear 4xx answers."""
    headers = {**auth("acme"), "content-type": "application/json"}
    bad_json = await gateway.post("/api/webhooks", content=b"{", headers=headers)
    assert (bad_json.status_code, bad_json.json()["field"]) == (400, "body")
    form = await gateway.post("/api/webhooks", data={"url": URL}, headers=auth("acme"))
    assert (form.status_code, form.json()["field"]) == (415, "content-type")
    missing = await gateway.get("/api/webhooks/we_" + "0" * 24, headers=auth("acme"))
    assert (missing.status_code, missing.json()["field"]) == (404, "endpoint_id")
    assert (await gateway.get("/api/webhooks/nope", headers=auth("acme"))).status_code == 404
    created = await register(gateway, "acme")
    path = f"/api/webhooks/{created['id']}"
    cursor = await gateway.get(f"{path}/deliveries?cursor=zzz", headers=auth("acme"))
    assert (cursor.status_code, cursor.json()["field"]) == (422, "cursor")
    limit = await gateway.get(f"{path}/deliveries?limit=0", headers=auth("acme"))
    assert (limit.status_code, limit.json()["field"]) == (422, "limit")
    patch = await gateway.patch(path, json={"events": ["nope"]}, headers=auth("acme"))
    assert (patch.status_code, patch.json()["field"]) == (422, "events")
    inward = await gateway.patch(
        path, json={"url": "https://169.254.169.254/latest"}, headers=auth("acme")
    )
    assert (inward.status_code, inward.json()["field"]) == (422, "url")
    assert (await gateway.get(path, headers=auth("acme"))).json()["url"] == URL
    redeliver = await gateway.post(
        f"{path}/deliveries/wd_{'0' * 24}/redeliver", headers=auth("acme")
    )
    assert (redeliver.status_code, redeliver.json()["field"]) == (404, "delivery_id")
