"""A real stack for the client and the CLI: gateway, notifier and analyzer with auth on.

The analyzer's backend decides by product name, so a test picks each scan's outcome:
``ok…`` is compliant, ``bad…`` non-compliant, ``doomed…`` a permanent failure. It walks
the offline backend's stages with a pause each, so progress is there to watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from analyzer.backends import Analysis, AnalysisRequest, Report
from gateway.app import create_app as create_gateway
from notifier.app import create_app as create_notifier
from shared.embedded import free_port
from shared.errors import BackendError
from shared.schemas import Finding, LabelAnalysis, MarketplaceReport, Usage
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.proxy import CuttableProxy, cuttable_proxy
from tests.support.servers import serve
from tests.support.stack import worker_task

KEY = "key-cli-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


def console_script() -> list[str]:
    """The ``labelscan`` command that ``pip install`` made from ``[project.scripts]``."""
    command = Path(sys.executable).with_name("labelscan")
    assert command.exists(), f"no {command}: install the project (make install) to get it"
    return [str(command)]


def _finding(rule: str, status: str, fix: str) -> Finding:
    return Finding(
        rule=rule,
        requirement=f"{rule} must be on the label",
        status=status,  # type: ignore[arg-type]
        severity="major" if status == "fail" else "info",
        evidence="",
        fix=fix,
        regulation="test rulebook",
    )


class VerdictBackend:
    """Answers by product name (``ok``/``bad``/``doomed``), after a pause per stage."""

    name = "verdict"

    def __init__(self, stage_s: float = 0.05) -> None:
        self.stage_s = stage_s
        self.calls: dict[str, int] = {}

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Walk the stages, then judge by the product name."""
        name = request.product_name
        self.calls[name] = self.calls.get(name, 0) + 1
        await report("ocr", 40, f"Reading the label of {name}")
        await asyncio.sleep(self.stage_s)
        await report("checking_rules", 80, "Checking the marketplace rules")
        await asyncio.sleep(self.stage_s)
        if name.startswith("doomed"):
            raise BackendError("the label could not be judged")
        bad = name.startswith("bad")
        reports = [
            MarketplaceReport(
                marketplace=m,
                verdict="non_compliant" if bad else "compliant",
                findings=[
                    _finding("PASSED-RULE", "pass", ""),
                    *(
                        [_finding(f"{m}-MISSING-ADDRESS", "fail", "Print the maker's address")]
                        if bad
                        else []
                    ),
                ],
            )
            for m in request.marketplaces
        ]
        analysis = LabelAnalysis(
            verdict="non_compliant" if bad else "compliant",
            summary=f"Checked {name}.",
            detected_text="",
            marketplaces=reports,
        )
        return Analysis(analysis=analysis, usage=Usage(), model="verdict")

    async def warm_up(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass
class Services:
    """The running stack: the gateway's URL, the notifier behind a proxy that can cut it."""

    gateway_url: str
    notifier_url: str
    proxy: CuttableProxy
    backend: VerdictBackend
    settings: Settings


@contextlib.asynccontextmanager
async def running_services(settings: Settings, backend: VerdictBackend) -> AsyncIterator[Services]:
    """Notifier (reached through the proxy, as event links say), gateway, one analyzer."""
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(cuttable_proxy(port))
        settings = msgspec.structs.replace(settings, public_notifier_url=proxy.url)
        notifier = await stack.enter_async_context(serve(create_notifier(settings), port=port))
        gateway = await stack.enter_async_context(serve(create_gateway(settings)))
        await stack.enter_async_context(worker_task(settings, backend))
        yield Services(gateway.url, notifier.url, proxy, backend, settings)


def secured(make_settings: SettingsFactory) -> Settings:
    """Auth on with KEY (tenant ``a``), a fast reconnect for dropped streams."""
    return make_settings(
        auth=True,
        api_keys=(("a", Secret(KEY)),),
        event_keys=(Secret("e" * 40),),
        sse_retry_ms=200,
    )


@pytest.fixture
async def services(make_settings: SettingsFactory) -> AsyncIterator[Services]:
    """The stack with a short pause per stage."""
    async with running_services(secured(make_settings), VerdictBackend()) as running:
        yield running


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    """A directory of label files: ok-1.png, ok-2.png, bad-1.png."""
    folder = tmp_path / "labels"
    folder.mkdir()
    for name in ("ok-1", "ok-2", "bad-1"):
        (folder / f"{name}.png").write_bytes(label_png())
    return folder


@dataclass(frozen=True)
class Run:
    """What the CLI did."""

    code: int
    out: str
    err: str


def cli_env(url: str, key: str | None = KEY) -> dict[str, str]:
    """The environment a user would set: only LABELSCAN_URL and LABELSCAN_API_KEY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELSCAN_")}
    env.pop("TERM", None)
    env["LABELSCAN_URL"] = url
    # This checkout's code, even when the editable install points at another (a git
    # worktree): the script's own folder, not the cwd, comes first on its import path.
    env["PYTHONPATH"] = str(ROOT)
    if key is not None:
        env["LABELSCAN_API_KEY"] = key
    return env


async def labelscan(*args: str, env: dict[str, str], timeout: float = 60) -> Run:
    """Run the ``labelscan`` command without a terminal (pipes), as a script would."""
    proc = await asyncio.create_subprocess_exec(
        *console_script(),
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
