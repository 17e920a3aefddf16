"""Services as real processes (``python -m <service>``), for tests that kill them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from shared.embedded import die_with_parent, terminate
from shared.settings import Settings

_ENV_OF = {
    "redis_url": "REDIS_URL",
    "prefix": "LABELSCAN_PREFIX",
    "partitions": "SCAN_PARTITIONS",
    "redis_mode": "REDIS_MODE",
    "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
    "gateway_port": "GATEWAY_PORT",
    "notifier_port": "NOTIFIER_PORT",
    "worker_concurrency": "SCAN_WORKER_CONCURRENCY",
    "analyzer_backend": "ANALYZER_BACKEND",
    "simulated_delay_ms": "SIMULATED_DELAY_MS",
    "visibility_timeout_s": "SCAN_VISIBILITY_TIMEOUT",
    "max_attempts": "SCAN_MAX_ATTEMPTS",
    "retry_base_s": "SCAN_RETRY_BASE",
    "retry_cap_s": "SCAN_RETRY_CAP",
    "shutdown_grace_s": "SCAN_SHUTDOWN_GRACE",
    "analyzer_health_port": "ANALYZER_HEALTH_PORT",
    "durability": "SCAN_DURABILITY",
    "redis_timeout_s": "REDIS_SOCKET_TIMEOUT",
    "anthropic_base_url": "ANTHROPIC_BASE_URL",
    "anthropic_model": "ANTHROPIC_MODEL",
    "sse_heartbeat_s": "SSE_HEARTBEAT",
    "tenant_rps": "LABELSCAN_TENANT_RPS",
    "anthropic_rpm": "ANTHROPIC_RPM",
    "events_retention_s": "EVENTS_RETENTION",
}


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes ``python -m <service>`` read ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "SCAN_", "LABELSCAN_"))
    }
    for field, name in _ENV_OF.items():
        value = getattr(settings, field)
        if value is not None:
            env[name] = str(value)
    if settings.redis_sentinels:
        env["REDIS_SENTINELS"] = ",".join(f"{h}:{p}" for h, p in settings.redis_sentinels)
    if settings.analyzer_health_port is None:
        env["ANALYZER_HEALTH_PORT"] = "off"
    if settings.anthropic_api_key is not None:
        env["ANTHROPIC_API_KEY"] = settings.anthropic_api_key.value
    env["LABELSCAN_AUTH"] = "on" if settings.auth else "off"
    if settings.api_keys:
        env["LABELSCAN_API_KEYS"] = ",".join(f"{t}:{k.value}" for t, k in settings.api_keys)
    if settings.event_keys:
        env["LABELSCAN_EVENT_KEYS"] = ",".join(k.value for k in settings.event_keys)
    env.update({"LOG_JSON": "true", "LOG_LEVEL": "INFO", **extra})
    return env


def spawn(
    service: str, settings: Settings, *, log: Path | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    """Start ``python -m service`` with ``settings``; it dies with the test run.

    ``log``: a file that receives the service's log (its stderr), for tests that
    read what it said (see :func:`log_events`); otherwise it goes to the test's.
    """
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("ab")) if log is not None else None
        return subprocess.Popen(
            [sys.executable, "-m", service],
            env=service_env(settings, **extra),
            stdin=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=die_with_parent,
        )


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines written so far to ``log`` (other lines are skipped)."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def wait_log(
    log: Path,
    proc: subprocess.Popen[bytes],
    match: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """The first log event of ``log`` that ``match`` accepts, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((e for e in log_events(log) if match(e)), None)
        if found is not None:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before logging it")
        time.sleep(0.05)
    raise RuntimeError(f"no matching log line in {log} after {timeout}s")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait until ``url`` answers 200, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} came up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM and wait; SIGKILL if it lingers. Returns the exit code."""
    terminate(proc, timeout)
    return proc.returncode
