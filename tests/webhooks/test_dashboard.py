"""The dashboard's webhooks panel in a real browser: endpoints, deliveries, redeliver."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from gateway.app import create_app as create_gateway
from tests.conftest import SettingsFactory
from tests.gateway.test_dashboard import (
    KEY,
    browser,
    dashboard,
    needs_browser,
    running,
    scan,
    secured,
    use_key,
)
from tests.support.backends import ScriptedBackend
from tests.support.servers import serve
from tests.support.webhooks import Answer, Received, run_receiver

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = ["browser"]  # the fixture, used by name


async def test_the_panels_script_is_served_and_writes_text_only(
    make_settings: SettingsFactory,
) -> None:
    """webhooks.js comes with the page's headers and uses no HTML sink."""
    async with (
        serve(create_gateway(secured(make_settings))) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        script = await http.get("/admin/static/webhooks.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "require-trusted-types-for" in script.headers["content-security-policy"]
    sinks = r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\("
    assert re.search(sinks, script.text) is None


@needs_browser
async def test_webhooks_panel_lists_deliveries_and_redelivers(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """A refused delivery shows with its status code; Redeliver sends it again, delivered."""
    from playwright.async_api import expect

    refused = {"on": True}

    async def gate(request: Received, seen: int) -> Answer:
        return (410, {}) if refused["on"] else (200, {})

    settings = secured(
        make_settings, webhook_allow_hosts=("127.0.0.1",), webhook_presence_cache_s=0.0
    )
    backend = ScriptedBackend(settings)
    async with (
        run_receiver(gate) as receiver,
        running(settings, backend) as stack,
        dashboard(browser, stack.url) as (tab, bad),
    ):
        created = await stack.http.post(
            "/api/webhooks", json={"url": receiver.url(), "events": ["scan.completed"]}
        )
        endpoint = created.json()["id"]
        scan_id = await stack.post(scan("Hooked"))
        await receiver.wait_for(lambda got: len(got) == 1)

        await use_key(tab, KEY)
        row = tab.locator(f'#webhook-list tr[data-endpoint-id="{endpoint}"]')
        await expect(row.locator("td.url")).to_have_text(receiver.url())
        await expect(row.locator("td.state")).to_have_text("enabled")
        await row.locator("button.link").click()
        delivery = tab.locator("#delivery-list tr")
        await expect(delivery).to_have_count(1)
        await expect(delivery.locator("td.scan")).to_have_text(scan_id)
        await expect(delivery.locator("td.status")).to_have_text("failed")
        await expect(delivery.locator("td.code")).to_have_text("410")

        refused["on"] = False
        await delivery.locator("button.retry").click()
        await receiver.wait_for(lambda got: len(got) == 2)
        await expect(delivery.locator("td.status")).to_have_text("succeeded")
        await expect(delivery.locator("td.code")).to_have_text("200")
        assert receiver.received[0].webhook_id == receiver.received[1].webhook_id
        assert bad == [], "the page ran into its own CSP"
