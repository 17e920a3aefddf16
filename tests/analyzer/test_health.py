"""The analyzer's health endpoint (uvicorn in the worker's loop) and its port setting."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings, SettingsError
from tests.conftest import SettingsFactory
from tests.support.processes import spawn, stop, wait_http, wait_log
from tests.support.stack import running_stack, worker_task


def test_health_port_setting() -> None:
    """A port, 0 for any free port, or off; anything else names the setting."""
    assert Settings.from_env({"ANALYZER_HEALTH_PORT": "8100"}).analyzer_health_port == 8100
    assert Settings.from_env({"ANALYZER_HEALTH_PORT": "0"}).analyzer_health_port == 0
    assert Settings.from_env({"ANALYZER_HEALTH_PORT": "off"}).analyzer_health_port is None
    assert Settings.from_env({}).analyzer_health_port == 8002
    with pytest.raises(SettingsError, match="ANALYZER_HEALTH_PORT"):
        Settings.from_env({"ANALYZER_HEALTH_PORT": "70000"})


async def test_endpoints_answer_json_and_leave_signals_alone(
    make_settings: SettingsFactory,
) -> None:
    """/healthz and /readyz answer the Health body, others a JSON 404; signals untouched."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    settings = make_settings(analyzer_health_port=0)
    async with worker_task(settings) as worker, httpx.AsyncClient() as http:
        assert worker.health_server is not None
        base = f"http://127.0.0.1:{worker.health_server.port}"
        during = {sig: signal.getsignal(sig) for sig in before}
        health = await http.get(f"{base}/healthz")
        ready = await http.get(f"{base}/readyz")
        missing = await http.get(f"{base}/nope")
        wrong = await http.post(f"{base}/healthz")
    assert worker.health_server.port != 0
    assert health.status_code == ready.status_code == 200
    assert health.headers["content-type"] == "application/json"
    assert set(health.json()) == {
        "status",
        "last_turn_s",
        "in_flight",
        "processed",
        "reclaimed",
        "draining",
        "reason",
    }
    assert health.json()["reason"] is None
    assert missing.status_code == 404 and missing.json() == {"error": "not_found"}
    assert wrong.status_code == 405 and wrong.json() == {"error": "method_not_allowed"}
    # uvicorn >= 0.29 takes SIGINT/SIGTERM while it serves unless told otherwise.
    assert during == before


async def test_drained_analyzer_is_alive_but_not_ready(make_settings: SettingsFactory) -> None:
    """Drained through the admin API: /readyz 503 with the reason (Kubernetes stops
    counting the pod as ready), /healthz still 200 (no restart); undrained, ready again."""
    settings = make_settings(analyzer_health_port=0)
    async with running_stack(settings) as stack, httpx.AsyncClient() as http:
        (worker,) = stack.workers
        assert worker.health_server is not None
        base = f"http://127.0.0.1:{worker.health_server.port}"
        before = await http.get(f"{base}/readyz")
        drained = await stack.client.post("/api/admin/drain", json={"consumer": worker.consumer})
        assert drained.json()["delivered"] == 1
        async with asyncio.timeout(5):
            while (ready := await http.get(f"{base}/readyz")).status_code == 200:
                await asyncio.sleep(0.02)
        alive = await http.get(f"{base}/healthz")
        await stack.client.post(
            "/api/admin/drain", json={"consumer": worker.consumer, "undo": True}
        )
        async with asyncio.timeout(5):
            while (again := await http.get(f"{base}/readyz")).status_code != 200:
                await asyncio.sleep(0.02)
    assert before.status_code == 200 and before.json()["draining"] is False
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining" and ready.json()["draining"] is True
    assert "drained by an operator" in ready.json()["reason"]
    assert alive.status_code == 200
    assert alive.json()["status"] == "ok" and alive.json()["draining"] is True
    assert again.json() == {**again.json(), "status": "ok", "draining": False, "reason": None}


async def test_health_off_serves_nothing(make_settings: SettingsFactory) -> None:
    """ANALYZER_HEALTH_PORT=off: no server, the worker runs as usual."""
    async with worker_task(make_settings(analyzer_health_port=None)) as worker:
        assert worker.health_server is None


def _health_url(log: Path, proc: subprocess.Popen[bytes]) -> str:
    """The health URL the process logged once it listened."""
    event = wait_log(log, proc, lambda e: e.get("event") == "health endpoint listening")
    port = event["port"]
    assert isinstance(port, int) and port > 0
    return f"http://127.0.0.1:{port}/healthz"


async def test_two_analyzers_on_one_host_with_port_0(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Two analyzer processes with ANALYZER_HEALTH_PORT=0 both run; each logs its own port."""
    settings = make_settings(analyzer_health_port=0)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [spawn("analyzer", settings, log=log) for log in logs]
    try:
        urls = [
            await asyncio.to_thread(_health_url, log, proc)
            for log, proc in zip(logs, procs, strict=True)
        ]
        for url, proc in zip(urls, procs, strict=True):
            await asyncio.to_thread(wait_http, url, proc)
        alive = [proc.poll() is None for proc in procs]
    finally:
        codes = [stop(proc) for proc in procs]
    assert len(set(urls)) == 2
    assert alive == [True, True]
    assert codes == [0, 0]


async def test_taken_health_port_exits_with_one_line(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """The configured port in use: exit 2 at once, one error line naming the setting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "analyzer.log"
        proc = spawn("analyzer", make_settings(analyzer_health_port=port), log=log)
        try:
            code = await asyncio.to_thread(proc.wait, 20)
        finally:
            stop(proc)
    errors = [line for line in log.read_text().splitlines() if "configuration error" in line]
    assert code == 2
    assert len(errors) == 1
    assert f"ANALYZER_HEALTH_PORT={port} is already in use" in errors[0]
