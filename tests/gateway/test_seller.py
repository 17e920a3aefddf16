"""The seller page at /: its headers, and chromium using it on a real stack.

Three labels dropped at once go as one batch, followed live over one EventSource (the
tenant's stream), with the notifier connection cut mid-scan (a TCP proxy aborts it):
the browser resumes with Last-Event-ID, and each card ends with its findings per
marketplace, failures first. One label is one scan on its own stream, its token renewed.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest

from gateway.app import create_app as create_gateway
from tests.client.conftest import KEY, Services, VerdictBackend, running_services, secured
from tests.conftest import SettingsFactory
from tests.gateway.test_dashboard import (
    browser,  # noqa: F401  # the fixture
    directives,
    needs_browser,
    opened,
)
from tests.support.images import label_png
from tests.support.servers import serve

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator


async def test_page_and_files_are_served_with_security_headers(
    make_settings: SettingsFactory,
) -> None:
    """`/` and its files: no key needed, the dashboard's strict CSP, nothing inline, no API op."""
    settings = secured(make_settings)
    async with (
        serve(create_gateway(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        page = await http.get("/")
        script = await http.get("/static/seller.js")
        dom = await http.get("/static/dom.js")  # the DOM helpers it shares with /admin
        style = await http.get("/static/seller.css")
        post = await http.post("/")
        unknown = await http.get("/static/nope.js")
        admin = await http.get("/admin")
        document = (await http.get("/openapi.json")).json()
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    for response in (page, script, dom, style):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        csp = directives(response.headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
        assert csp["connect-src"] == ["'self'", settings.notifier_url]
        assert csp["require-trusted-types-for"] == ["'script'"]
    assert post.status_code == 405 and post.json()["error"] == "method_not_allowed"
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert admin.status_code == 200 and "admin" in admin.text  # the dashboard is untouched
    assert "/" not in document["paths"]
    html = page.text
    assert sorted(re.findall(r'(?:src|href)="([^"]*)"', html)) == [
        "/static/dom.js",
        "/static/seller.css",
        "/static/seller.js",
    ]
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"<style|\sstyle=|\son[a-z]+=", html) is None
    sinks = r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\("
    assert re.search(sinks, script.text + dom.text) is None


@pytest.fixture
def label_files(tmp_path: Path) -> list[Path]:
    """bad-1.png (non-compliant), ok-1.png (compliant) and doomed-1.png (fails)."""
    files = [tmp_path / "bad-1.png", tmp_path / "ok-1.png", tmp_path / "doomed-1.png"]
    for path in files:
        path.write_bytes(label_png())
    return files


async def assert_each_stage_once(card: Locator) -> None:
    """The card's steps: every event once, in order, ending with the scan's last stages."""
    stages = await card.locator(".steps li").evaluate_all(
        "(items) => items.map((li) => li.dataset.stage)"
    )
    assert stages[-3:] == ["ocr", "checking_rules", "completed"], stages
    assert len(stages) == len(set(stages)), stages


def assert_relinked(services: Services) -> None:
    """A refused reconnect got a fresh token and resumed from the last event id."""
    links = [r for r in services.proxy.requests if b"/events" in r]
    assert len({re.search(rb"token=([^ &]+)", r).group(1) for r in links}) >= 2  # type: ignore[union-attr]
    assert b"last_event_id=" in links[-1], "the fresh link resumes from the last event"


@needs_browser
async def test_labels_dropped_together_are_one_batch_followed_live_across_a_drop(
    make_settings: SettingsFactory,
    browser: Browser,  # noqa: F811
    label_files: list[Path],
) -> None:
    """Three labels: one POST /api/batches, one event stream for all of them, cut mid-scan
    and resumed by id; each card shows its live stage, then findings (fail first) or error."""
    from playwright.async_api import expect

    backend = VerdictBackend(stage_s=1.5)
    async with (
        running_services(secured(make_settings), backend) as services,
        opened(browser, f"{services.gateway_url}/") as (tab, bad),
    ):
        sent: list[str] = []
        tab.on("request", lambda r: sent.append(f"{r.method} {r.url.split('?')[0]}"))
        await tab.fill("#key-input", KEY)
        await tab.click("#key-use")
        await expect(tab.locator("#key-status")).to_have_text("key set")
        await tab.set_input_files("#files", [str(p) for p in label_files])
        await expect(tab.locator("#picked li")).to_have_text(
            ["bad-1.png", "ok-1.png", "doomed-1.png"]
        )
        await tab.select_option("#category", "toys")
        await tab.check('#marketplaces input[value="DE"]')
        await tab.click("#submit")
        await expect(tab.locator("#submit-status")).to_have_text(
            re.compile(r"^3 of 3 sent as batch \w+$")
        )
        cards = tab.locator("article.scan")
        await expect(cards).to_have_count(3)
        first = cards.filter(has_text="bad-1.png")
        # Live: each card's stage and its message, mid-scan; then the stream is cut under them.
        for name in ("bad-1", "ok-1"):
            card = cards.filter(has_text=f"{name}.png")
            await expect(card.locator(".stage")).to_have_text("ocr")
            await expect(card.locator(".message")).to_have_text(f"Reading the label of {name}")
        assert await first.locator("progress").evaluate("(bar) => bar.value") == 40
        assert services.proxy.cut() >= 1, "the stream was open"
        for card, verdict in (
            (first, "non_compliant"),
            (cards.filter(has_text="ok-1.png"), "compliant"),
        ):
            await expect(card.locator(".state")).to_have_text("completed")
            await expect(card.locator(".conn")).to_have_text("done")
            await expect(card.locator(".verdict")).to_have_text(verdict)
            await assert_each_stage_once(card)  # across the drop
        doomed = cards.filter(has_text="doomed-1.png")
        await expect(doomed.locator(".state")).to_have_text("failed")
        await expect(doomed.locator(".error")).to_have_text(
            "backend_error: the label could not be judged"
        )
        await expect(first.locator("h4")).to_have_text(["US: non_compliant", "DE: non_compliant"])
        us = first.locator('table.findings[data-marketplace="US"] tbody tr')
        await expect(us.locator("td.status")).to_have_text(["fail", "pass"])
        await expect(us.locator("td.rule")).to_have_text(["US-MISSING-ADDRESS", "PASSED-RULE"])
        await expect(us.locator("td.fix").first).to_have_text("Print the maker's address")
        assert bad == [], "the page ran into its own CSP"
    posts = [r for r in sent if r.startswith("POST")]
    assert posts == [f"POST {services.gateway_url}/api/batches"], posts
    streams = [r.lower() for r in services.proxy.requests if b"/events" in r]
    assert all(b"get /api/events?" in r for r in streams), "no stream per scan"
    assert sum(b"last-event-id:" in r for r in streams) >= 1, "the stream resumed by id"


@needs_browser
async def test_a_bad_key_is_said_and_an_expired_event_token_is_renewed(
    make_settings: SettingsFactory,
    browser: Browser,  # noqa: F811
    label_files: list[Path],
) -> None:
    """401 reads "Bad key" and forgets it; a dropped label is scanned; a reconnect refused
    for an expired token gets a fresh link and resumes from the last event id."""
    from playwright.async_api import expect

    settings = msgspec.structs.replace(secured(make_settings), event_token_ttl_s=1)
    async with (
        running_services(settings, VerdictBackend(stage_s=2.0)) as services,
        opened(browser, f"{services.gateway_url}/") as (tab, bad),
    ):
        await tab.fill("#key-input", "wrong-key-0123456789")
        await tab.click("#key-use")
        await tab.set_input_files("#files", [str(label_files[0])])
        await tab.click("#submit")
        await expect(tab.locator("#alert")).to_have_text(re.compile(r"Bad key.*401"))
        await expect(tab.locator("#key-status")).to_have_text("no key")
        assert await tab.evaluate("sessionStorage.length") == 0

        await tab.fill("#key-input", KEY)
        await tab.click("#key-use")
        # Dropped this time, as a file dragged from the desktop arrives.
        await tab.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dropped = new DataTransfer();
                dropped.items.add(new File([bytes], "bad-2.png", {type: "image/png"}));
                document.getElementById("drop").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: dropped, bubbles: true}));
            }""",
            base64.b64encode(label_png()).decode(),
        )
        await expect(tab.locator("#picked li")).to_have_text(["bad-2.png"])
        await tab.click("#submit")
        card = tab.locator("article.scan")
        await expect(card.locator(".name")).to_have_text("bad-2.png")
        await expect(card.locator(".stage")).to_have_text("checking_rules")
        services.proxy.cut()  # the page's token is over a second old: the reconnect is refused
        await expect(card.locator(".state")).to_have_text("completed")
        await expect(card.locator(".verdict")).to_have_text("non_compliant")
        await assert_each_stage_once(card)
        assert bad == []
    assert_relinked(services)


@needs_browser
async def test_a_batch_stream_refused_for_an_expired_token_is_renewed(
    make_settings: SettingsFactory,
    browser: Browser,  # noqa: F811
    label_files: list[Path],
) -> None:
    """The batch's one stream, refused on reconnect (its token expired), is opened again
    with a fresh link from the last event id; every card still ends once, in order."""
    from playwright.async_api import expect

    settings = msgspec.structs.replace(secured(make_settings), event_token_ttl_s=1)
    async with (
        running_services(settings, VerdictBackend(stage_s=2.0)) as services,
        opened(browser, f"{services.gateway_url}/") as (tab, bad),
    ):
        await tab.fill("#key-input", KEY)
        await tab.click("#key-use")
        await tab.set_input_files("#files", [str(p) for p in label_files[:2]])
        await tab.click("#submit")
        cards = tab.locator("article.scan")
        await expect(cards).to_have_count(2)
        await expect(cards.first.locator(".stage")).to_have_text("checking_rules")
        services.proxy.cut()  # the stream's token is over a second old: the reconnect is refused
        for name, verdict in (("bad-1.png", "non_compliant"), ("ok-1.png", "compliant")):
            card = cards.filter(has_text=name)
            await expect(card.locator(".verdict")).to_have_text(verdict)
            await assert_each_stage_once(card)
        assert bad == []
    assert_relinked(services)
