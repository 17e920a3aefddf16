"""Webhook URLs go through the SSRF guard: at registration, and at every connection."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import SettingsFactory
from tests.support.servers import serve
from tests.support.stack import running_stack
from tests.support.webhooks import Answer, Received, run_receiver
from tests.webhooks.test_delivery import PNG, submit, webhook_settings


async def wait_settled(client: httpx.AsyncClient, endpoint_id: str) -> dict[str, object]:
    """The endpoint's only delivery once it is no longer pending."""
    async with asyncio.timeout(20):
        while True:
            log = (await client.get(f"/api/webhooks/{endpoint_id}/deliveries")).json()
            if log["items"] and log["items"][0]["status"] != "pending":
                item: dict[str, object] = log["items"][0]
                return item
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://0x7f000001/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("http://hooks.example.com/hook", "https"),
    ],
)
async def test_literal_internal_addresses_are_refused_at_registration(
    make_settings: SettingsFactory, url: str, reason: str
) -> None:
    """Private, loopback, link-local and metadata addresses (and plain http): 422 on url."""
    async with (
        serve(create_app(make_settings())) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        response = await client.post(
            "/api/webhooks", json={"url": url, "events": ["scan.completed"]}
        )
        assert response.status_code == 422
        assert response.json()["field"] == "url"
        assert reason in response.json()["detail"]
        scan = await client.post(
            "/api/scans",
            json={
                "image_base64": PNG,
                "category": "toys",
                "marketplaces": ["US"],
                "product_name": "x",
                "callback_url": url,
            },
        )
        assert scan.status_code == 422
        assert scan.json()["field"] == "callback_url"


async def test_a_name_resolving_to_loopback_is_refused_when_delivering(
    make_settings: SettingsFactory,
) -> None:
    """DNS rebinding: `localhost` passes registration (no literal address) but its resolved
    address is checked at connection time, so the receiver on loopback gets nothing."""
    settings = webhook_settings(make_settings)  # 127.0.0.1 is allowed; the name is not
    async with run_receiver() as receiver, running_stack(settings) as stack:
        assert receiver.server is not None
        url = f"https://localhost:{receiver.server.port}/hook"
        created = await stack.client.post(
            "/api/webhooks", json={"url": url, "events": ["scan.completed"]}
        )
        assert created.status_code == 201
        await submit(stack, "rebind")
        item = await wait_settled(stack.client, created.json()["id"])
        assert item["status"] == "failed"
        assert item["attempts"] == 1
        assert "loopback" in str(item["last_error"])
        assert receiver.received == []


async def test_redirects_are_not_followed(make_settings: SettingsFactory) -> None:
    """A 302 is a failed attempt (not retried); its Location is never requested."""

    async def redirect(request: Received, seen: int) -> Answer:
        if request.path == "/hook":
            return 302, {"location": "/elsewhere"}
        return 200, {}

    settings = webhook_settings(make_settings)
    async with run_receiver(redirect) as receiver, running_stack(settings) as stack:
        created = await stack.client.post(
            "/api/webhooks", json={"url": receiver.url("/hook"), "events": ["scan.completed"]}
        )
        await submit(stack, "moved")
        item = await wait_settled(stack.client, created.json()["id"])
        assert item["status"] == "failed"
        assert item["last_status_code"] == 302
        assert "redirects are not followed" in str(item["last_error"])
        await asyncio.sleep(0.3)
        assert [r.path for r in receiver.received] == ["/hook"]
