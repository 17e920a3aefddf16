"""The admin dashboard at /admin: its headers, and a real browser using it on a real stack.

The browser tests run Debian's chromium (never downloaded) through Playwright against
a gateway, a notifier and an analyzer on real sockets with auth on, and wait for what
the page shows rather than sleeping: a busy 2-core machine gets generous deadlines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest

from analyzer.worker import Worker
from gateway.app import create_app as create_gateway
from gateway.dashboard import content_security_policy
from notifier.app import create_app as create_notifier
from shared.embedded import free_port
from shared.errors import BackendError
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.backends import ScriptedBackend
from tests.support.images import label_png
from tests.support.servers import serve
from tests.support.stack import worker_task

if TYPE_CHECKING:
    from playwright.async_api import Browser, Dialog, Locator, Page

KEY = "key-a-0123456789abcdef"
EVENT_KEY = Secret("e" * 40)
HOSTILE = 'doomed <img src=x onerror="window.__xss = 1">'
WAIT_MS = 20_000  # a noisy 2-core machine; every wait ends as soon as its condition holds
PNG = base64.b64encode(label_png()).decode()

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_BROWSER = (
    "playwright is not installed (pip install -e '.[dev]')"
    if importlib.util.find_spec("playwright") is None
    else "chromium is not installed (make browser, or apt-get install chromium)"
    if CHROMIUM is None
    else None
)
needs_browser = pytest.mark.skipif(NO_BROWSER is not None, reason=NO_BROWSER or "")


def secured(make_settings: SettingsFactory, **extra: object) -> Settings:
    """Auth on: tenant ``a`` with KEY, event tokens signed with EVENT_KEY."""
    return make_settings(
        auth=True, api_keys=(("a", Secret(KEY)),), event_keys=(EVENT_KEY,), **extra
    )


def scan(product_name: str, **extra: object) -> dict[str, object]:
    """A scan request body."""
    return {
        "image_base64": PNG,
        "category": "toys",
        "marketplaces": ["US", "DE"],
        "product_name": product_name,
        **extra,
    }


def directives(policy: str) -> dict[str, list[str]]:
    """A CSP header as {directive: [sources]}."""
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


# --- HTTP: the page, its files, its headers ---------------------------------------------


async def test_page_and_files_are_served_with_security_headers(
    make_settings: SettingsFactory,
) -> None:
    """No key needed; strict CSP allowing only the notifier besides self; nosniff and friends."""
    settings = secured(make_settings, public_notifier_url="https://events.example.com:8443")
    async with (
        serve(create_gateway(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        page = await http.get("/admin")
        script = await http.get("/admin/static/dashboard.js")
        style = await http.get("/admin/static/dashboard.css")
        head = await http.head("/admin")
        cached = await http.get("/admin", headers={"if-none-match": page.headers["etag"]})
        post = await http.post("/admin")
        unknown = await http.get("/admin/static/nope.js")
        traversal = await http.get("/admin/static/%2e%2e/app.py")
        slash = await http.get("/admin/")
        document = (await http.get("/openapi.json")).json()
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    for response in (page, script, style):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        csp = directives(response.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"]
        assert csp["script-src"] == ["'self'"]
        assert csp["style-src"] == ["'self'"]
        assert csp["connect-src"] == ["'self'", "https://events.example.com:8443"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(page.content))
    assert cached.status_code == 304
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert post.json()["error"] == "method_not_allowed"
    for missing in (unknown, traversal, slash):
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert not any(path.startswith("/admin") for path in document["paths"])
    # Everything the page loads is the gateway's own (no CDN), nothing inline the CSP refuses.
    html = page.text
    assert sorted(re.findall(r'(?:src|href)="([^"]*)"', html)) == [
        "/admin/static/dashboard.css",
        "/admin/static/dashboard.js",
        "/admin/static/dom.js",
        "/admin/static/webhooks.js",
    ]
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"<style|\sstyle=|\son[a-z]+=", html) is None
    # Data reaches the DOM as text only; the CSP's Trusted Types make any HTML sink throw.
    sinks = r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\("
    assert re.search(sinks, script.text) is None


def test_connect_src_leaves_out_a_malformed_notifier_url(make_settings: SettingsFactory) -> None:
    """A notifier URL that would smuggle a directive into the CSP is not copied into it."""
    policy = content_security_policy(
        make_settings(public_notifier_url="http://x.example; script-src *")
    )
    assert directives(policy)["connect-src"] == ["'self'"]
    assert directives(policy)["script-src"] == ["'self'"]


# --- the browser ---------------------------------------------------------------------------


@dataclass
class Running:
    """A stack for the browser: the gateway's URL and an API client of tenant ``a``."""

    url: str
    http: httpx.AsyncClient
    workers: list[Worker] = field(default_factory=list)

    async def post(self, body: dict[str, object]) -> str:
        """Submit a scan; its id."""
        response = await self.http.post("/api/scans", json=body)
        assert response.status_code == 202, response.text
        scan_id: str = response.json()["scan_id"]
        return scan_id


@contextlib.asynccontextmanager
async def running(settings: Settings, backend: ScriptedBackend | None) -> AsyncIterator[Running]:
    """Notifier (where the gateway's event links point), gateway and maybe an analyzer."""
    port = free_port()
    settings = msgspec.structs.replace(settings, public_notifier_url=f"http://127.0.0.1:{port}")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve(create_notifier(settings), port=port))
        gateway = await stack.enter_async_context(serve(create_gateway(settings)))
        workers = []
        if backend is not None:
            workers.append(await stack.enter_async_context(worker_task(settings, backend)))
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=gateway.url, timeout=10, headers={"authorization": f"Bearer {KEY}"}
            )
        )
        yield Running(gateway.url, http, workers)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium (root needs --no-sandbox)."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=WAIT_MS)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def dashboard(browser: Browser, url: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """The page at /admin, and the policy violations and script errors it reports."""
    async with opened(browser, f"{url}/admin") as page:
        yield page


@contextlib.asynccontextmanager
async def opened(browser: Browser, url: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """The page at ``url``, and the policy violations and script errors it reports."""
    context = await browser.new_context()
    try:
        tab = await context.new_page()
        tab.set_default_timeout(WAIT_MS)
        problems: list[str] = []
        tab.on("pageerror", lambda exc: problems.append(f"error: {exc}"))
        tab.on(
            "console",
            lambda msg: (
                problems.append(msg.text)
                if re.search(r"Content Security Policy|Trusted(?:HTML|Script| ?Types?)", msg.text)
                else None
            ),
        )
        await tab.goto(url)
        yield tab, problems
    finally:
        await context.close()


async def use_key(tab: Page, key: str) -> None:
    """Type ``key`` into the form and submit it."""
    await tab.fill("#key-input", key)
    await tab.click("#key-use")


def doomed_once(name: str, call: int) -> Exception | None:
    """A permanent failure on the first attempt of every "doomed" scan; later ones succeed."""
    return BackendError("400 bad request") if name.startswith("doomed") and call == 1 else None


def feed_row(tab: Page, scan_id: str) -> Locator:
    """The live feed's row of ``scan_id``."""
    return tab.locator(f'#feed tr[data-scan-id="{scan_id}"]')


async def stat(tab: Page, name: str, value: str) -> None:
    """Wait until the stats tile ``name`` reads ``value``."""
    from playwright.async_api import expect

    await expect(tab.locator(f'[data-stat="{name}"] .value')).to_have_text(value)


async def feed_and_stats(tab: Page, stack: Running) -> list[str]:
    """Scans posted through the API reach `completed` in the feed and in the stats."""
    from playwright.async_api import expect

    await stat(tab, "completed", "0")
    await expect(tab.locator('[data-stat="waiting_by_priority"] dt')).to_have_text(
        ["high", "normal", "low"]
    )
    # The tenant stream starts at "now": post only once the page listens.
    await expect(tab.locator("#feed-status")).to_have_text("live")
    ids = [await stack.post(scan(f"Blocks {n}")) for n in range(3)]
    for scan_id in ids:
        row = feed_row(tab, scan_id)
        await expect(row.locator("td.type")).to_have_text("completed")
        await expect(row.locator("td.stage")).to_have_text("completed")
        await expect(row.locator(".pct")).to_have_text("100 %")
        assert await row.locator("progress").evaluate("(bar) => bar.value") == 100
    assert await tab.locator("#feed tr").count() == 3, "one row per scan, updated in place"
    await stat(tab, "completed", "3")
    return ids


async def lookup_and_cancel(tab: Page, stack: Running, done: str) -> None:
    """A finished scan's findings per marketplace; Cancel on an unfinished one."""
    from playwright.async_api import expect

    await tab.fill("#lookup-input", done)
    await tab.press("#lookup-input", "Enter")
    card = tab.locator(f'#detail article[data-scan-id="{done}"]')
    await expect(card.locator(".state")).to_have_text("completed")
    await expect(card.locator(".product")).to_have_text("Blocks 0")
    for market in ("US", "DE"):
        findings = card.locator(f'table.findings[data-marketplace="{market}"] tbody tr')
        await expect(findings.locator("td.rule")).to_have_text(["SIMULATED"])
    await expect(card.locator("button.cancel")).to_have_count(0)  # nothing left to cancel

    later = await stack.post(scan("Later", delay_ms=600_000))  # scheduled: unfinished
    await feed_row(tab, later).locator("button.link").click()
    card = tab.locator(f'#detail article[data-scan-id="{later}"]')
    await expect(card.locator(".state")).to_have_text("scheduled")
    await card.locator("button.cancel").click()
    await expect(card.locator(".action-status")).to_have_text("Cancelled (was scheduled).")
    await expect(card.locator(".state")).to_have_text("cancelled")
    assert (await stack.http.get(f"/api/scans/{later}")).json()["state"] == "cancelled"


async def dead_letters_and_retry(tab: Page, stack: Running) -> None:
    """Two permanent failures, paged one at a time; one retried from the page completes."""
    from playwright.async_api import expect

    first = await stack.post(scan(HOSTILE))  # its name is markup that must stay text
    await expect(feed_row(tab, first).locator("td.type")).to_have_text("failed")
    second = await stack.post(scan("doomed too"))
    await expect(feed_row(tab, second).locator("td.type")).to_have_text("failed")
    await tab.click("#dead-newest")
    await expect(tab.locator("#dead-list tr")).to_have_count(2)
    await tab.fill("#dead-count", "1")
    await tab.click("#dead-newest")
    await expect(tab.locator("#dead-list td.product")).to_have_text(["doomed too"])
    await tab.click("#dead-older")  # the `next` of the first page
    row = tab.locator(f'#dead-list tr[data-scan-id="{first}"]')
    await expect(row.locator("td.product")).to_have_text(HOSTILE)
    await expect(row.locator("td.error")).to_have_text("backend_error: 400 bad request")

    await row.locator("td.scan button").click()  # its detail: the error, the name as text
    card = tab.locator(f'#detail article[data-scan-id="{first}"]')
    await expect(card.locator(".product")).to_have_text(HOSTILE)
    await expect(card.locator(".error-message")).to_have_text("400 bad request")

    await row.locator("button.retry").click()
    await expect(row.locator(".retry-status")).to_have_text("requeued (queued)")
    await expect(feed_row(tab, first).locator("td.type")).to_have_text("completed")
    await expect(card.locator(".state")).to_have_text("completed")  # the detail follows the feed
    await expect(card.locator(".summary")).to_have_text(f"Simulated analysis of {HOSTILE}.")


@needs_browser
async def test_dashboard_shows_stats_events_scans_and_retries_dead_letters(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """The whole page against a real stack: stats, live feed, lookup, cancel, dead letters."""
    from playwright.async_api import expect

    settings = secured(make_settings)
    backend = ScriptedBackend(settings, errors=doomed_once, delay_s=0.1)
    async with running(settings, backend) as stack, dashboard(browser, stack.url) as (tab, bad):
        await use_key(tab, KEY)
        await expect(tab.locator("#key-status")).to_have_text("key accepted")
        ids = await feed_and_stats(tab, stack)
        await lookup_and_cancel(tab, stack, ids[0])
        await dead_letters_and_retry(tab, stack)
        # A replayed scan leaves the failed count.
        for name, count in (("completed", "4"), ("failed", "1"), ("cancelled", "1")):
            await stat(tab, name, count)
        # The hostile name went into the dead letters, the detail and its summary: as text.
        assert await tab.evaluate("document.querySelectorAll('img').length") == 0
        assert await tab.evaluate("window.__xss") is None
        assert bad == [], "the page ran into its own CSP"
    assert backend.calls[HOSTILE] == 2


@needs_browser
async def test_dashboard_shows_a_bad_key_and_network_errors(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """401 reads "bad key"; an unreachable gateway is said, then cleared; the key is per tab."""
    from playwright.async_api import Route, expect

    async with (
        running(secured(make_settings), None) as stack,
        dashboard(browser, stack.url) as (tab, bad),
    ):
        await use_key(tab, "wrong-key-0123456789")
        await expect(tab.locator("#alert")).to_have_text(re.compile(r"^Bad key.*401"))
        await expect(tab.locator("#key-status")).to_have_text("bad key")
        assert await tab.evaluate("sessionStorage.length") == 0
        await expect(tab.locator("#feed-status")).to_have_text("off")

        await use_key(tab, KEY)
        await expect(tab.locator("#key-status")).to_have_text("key accepted")
        await expect(tab.locator("#alert")).to_be_hidden()

        async def refuse(route: Route) -> None:
            await route.abort("connectionrefused")

        await tab.route("**/api/queue/stats", refuse)
        await expect(tab.locator("#alert")).to_have_text(re.compile(r"^Network error"))
        await tab.unroute("**/api/queue/stats")
        await expect(tab.locator("#alert")).to_be_hidden()  # polling goes on, recovers

        # The key lives in the tab's session: a reload goes on without asking again.
        await tab.reload()
        await expect(tab.locator("#key-status")).to_have_text("key accepted")
        await expect(tab.locator("#feed-status")).to_have_text("live")

        # Forgetting the key empties the page and stops its requests.
        await expect(tab.locator('[data-stat="completed"] .value')).to_have_text("0")
        await tab.click("#key-forget")
        await expect(tab.locator("#key-status")).to_have_text("no key")
        await expect(tab.locator("#feed-status")).to_have_text("off")
        await expect(tab.locator("[data-stat]")).to_have_count(0)
        assert await tab.evaluate("sessionStorage.length") == 0
        assert bad == []

        # Trusted Types are on: a string assigned to an HTML sink throws, it never parses.
        refused = await tab.evaluate(
            """() => {
                try { document.createElement("div").innerHTML = "<b>x</b>"; }
                catch (e) { return e instanceof TypeError; }
                return false;
            }"""
        )
        assert refused


ADMIN_KEY = "key-ops-0123456789abcdef"


async def until_stage(stack: Running, scan_id: str, field: str, value: str) -> None:
    """Poll the scan (as tenant ``a``) until ``field`` (``stage`` or ``state``) is ``value``."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            body = (await stack.http.get(f"/api/scans/{scan_id}")).json()
            if (body["progress"]["stage"] if field == "stage" else body["state"]) == value:
                return
            await asyncio.sleep(0.05)


async def accept(dialog: Dialog) -> None:
    """Confirm a destructive action."""
    await dialog.accept()


async def dismiss(dialog: Dialog) -> None:
    """Decline one."""
    await dialog.dismiss()


async def pause_and_limit(tab: Page, stack: Running) -> str:
    """Pause tenant ``a`` from the page (a scan of it says `paused`), raise a limit."""
    from playwright.async_api import expect

    await expect(tab.locator("#pauses li")).to_have_text("Nothing is paused.")
    await tab.fill("#pause-tenant", "a")
    await tab.click("#pause")
    await expect(tab.locator("#pause-status")).to_have_text("paused")
    await expect(tab.locator("#pauses li.pause")).to_contain_text("Paused: a, every priority")
    held = await stack.post(scan("held"))
    await until_stage(stack, held, "stage", "paused")
    await tab.fill("#limit-tenant_max_active", "3")
    await tab.click("#limits-apply")
    await expect(tab.locator("#limits-status")).to_have_text("applied")
    await expect(tab.locator("#limit-tenant_max_active")).to_have_attribute(
        "data-overridden", "yes"
    )
    return held


async def cancel_and_purge(tab: Page, stack: Running, held: str) -> None:
    """Cancel tenant ``a``'s queue and purge its dead letter, each confirmed after a count."""
    from playwright.async_api import expect

    await tab.fill("#queue-tenant", "a")
    tab.once("dialog", accept)
    await tab.click("#cancel-queued")
    await expect(tab.locator("#cancel-queued-status")).to_have_text("Cancel: 1 of 1 waiting scans")
    await until_stage(stack, held, "state", "cancelled")
    await tab.click("#resume")  # the same target: tenant a
    await expect(tab.locator("#pauses li")).to_have_text("Nothing is paused.")

    doomed = await stack.post(scan("doomed"))
    await until_stage(stack, doomed, "state", "failed")
    await tab.fill("#bulk-tenant", "a")
    await tab.fill("#bulk-kind", "backend_error")
    await tab.click("#bulk-count")
    await expect(tab.locator("#bulk-status")).to_have_text("1 dead letters match")
    tab.once("dialog", dismiss)
    await tab.click("#bulk-purge")
    await expect(tab.locator("#bulk-status")).to_have_text("not done")
    tab.once("dialog", accept)
    await tab.click("#bulk-purge")
    await expect(tab.locator("#bulk-status")).to_have_text("Purge: 1 of 1 dead letters")


@needs_browser
async def test_operator_controls_for_admins_with_confirmation(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """Hidden from a tenant's key; an admin pauses, changes a limit, cancels a tenant's
    queue and purges dead letters (counted, then confirmed), and sees it all audited."""
    from playwright.async_api import expect

    settings = make_settings(
        auth=True,
        api_keys=(("a", Secret(KEY)), ("ops", Secret(ADMIN_KEY))),
        admin_tenants=("ops",),
        event_keys=(EVENT_KEY,),
    )
    backend = ScriptedBackend(settings, errors=doomed_once)
    async with running(settings, backend) as stack, dashboard(browser, stack.url) as (tab, bad):
        await use_key(tab, KEY)
        await expect(tab.locator("#key-status")).to_have_text("key accepted")
        await expect(tab.locator("#operator")).to_be_hidden()
        await use_key(tab, ADMIN_KEY)
        await expect(tab.locator("#operator")).to_be_visible()
        held = await pause_and_limit(tab, stack)
        await cancel_and_purge(tab, stack, held)
        await expect(tab.locator("#audit-list td.action")).to_have_text(
            ["purge_dead", "resume", "cancel_queued", "limits", "pause"]
        )
        await expect(tab.locator("#audit-list td.who").first).to_have_text("ops")
        assert bad == [], "the page ran into its own CSP"


@needs_browser
async def test_drain_an_analyzer_from_the_dashboard_with_confirmation(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """The admin sees each analyzer of the group; Drain asks first (declined: nothing
    happens), then drains it; Put back to work undoes it; both are audited."""
    from playwright.async_api import expect

    settings = make_settings(
        auth=True,
        api_keys=(("a", Secret(KEY)), ("ops", Secret(ADMIN_KEY))),
        admin_tenants=("ops",),
        event_keys=(EVENT_KEY,),
    )
    backend = ScriptedBackend(settings)
    async with running(settings, backend) as stack, dashboard(browser, stack.url) as (tab, bad):
        (worker,) = stack.workers
        await use_key(tab, ADMIN_KEY)
        row = tab.locator(f'#consumers li[data-consumer="{worker.consumer}"]')
        await expect(row).to_contain_text(worker.consumer)
        tab.once("dialog", dismiss)
        await row.locator("button.drain").click()
        await expect(tab.locator("#drain-status")).to_have_text("not done")
        assert not worker.drained
        tab.once("dialog", accept)
        await row.locator("button.drain").click()
        await expect(tab.locator("#drain-status")).to_have_text(f"{worker.consumer}: draining")
        async with asyncio.timeout(WAIT_MS / 1000):
            while not worker.drained:
                await asyncio.sleep(0.02)
        await row.locator("button.undrain").click()
        await expect(tab.locator("#drain-status")).to_have_text(
            f"{worker.consumer}: taking work again"
        )
        async with asyncio.timeout(WAIT_MS / 1000):
            while worker.drained:
                await asyncio.sleep(0.02)
        await expect(tab.locator("#audit-list td.action")).to_have_text(["undrain", "drain"])
        assert bad == [], "the page ran into its own CSP"
