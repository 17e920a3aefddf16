"""deploy/Dockerfile built and run: what an operator's first ``compose up`` would find.

The image is built once per session on a base made from Debian's packages (see
``tests/deploy/engine.py``); Valkey, a gateway, a notifier and two analyzers run as
containers of that image with a read-only root filesystem, and a label is scanned
through them with the offline backend (OCR + rulebook, no API key).
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import msgspec
import pytest

from analyzer import ocr
from shared.keys import GROUP, Keys
from shared.schemas import ScanEvent
from tests.deploy import engine
from tests.deploy.conftest import (
    API_KEY,
    MEASURED,
    SCAN_SHUTDOWN_GRACE_S,
    STOP_GRACE_S,
    Deployment,
    Image,
    scan_label,
)
from tests.support.labels import label_specs, render

pytestmark = pytest.mark.timeout(900)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Well above what the image measures (see README): a regression, not noise, trips it.
MAX_IMAGE_BYTES = 800_000_000


def _in_image(image: Image, *command: str, user: str | None = None) -> str:
    """Run a one-off container (read-only root, no network at all); its stdout."""
    as_user = ["--user", user] if user else []
    done = engine.podman(
        "run", "--rm", "--network", "none", *engine.ulimit_args(), "--read-only",
        "--tmpfs", "/tmp", *as_user, image.ref, *command, timeout=120,
    )  # fmt: skip
    return done.stdout


def test_image_runs_as_a_non_root_user_and_is_lean(image: Image) -> None:
    """A numeric non-root USER; no pip, compiler or build sources in the final image, and
    the project byte-compiled (the user cannot write ``__pycache__`` at run time)."""
    (info,) = json.loads(engine.podman("image", "inspect", image.ref).stdout)
    assert info["Config"]["User"] == "10001:10001"
    assert _in_image(image, "id", "-u").strip() == "10001"
    found = _in_image(
        image, "sh", "-c",
        "for t in pip pip3 gcc cc make; do command -v $t; done; "
        "for d in /src /opt/tools /root/.cache /tmp/pip-*; do test -e $d && echo $d; done; "
        "for p in shared gateway analyzer notifier; do "
        "ls /opt/app/$p/__pycache__/*.pyc >/dev/null 2>&1 "
        "|| echo $p not byte-compiled; done; "
        "find /opt/venv -maxdepth 4 \\( -name '*.whl' -o -name pip \\)",
        user="0",
    )  # fmt: skip
    assert found.strip() == "", f"build leftovers in the image:\n{found}"
    assert image.size_bytes < MAX_IMAGE_BYTES


def test_ocr_models_are_inside_the_image(image: Image) -> None:
    """The OCR engine loads with no network at all: the models ship in the image."""
    out = _in_image(
        image, "python", "-c",
        "from analyzer import ocr; ocr.warm_up(); "
        "print(*sorted(p.name for p in ocr.model_dir().glob('*.onnx')))",
    )  # fmt: skip
    assert out.split() == sorted(ocr.MODEL_FILES.values())


def test_health_checks_answer(stack: Deployment) -> None:
    """Liveness and readiness of every service, on the ports the manifests probe."""
    for name in ("gateway", "notifier", "analyzer-1", "analyzer-2"):
        for path in ("/healthz", "/readyz"):
            response = httpx.get(f"http://127.0.0.1:{stack.ports[name]}{path}", timeout=5)
            assert response.status_code == 200, (name, path, response.text)


def test_scan_end_to_end_through_the_containers(stack: Deployment) -> None:
    """A label posted to the gateway is read by an analyzer; the notifier streams its events."""
    scanned = scan_label(stack.gateway, stack.notifier)
    MEASURED["first scan, post to completed"] = f"{scanned.took_s:.1f} s"
    assert scanned.stats["consumers"] == 2, scanned.stats  # both analyzer containers joined


def test_sigterm_hands_back_an_analyzers_scans(stack: Deployment) -> None:
    """SIGTERM (``podman stop``) to a busy analyzer: it hands its scans back within the
    shutdown grace, well inside the stop grace period, exits 0, and another analyzer
    finishes them exactly once."""
    # A deployment of its own (own prefix) on the same Valkey, so the offline analyzers
    # above do not take its scans: one analyzer whose scans take two minutes.
    env = {**stack.env, "LABELSCAN_PREFIX": stack.prefix + "d"}
    drain = Deployment(stack.containers, env["LABELSCAN_PREFIX"], stack.redis_port, env)
    drain.start("drain-gateway", "gateway")
    slow = {"ANALYZER_BACKEND": "simulated", "SIMULATED_DELAY_MS": "120000"}
    drain.start("drain-slow", "analyzer", SCAN_WORKER_CONCURRENCY="2", **slow)
    gateway = f"http://127.0.0.1:{drain.ports['drain-gateway']}"
    body = {"image_base64": base64.b64encode(render(label_specs(False)[0])).decode()}
    body |= {"category": "toys", "marketplaces": ["US"], "product_name": "Blocks"}
    with httpx.Client(base_url=gateway, headers=AUTH, timeout=10) as client:
        ids = [client.post("/api/scans", json=body).json()["scan_id"] for _ in range(2)]

        def states() -> list[str]:
            return [client.get(f"/api/scans/{i}/status").json()["state"] for i in ids]

        engine.wait_until(lambda: states() == ["active", "active"], 30, "both scans active")
        name = stack.name("drain-slow")
        started = time.monotonic()
        engine.podman("stop", "--time", str(STOP_GRACE_S), name, timeout=STOP_GRACE_S + 30)
        stop_took = time.monotonic() - started
        exit_code = stack.containers.inspect(name)["State"]["ExitCode"]
        handed_back = states()
        logs = stack.containers.logs(name)
        with stack.redis() as redis:
            pending = redis.xpending(Keys(drain.prefix).requests("normal"), GROUP)
        MEASURED["analyzer SIGTERM to exit (2 busy scans)"] = f"{stop_took:.1f} s"
        drain.start("drain-finisher", "analyzer", ANALYZER_BACKEND="simulated")
        engine.wait_until(lambda: states() == ["completed"] * 2, 60, "handed-back scans done")
    assert stop_took < SCAN_SHUTDOWN_GRACE_S + 10 < STOP_GRACE_S, "not killed by the grace"
    assert exit_code == 0, logs[-3000:]
    assert handed_back == ["queued", "queued"]
    assert pending["pending"] == 0
    assert '"handed back unfinished scans"' in logs
    with stack.redis() as redis:
        for scan_id in ids:
            raw = redis.xrange(Keys(drain.prefix).scan_events(scan_id))
            types = [msgspec.json.decode(f[b"event"], type=ScanEvent).type for _, f in raw]
            assert types.count("completed") == 1, types
