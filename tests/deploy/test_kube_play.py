"""deploy/k8s/labelscan.yaml played by ``podman kube play``: the manifests' pods run.

The ConfigMap and Deployments are played as written, with what one machine needs (see
``tests/deploy/kube.py``): the image built from deploy/Dockerfile, the host network,
ports of their own. Valkey runs beside them as in the container test. What podman
cannot act on (Services, the KEDA ScaledObject) is left out, and the test says which.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.embedded import free_port
from tests.deploy import engine, kube
from tests.deploy.conftest import (
    API_KEY,
    EVENT_KEY,
    MEASURED,
    TENANT,
    Deployment,
    Image,
    deploy,
    scan_label,
)

pytestmark = pytest.mark.timeout(900)
SERVICES = ("gateway", "notifier", "analyzer")


@dataclass(frozen=True)
class Played:
    """The pods podman played from the manifest, beside a Valkey container."""

    valkey: Deployment
    rendered: kube.Rendered
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def container(self, service: str) -> str:
        """podman names a pod's container ``<pod>-<container>``."""
        return f"{self.rendered.pods[service]}-{service}"


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _kube(conf: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``podman kube ARGS`` with the ulimits of ``conf`` (kube play has no ``--ulimit``)."""
    return subprocess.run(
        ["podman", "kube", *args],
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def played(image: Image) -> Iterator[Played]:
    """The manifest's ConfigMap and three Deployments played, ready; then torn down."""
    suffix = "kp" + secrets.token_hex(3)
    valkey = deploy(image, suffix)
    ports = {service: free_port() for service in SERVICES}
    rendered = kube.render(
        image=image.ref,
        suffix=suffix,
        ports=ports,
        config={
            "REDIS_URL": valkey.env["REDIS_URL"],
            "LABELSCAN_PREFIX": valkey.prefix,
            "PUBLIC_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
            "PUBLIC_NOTIFIER_URL": f"http://127.0.0.1:{ports['notifier']}",
            "ANALYZER_BACKEND": "local",  # offline: no API key in the test's Secret
            "LABELSCAN_TENANT_RPS": "0",
            "LABELSCAN_ADMIN_TENANTS": TENANT,  # for the drain below
        },
    )
    with tempfile.TemporaryDirectory(prefix="labelscan-kube-") as tmp:
        directory = Path(tmp)
        conf = kube.containers_conf(directory)
        manifest = directory / "played.yaml"
        manifest.write_text(rendered.yaml())
        try:
            kube.create_secret(
                rendered.secret,
                {"LABELSCAN_API_KEYS": f"{TENANT}:{API_KEY}", "LABELSCAN_EVENT_KEYS": EVENT_KEY},
                directory,
            )
            started = time.monotonic()
            done = _kube(conf, "play", str(manifest))
            assert done.returncode == 0, f"podman kube play failed:\n{done.stderr[-4000:]}"
            result = Played(valkey, rendered, ports)
            for service in SERVICES:
                url = result.url(service)
                try:
                    engine.wait_until(lambda u=url: _ready(u), 120, service)
                except TimeoutError as exc:
                    logs = engine.podman("logs", result.container(service), check=False)
                    raise RuntimeError(f"{exc}:\n{logs.stderr[-3000:]}") from exc
            MEASURED["kube play to every pod ready"] = f"{time.monotonic() - started:.1f} s"
            yield result
        finally:
            # Stops and removes the pods and their emptyDir volumes; the secret and
            # Valkey are the test's own.
            _kube(conf, "down", str(manifest))
            engine.podman("secret", "rm", rendered.secret, check=False)
            valkey.containers.remove_all()


def test_every_kind_under_deploy_k8s_is_played_or_left_out_with_a_reason() -> None:
    """A kind added to the manifests is either played or named in ``NOT_PLAYED``."""
    for path in sorted((engine.ROOT / "deploy/k8s").glob("*.yaml")):
        for doc in kube.documents(path):
            assert doc["kind"] in kube.PLAYED or doc["kind"] in kube.NOT_PLAYED, (path, doc)


def test_what_podman_cannot_play_is_left_out_by_name(played: Played) -> None:
    """Only kinds podman plays are given to it; the rest are named, each with a reason."""
    kinds = {doc["kind"] for doc in played.rendered.documents}
    assert kinds == {"ConfigMap", "Deployment"}
    assert sorted(played.rendered.skipped) == [
        "ScaledObject/labelscan-analyzer",
        "Service/labelscan-gateway",
        "Service/labelscan-notifier",
    ]
    assert set(played.rendered.pods) == set(SERVICES)


def test_pods_run_as_the_manifests_say(played: Played) -> None:
    """Each pod's container runs as the manifest's securityContext says (user 10001,
    read-only root, no capabilities, no privilege escalation), and both of its probes'
    endpoints answer 200."""
    for service in SERVICES:
        (info,) = json.loads(
            engine.podman("container", "inspect", played.container(service)).stdout
        )
        assert info["State"]["Running"], (service, info["State"])
        assert info["Config"]["User"] == "10001:10001", service
        host = info["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert "CAP_SYS_CHROOT" in host["CapDrop"] and "CAP_NET_RAW" in host["CapDrop"]
        assert "no-new-privileges" in host["SecurityOpt"], service
        assert host["NetworkMode"] == "host", service
        for path in ("/healthz", "/readyz"):
            response = httpx.get(f"{played.url(service)}{path}", timeout=5)
            assert response.status_code == 200, (service, path, response.text)


def test_scan_end_to_end_through_the_pods(played: Played) -> None:
    """A label posted to the gateway pod is read by the analyzer pod (offline backend)
    and its events stream from the notifier pod."""
    scanned = scan_label(played.url("gateway"), played.url("notifier"))
    MEASURED["first scan through the kube-played pods"] = f"{scanned.took_s:.1f} s"
    assert scanned.stats["consumers"] == 1, scanned.stats


def test_a_drained_analyzer_pod_is_live_but_not_ready(played: Played) -> None:
    """Drained through the admin API, the analyzer pod's readiness probe path answers
    503 (Kubernetes would count it as not ready) and its liveness path 200 (no restart);
    undrained, it is ready again."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    analyzer = played.url("analyzer")

    def probe(path: str) -> int:
        return httpx.get(f"{analyzer}{path}", timeout=5).status_code

    with httpx.Client(base_url=played.url("gateway"), headers=auth, timeout=10) as client:
        (consumer,) = client.get("/api/queue/stats").json()["consumer_names"]
        drained = client.post("/api/admin/drain", json={"consumer": consumer})
        assert drained.status_code == 200 and drained.json()["delivered"] == 1, drained.text
        engine.wait_until(lambda: probe("/readyz") == 503, 10, "drained analyzer not ready")
        live = probe("/healthz")
        client.post("/api/admin/drain", json={"consumer": consumer, "undo": True})
        engine.wait_until(lambda: probe("/readyz") == 200, 10, "undrained analyzer ready")
    assert live == 200
