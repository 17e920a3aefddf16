"""The ``labelscan`` command run for real (a subprocess) against a real stack.

Without a terminal it prints plain lines (no escape codes); under a pseudo-terminal
rich draws a live progress bar. Exit codes: 0 compliant, 1 not, 2 an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from labelscan.cli import CliConfig
from tests.client.conftest import (
    KEY,
    ROOT,
    Services,
    VerdictBackend,
    cli_env,
    console_script,
    labelscan,
    running_services,
    secured,
)
from tests.conftest import SettingsFactory
from tests.support.servers import serve

ESCAPE = "\x1b["


async def test_scan_watch_prints_progress_and_findings_fail_first(
    services: Services, labels: Path
) -> None:
    """Non-compliant: progress lines with stage messages, then the failing rule first; exit 1."""
    env = cli_env(services.gateway_url)
    run = await labelscan(
        "scan",
        str(labels / "bad-1.png"),
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--marketplace",
        "DE",
        "--watch",
        env=env,
    )
    assert run.code == 1, run.err
    assert ESCAPE not in run.out and ESCAPE not in run.err
    lines = [line.rstrip() for line in run.out.splitlines()]
    assert re.fullmatch(r"scan [0-9a-f]{32}", lines[0])
    assert " 40% ocr: Reading the label of bad-1" in lines
    assert " 80% checking_rules: Checking the marketplace rules" in lines
    assert "100% completed: Analysis complete" in lines
    assert "verdict: non_compliant" in lines
    for market in ("US", "DE"):
        title = lines.index(f"{market}: non_compliant")
        rows = [line for line in lines[title:] if "RULE" in line or "MISSING" in line]
        assert "fail" in rows[0] and f"{market}-MISSING-ADDRESS" in rows[0]
        assert "Print the maker's address" in rows[0]
        assert "pass" in rows[1] and "PASSED-RULE" in rows[1]


async def test_scan_json_exit_codes_and_status(services: Services, labels: Path) -> None:
    """--json parses; compliant exits 0; a failed scan 2; status and stats print."""
    env = cli_env(services.gateway_url)
    ok = await labelscan(
        "scan",
        str(labels / "ok-1.png"),
        "--category",
        "food",
        "--marketplace",
        "FR",
        "--watch",
        "--json",
        env=env,
    )
    assert ok.code == 0, ok.err
    detail = json.loads(ok.out)
    assert detail["state"] == "completed"
    assert detail["result"]["analysis"]["verdict"] == "compliant"

    doomed = await labelscan(
        "scan",
        str(labels / "ok-2.png"),
        "--product-name",
        "doomed label",
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--watch",
        env=env,
    )
    assert doomed.code == 2
    assert "error: backend_error: the label could not be judged" in doomed.out

    status = await labelscan("status", detail["scan_id"], env=env)
    assert status.code == 0
    assert f"Scan {detail['scan_id']} · ok-1 · food · completed" in status.out
    assert "FR: compliant" in status.out

    stats = await labelscan("stats", "--json", env=env)
    assert stats.code == 0
    counts = json.loads(stats.out)
    assert (counts["completed"], counts["failed"]) == (1, 1)
    table = await labelscan("stats", env=env)
    assert re.search(r"completed\s+│?\s*1", table.out), table.out


async def test_scan_without_watch_returns_at_once(services: Services, labels: Path) -> None:
    """No --watch: the id and where to poll, exit 0; --json gives the 202 body."""
    env = cli_env(services.gateway_url)
    run = await labelscan(
        "scan",
        str(labels / "ok-1.png"),
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--json",
        env=env,
    )
    assert run.code == 0, run.err
    accepted = json.loads(run.out)
    assert accepted["status"] == "queued"
    assert accepted["status_url"].endswith(f"/api/scans/{accepted['scan_id']}/status")


async def test_dead_list_and_retry(services: Services, labels: Path) -> None:
    """A failed scan is listed as a dead letter; `dead retry` replays it."""
    env = cli_env(services.gateway_url)
    doomed = await labelscan(
        "scan",
        str(labels / "ok-1.png"),
        "--product-name",
        "doomed",
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--watch",
        "--json",
        env=env,
    )
    scan_id = json.loads(doomed.out)["scan_id"]
    listing = await labelscan("dead", "list", env=env)
    assert listing.code == 0
    assert scan_id in listing.out and "backend_error: the label could not be judged" in listing.out
    letters = json.loads((await labelscan("dead", "list", "--json", env=env)).out)
    assert [d["scan_id"] for d in letters["items"]] == [scan_id]
    retried = await labelscan("dead", "retry", scan_id, env=env)
    assert retried.code == 0 and retried.out.strip() == f"scan {scan_id} queued"
    ok = await labelscan(
        "scan",
        str(labels / "ok-1.png"),
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--watch",
        "--json",
        env=env,
    )
    again = await labelscan("dead", "retry", json.loads(ok.out)["scan_id"], "--json", env=env)
    assert again.code == 2  # only failed scans can be replayed
    assert json.loads(again.out)["error"] == "not_failed"


async def test_errors_exit_2_with_the_field(services: Services, labels: Path) -> None:
    """A bad key, an unknown scan, an unreachable gateway and a missing file all exit 2."""
    env = cli_env(services.gateway_url, key="wrong-key-0123456789")
    refused = await labelscan("stats", env=env)
    assert refused.code == 2 and "401" in refused.err
    good = cli_env(services.gateway_url)
    missing = await labelscan("status", "f" * 32, "--json", env=good)
    assert missing.code == 2
    assert json.loads(missing.out) | {"detail": ""} == {
        "status": 404,
        "error": "not_found",
        "detail": "",
        "field": "scan_id",
        "errors": [],
    }
    nowhere = await labelscan("stats", env=cli_env("http://127.0.0.1:9"))
    assert nowhere.code == 2 and "labelscan:" in nowhere.err

    async def page(request: Request) -> Response:
        return Response("<html>a login page</html>", media_type="text/html")

    async with serve(Starlette(routes=[Route("/api/queue/stats", page)])) as elsewhere:
        stranger = await labelscan("stats", env=cli_env(elsewhere.url))
    assert stranger.code == 2
    assert "GET /api/queue/stats answered 200 with what a QueueStats cannot hold" in stranger.err
    no_file = await labelscan(
        "scan", str(labels / "nope.png"), "--category", "toys", "--marketplace", "US", env=good
    )
    assert no_file.code == 2 and "nope.png" in no_file.err
    usage = await labelscan(
        "scan", "x.png", "--category", "weapons", "--marketplace", "US", env=good
    )
    assert usage.code == 2 and "invalid choice" in usage.err


async def test_flags_override_the_environment(services: Services) -> None:
    """--url and --api-key win over LABELSCAN_URL and LABELSCAN_API_KEY."""
    env = cli_env("http://127.0.0.1:9", key="wrong-key-0123456789")
    run = await labelscan("--url", services.gateway_url, "--api-key", KEY, "stats", env=env)
    assert run.code == 0, run.err
    assert CliConfig.resolve(None, None, {}) == CliConfig()
    assert CliConfig.resolve(None, None, {"LABELSCAN_URL": "http://x:1"}).url == "http://x:1"
    config = CliConfig.resolve(None, None, {"LABELSCAN_API_KEY": KEY})
    assert config.api_key is not None and config.api_key.value == KEY
    assert KEY not in repr(config) and KEY not in str(config)


def read_all(fd: int) -> bytes:
    """Everything the child writes to its terminal, until it closes it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def labelscan_in_terminal(*args: str, gateway_url: str) -> tuple[int, str]:
    """``labelscan *args`` under a pseudo-terminal: its exit code and all it drew."""
    primary, secondary = os.openpty()
    env = cli_env(gateway_url) | {"TERM": "xterm-256color", "COLUMNS": "120"}
    proc = await asyncio.create_subprocess_exec(
        *console_script(),
        *args,
        cwd=ROOT,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    reading = asyncio.create_task(asyncio.to_thread(read_all, primary))
    try:
        async with asyncio.timeout(60):
            code = await proc.wait()
            screen = (await reading).decode(errors="replace")
    finally:
        os.close(primary)
    return code, screen


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
async def test_scan_watch_under_a_terminal_draws_a_progress_bar(
    make_settings: SettingsFactory, labels: Path
) -> None:
    """Under a pseudo-terminal rich draws its bar (escape codes, bar glyphs) and the table."""
    async with running_services(secured(make_settings), VerdictBackend(stage_s=0.5)) as services:
        code, screen = await labelscan_in_terminal(
            "scan",
            str(labels / "bad-1.png"),
            "--category",
            "toys",
            "--marketplace",
            "US",
            "--watch",
            gateway_url=services.gateway_url,
        )
    assert code == 1, screen
    assert "\x1b[?25l" in screen, "a live display took the terminal (cursor hidden)"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    # The bar itself: stage, bar glyphs, percentage, the stage's message, redrawn in place.
    assert re.search(r"\rchecking_rules +━+╺━+ +80% Checking the marketplace rules", plain)
    assert "US-MISSING-ADDRESS" in screen and "non_compliant" in screen


async def test_scan_watch_gives_up_at_its_timeout_with_exit_2(
    make_settings: SettingsFactory, labels: Path
) -> None:
    """--timeout bounds the watch: a scan still running then is an error, said on stderr."""
    async with running_services(secured(make_settings), VerdictBackend(stage_s=3.0)) as services:
        run = await labelscan(
            "scan",
            str(labels / "ok-1.png"),
            "--category",
            "toys",
            "--marketplace",
            "US",
            "--watch",
            "--timeout",
            "1",
            env=cli_env(services.gateway_url),
        )
    assert run.code == 2
    assert re.search(r"labelscan: scan [0-9a-f]{32} is still active", run.err), run.err
