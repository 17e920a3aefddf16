"""Podman for the container tests: a base image made from Debian's packages, the
project's image built from ``deploy/Dockerfile`` on it, and containers on the host network.

Facts of these machines (see ``make containers``): Debian's podman with ``runc`` (crun
cannot set up cgroups on every kernel), no bridge network (``--network host``), explicit
ulimits within the host's hard limits, and no public registry: the base is a
``mmdebstrap`` root filesystem of the host's own Debian suite, imported as a local
image. Registry traffic may pass a TLS-inspecting proxy, so the build mounts the host's
CA bundle (never copied into the image).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST_CERTS = Path("/etc/ssl/certs")
CA_BUNDLE = HOST_CERTS / "ca-certificates.crt"
# Everything a container run writes goes to a tmpfs: the root filesystem is read-only.
NOFILE_WANTED = 65536
NPROC_WANTED = 16384
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
# Leaner base: no manuals, docs (copyright kept) or translations.
BASE_DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)


# Each container names the test process that started it, so a later run removes the
# containers of a run that was killed before its teardown (and only those).
OWNER_LABEL = "labelscan-test-pid"


class EngineMissing(Exception):
    """No usable container engine: the reason is the message."""


def debian_suite() -> str:
    """The host's Debian suite (``bookworm``...): the base uses the same packages."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise EngineMissing("/etc/os-release names no Debian suite (VERSION_CODENAME)")


def ulimits() -> dict[str, int]:
    """``nofile`` and ``nproc`` within this host's hard limits (runc refuses anything above)."""
    values = {}
    for name, limit, wanted in (
        ("nofile", resource.RLIMIT_NOFILE, NOFILE_WANTED),
        ("nproc", resource.RLIMIT_NPROC, NPROC_WANTED),
    ):
        _, hard = resource.getrlimit(limit)
        values[name] = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    return values


def ulimit_args() -> list[str]:
    """``--ulimit`` flags of :func:`ulimits`."""
    return [f for name, v in ulimits().items() for f in ("--ulimit", f"{name}={v}:{v}")]


def check_tools() -> None:
    """Raise EngineMissing naming what is absent or broken."""
    missing = [t for t in ("podman", "runc", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        raise EngineMissing(
            f"{', '.join(missing)} not installed (`make containers` installs them as root)"
        )
    probe = subprocess.run(
        ["podman", "--runtime", "runc", "info", "--format", "{{.Store.GraphDriverName}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        raise EngineMissing(f"podman does not work here: {probe.stderr.strip()[-300:]}")


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman --runtime runc ARGS``; raise with its output if it fails and ``check``."""
    done = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:3])} failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return done


def remove_orphans() -> list[str]:
    """Remove pods (``kube play``) and containers whose test process is gone; their names."""
    pods = podman(
        "pod", "ps", "--filter", f"label={OWNER_LABEL}",
        "--format", f'{{{{.Name}}}} {{{{index .Labels "{OWNER_LABEL}"}}}}',
    )  # fmt: skip
    orphans = []
    for line in pods.stdout.splitlines():
        name, _, pid = line.partition(" ")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            podman("pod", "rm", "--force", "--time", "0", name, check=False)
            orphans.append(name)
    listed = podman(
        "ps", "--all", "--filter", f"label={OWNER_LABEL}",
        "--format", f'{{{{.Names}}}} {{{{index .Labels "{OWNER_LABEL}"}}}}',
    )  # fmt: skip
    for line in listed.stdout.splitlines():
        name, _, pid = line.partition(" ")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            podman("rm", "--force", "--time", "0", name, check=False)
            orphans.append(name)
    return orphans


def image_exists(ref: str) -> bool:
    """Whether the local store holds ``ref``."""
    return podman("image", "exists", ref, check=False).returncode == 0


def base_image(timeout: float = 600) -> str:
    """A local image of the host's Debian suite with python3: made once, kept in the store."""
    suite = debian_suite()
    ref = f"localhost/labelscan-base:{suite}"
    if image_exists(ref):
        return ref
    with tempfile.TemporaryDirectory(prefix="labelscan-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        command = ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "--quiet"]
        command += [f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTS]
        done = subprocess.run(
            [*command, suite, str(tarball)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed:\n{done.stderr[-4000:]}")
        podman("import", "--change", 'CMD ["python3"]', str(tarball), ref, timeout=300)
    return ref


def image_tag() -> str:
    """One tag per work tree, so sessions in other trees do not overwrite each other's."""
    return "localhost/labelscan-test:" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]


def build_image(base: str, timeout: float = 1200) -> str:
    """Build ``deploy/Dockerfile`` on ``base`` (layers cached by podman); its tag."""
    tag = image_tag()
    args = ["build", "--network", "host", *ulimit_args(), "--layers"]
    args += ["--build-arg", f"BASE_IMAGE={base}"]
    if CA_BUNDLE.is_file():
        args += ["--volume", f"{HOST_CERTS}:{HOST_CERTS}:ro"]
        args += ["--build-arg", f"PIP_CERT={CA_BUNDLE}"]
    before = image_id(tag)
    podman(*args, "-f", str(ROOT / "deploy/Dockerfile"), "-t", tag, str(ROOT), timeout=timeout)
    if before and before != image_id(tag):
        # The previous build of this tree and its cache layers, unused now: the store
        # keeps one build per tree rather than growing by one per dependency change.
        podman("rmi", before, check=False, timeout=120)
    return tag


def image_id(ref: str) -> str | None:
    """The image's id, or None if the store does not hold ``ref``."""
    done = podman("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def image_size(ref: str) -> int:
    """The image's size in bytes, as the store counts it."""
    (info,) = json.loads(podman("image", "inspect", ref).stdout)
    return int(info["Size"])


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``ready`` every 50 ms; the seconds it took, or TimeoutError naming ``what``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if ready():
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout}s")


@dataclass
class Containers:
    """Containers of one test session: named, on the host network, removed at the end."""

    image: str
    session: str
    names: list[str] = field(default_factory=list)

    def run(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str],
        *,
        network: str = "host",
        stop_timeout: int = 10,
    ) -> str:
        """Start a detached container (read-only root, /tmp a tmpfs); its full name."""
        full = f"labelscan-{self.session}-{name}"
        args = ["run", "--detach", "--name", full, "--network", network, *ulimit_args()]
        # As the Kubernetes manifests run it: read-only root, no capabilities, no new privileges.
        args += ["--read-only", "--tmpfs", "/tmp:rw,size=64m", "--stop-timeout", str(stop_timeout)]
        args += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        args += ["--label", f"{OWNER_LABEL}={os.getpid()}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        podman(*args, self.image, *command, timeout=60)
        self.names.append(full)
        return full

    def inspect(self, name: str) -> dict[str, Any]:
        """``podman inspect`` of one container."""
        (info,) = json.loads(podman("container", "inspect", name).stdout)
        result: dict[str, Any] = info
        return result

    def logs(self, name: str) -> str:
        """What the container wrote (stdout and stderr)."""
        done = podman("logs", name, check=False)
        return done.stdout + done.stderr

    def remove_all(self) -> None:
        """Remove every container this session started, running or not."""
        for name in self.names:
            podman("rm", "--force", "--time", "0", name, check=False, timeout=60)
        self.names.clear()
