"""The dashboard's scan list (GET /api/scans) in a real chromium: per state, filtered, paged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.settings import Secret
from tests.conftest import SettingsFactory
from tests.gateway.test_dashboard import (
    EVENT_KEY,
    HOSTILE,
    KEY,
    browser,  # noqa: F401  # the fixture
    dashboard,
    needs_browser,
    running,
    scan,
    use_key,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ADMIN_KEY = "key-ops-0123456789abcdef"
OTHER_KEY = "key-b-0123456789abcdef"


async def products(tab: Page, names: list[str]) -> None:
    """Wait until the list shows exactly these products, in this order."""
    from playwright.async_api import expect

    await expect(tab.locator("#scans-list td.product")).to_have_text(names)


async def tabs_and_filters(tab: Page, everything: list[str], later: str, first: str) -> None:
    """Every scan of the key's tenant; a tab per state, priority, search by name or id."""
    from playwright.async_api import expect

    await products(tab, everything)
    await expect(tab.locator("#scans-tenant-box")).to_be_hidden()
    row = tab.locator(f'#scans-list tr[data-scan-id="{later}"]')
    await expect(row.locator("td.state")).to_have_text("scheduled")
    await tab.click('#scans-tabs button[data-state="cancelled"]')
    await products(tab, ["Gone"])
    await tab.click('#scans-tabs button[data-state="queued"]')
    await products(tab, [HOSTILE, "Blocks 3", "Blocks 2", "Blocks 1", "Blocks 0"])
    await tab.select_option("#scans-priority", "high")
    await products(tab, [HOSTILE])
    await tab.select_option("#scans-priority", "")
    await tab.click('#scans-tabs button[data-state="completed"]')
    await expect(tab.locator("#scans-list tr.empty")).to_have_text("No scans match.")
    await tab.click('#scans-tabs button[data-state=""]')
    await tab.fill("#scans-q", "blocks 2")
    await tab.press("#scans-q", "Enter")
    await products(tab, ["Blocks 2"])
    await tab.fill("#scans-q", first[:10])  # an id prefix
    await tab.click("#scans-apply")
    await products(tab, ["Blocks 0"])
    await tab.fill("#scans-q", "")


async def paging(tab: Page, everything: list[str]) -> None:
    """Three per page: Older to the end, Newer back to the start."""
    from playwright.async_api import expect

    await tab.fill("#scans-limit", "3")
    await tab.click("#scans-apply")
    await products(tab, everything[:3])
    await expect(tab.locator("#scans-newer")).to_be_disabled()
    await tab.click("#scans-older")
    await products(tab, everything[3:6])
    await tab.click("#scans-older")
    await products(tab, everything[6:])
    await expect(tab.locator("#scans-older")).to_be_disabled()
    await tab.click("#scans-newer")
    await products(tab, everything[3:6])
    await tab.click("#scans-newer")
    await products(tab, everything[:3])


@needs_browser
async def test_scan_list_tabs_filters_search_and_paging(
    make_settings: SettingsFactory,
    browser: Browser,  # noqa: F811
) -> None:
    """A tenant lists its scans by state, priority and search, pages through them and opens
    one; an admin sees every tenant's and narrows to one."""
    from playwright.async_api import expect

    settings = make_settings(
        auth=True,
        api_keys=(("a", Secret(KEY)), ("b", Secret(OTHER_KEY)), ("ops", Secret(ADMIN_KEY))),
        admin_tenants=("ops",),
        event_keys=(EVENT_KEY,),
    )
    async with running(settings, None) as stack, dashboard(browser, stack.url) as (tab, bad):
        ids = [await stack.post(scan(f"Blocks {n}")) for n in range(4)]
        urgent = await stack.post(scan(HOSTILE, priority="high"))
        later = await stack.post(scan("Later", delay_ms=600_000))
        gone = await stack.post(scan("Gone"))
        assert (await stack.http.delete(f"/api/scans/{gone}")).status_code == 200
        theirs = await stack.http.post(
            "/api/scans", json=scan("Theirs"), headers={"authorization": f"Bearer {OTHER_KEY}"}
        )
        assert theirs.status_code == 202

        await use_key(tab, KEY)
        everything = ["Gone", "Later", HOSTILE, "Blocks 3", "Blocks 2", "Blocks 1", "Blocks 0"]
        await tabs_and_filters(tab, everything, later, ids[0])
        await paging(tab, everything)
        await tab.locator(f'#scans-list tr[data-scan-id="{urgent}"] td.scan button').click()
        card = tab.locator(f'#detail article[data-scan-id="{urgent}"]')
        await expect(card.locator(".product")).to_have_text(HOSTILE)

        await use_key(tab, ADMIN_KEY)
        await expect(tab.locator("#scans-tenant-box")).to_be_visible()
        await tab.fill("#scans-limit", "20")
        await tab.click("#scans-apply")
        await products(tab, ["Theirs", *everything])
        await tab.fill("#scans-tenant", "b")
        await tab.click("#scans-apply")
        await products(tab, ["Theirs"])
        await expect(tab.locator("#scans-list td.tenant")).to_have_text(["b"])

        assert await tab.evaluate("document.querySelectorAll('img').length") == 0
        assert await tab.evaluate("window.__xss") is None
        assert bad == [], "the page ran into its own CSP"
