"""A real browser's EventSource across a notifier crash: every event once, in order.

Chromium (headless, Debian's, never downloaded) opens a page on one origin whose
EventSource reads a scan's events from a ``python -m notifier`` process on
another origin (so CORS is exercised too). The notifier is SIGKILLed mid-scan
and a new one started on the same port; the browser reconnects by itself with
Last-Event-ID, and what the page collected must be the scan's whole history.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from shared.embedded import free_port
from shared.settings import Settings
from tests.notifier.scans import Publisher
from tests.support.processes import spawn, stop, wait_http
from tests.support.servers import serve

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make browser, or apt-get install chromium)"
)

RETRY_MS = 200  # the browser's reconnect delay, sent by the notifier as `retry:`
WAIT_MS = 30_000  # generous: a busy 2-core CI machine

# What a dashboard does: listen to every event type, stop at the terminal one.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>scan progress</title>
<script>
window.events = [];
window.opened = 0;
window.errors = 0;
const source = new EventSource(new URLSearchParams(location.search).get("events"));
source.onopen = () => { window.opened += 1; };
source.onerror = () => { window.errors += 1; };
for (const type of ["queued", "scheduled", "progress", "completed", "failed", "cancelled",
                    "reset", "reconnect"]) {
  source.addEventListener(type, (e) => {
    window.events.push({type: type, id: e.lastEventId, data: e.data});
    if (["completed", "failed", "cancelled"].includes(type)) source.close();
  });
}
</script>
"""


async def page(request: Request) -> HTMLResponse:
    """The dashboard page."""
    return HTMLResponse(PAGE)


class NotifierProcess:
    """``python -m notifier`` on a fixed port, restartable after a crash."""

    def __init__(self, settings: Settings, port: int, origin: str) -> None:
        self.settings = settings
        self.port = port
        self.origin = origin
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The notifier's base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start a notifier and wait until it is ready (its reader is running)."""
        self.proc = spawn(
            "notifier",
            self.settings,
            NOTIFIER_PORT=str(self.port),
            CORS_ORIGINS=self.origin,
            SSE_RETRY_MS=str(RETRY_MS),
            LOG_LEVEL="WARNING",
        )
        await asyncio.to_thread(wait_http, f"{self.url}/readyz", self.proc)

    def kill(self) -> None:
        """SIGKILL: a crash, no drain, no goodbye frame."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers)."""
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    """A tiny server for the page, on an origin of its own."""
    async with serve(Starlette(routes=[Route("/", page)])) as server:
        yield server.url


async def test_browser_eventsource_survives_a_notifier_crash(
    settings: Settings, publisher: Publisher, page_origin: str
) -> None:
    """Collected events equal the scan's history: complete, in order, no duplicates."""
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)
    notifier = NotifierProcess(settings, free_port(), page_origin)
    await notifier.start()
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    try:
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            try:
                tab = await browser.new_page()
                events_url = f"{notifier.url}/api/scans/{scan_id}/events"
                await tab.goto(f"{page_origin}/?{urlencode({'events': events_url})}")

                async def seen(count: int) -> None:
                    await tab.wait_for_function(f"window.events.length >= {count}", timeout=WAIT_MS)

                await seen(2)  # queued and claimed, replayed from the history
                await publisher.progress(claim, 30)
                await publisher.progress(claim, 40)
                await seen(4)
                notifier.kill()
                # Published while no notifier runs: only the history can hand these over.
                await publisher.progress(claim, 50)
                await publisher.progress(claim, 60)
                await notifier.start()  # same port, a brand-new process
                await publisher.progress(claim, 70)
                await publisher.complete(claim)
                await tab.wait_for_function(
                    "window.events.some((e) => e.type === 'completed')", timeout=WAIT_MS
                )
                got: list[dict[str, Any]] = await tab.evaluate("window.events")
                opened: int = await tab.evaluate("window.opened")
                errors: int = await tab.evaluate("window.errors")
            finally:
                await browser.close()
    finally:
        notifier.stop()
    history = await publisher.history(scan_id)
    assert [(e["id"], e["data"]) for e in got] == history
    assert [e["type"] for e in got] == ["queued", *["progress"] * 6, "completed"]
    assert opened >= 2 and errors >= 1, "the browser saw the crash and reconnected by itself"
