"""A real Prometheus server (Debian's ``prometheus``), scraping services on loopback."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
import yaml

from shared.embedded import die_with_parent, free_port, terminate

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Debian's prometheus is not installed (make prometheus installs it, as root)",
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (make prometheus installs it, as root)",
)


class Prometheus:
    """A running Prometheus and its HTTP query API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> dict[str, float]:
        """An instant query's samples: {label set rendered as ``k=v,…``: value}."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return {
            ",".join(f"{k}={v}" for k, v in sorted(sample["metric"].items())): float(
                sample["value"][1]
            )
            for sample in body["data"]["result"]
        }

    def value(self, promql: str) -> float | None:
        """The single value of a query that yields one sample (None if it yields none)."""
        samples = self.query(promql)
        assert len(samples) <= 1, samples
        return next(iter(samples.values()), None)

    def wait_value(self, promql: str, expected: float, timeout: float = 20.0) -> None:
        """Wait until ``promql`` yields ``expected`` (scrapes land once a second)."""
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.value(promql)
            if got == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"{promql} is {got}, not {expected}, after {timeout}s")


@contextlib.contextmanager
def run_prometheus(tmp: Path, targets: Mapping[str, str]) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` ({job: host:port}) every second from ``tmp``."""
    assert PROMETHEUS is not None
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready in 30s")
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        terminate(proc, 10)
