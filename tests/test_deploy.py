"""deploy/ stays in step with the code: real settings, real commands, the real key layout.

These read the files; tests/deploy/ builds the image and runs its containers, and
validates the Kubernetes manifests against the API and CRD schemas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shared.keys import GROUP, Keys
from shared.schemas import PRIORITIES
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SETTINGS_TEXT = (ROOT / "shared/settings.py").read_text()
SETTINGS_NAMES = set(re.findall(r'r\.get\(\s*"([A-Z_]+)"', SETTINGS_TEXT))
SERVICES = {"gateway", "analyzer", "notifier"}


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def _k8s() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "k8s/labelscan.yaml").read_text()))


def test_compose_sets_only_real_settings_and_runs_each_service() -> None:
    """Every variable compose sets is read by Settings; each service runs its own module."""
    services = _compose()["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["python", "-m", name]
        assert set(service["environment"]) <= SETTINGS_NAMES, name
        assert service["environment"]["REDIS_URL"] == "redis://valkey:6379/0"
    assert "--appendonly" in services["valkey"]["command"]  # nothing accepted is lost


def test_dockerfile_installs_every_package_and_sets_real_settings() -> None:
    """The image holds every package the project declares, and its ENV names are settings."""
    text = (DEPLOY / "Dockerfile").read_text()
    for package in ("shared", *sorted(SERVICES)):
        assert f"COPY {package} {package}" in text
        assert (ROOT / package / "__init__.py").is_file()
    # The last ENV is the final (run) stage's; the build stage's only configure pip.
    *_, env = re.findall(r"^ENV (.*?)(?:\n\n|\Z)", text, re.S | re.M)
    names = set(re.findall(r"([A-Z_]+)=", env))
    names -= {"PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    assert names and names <= SETTINGS_NAMES


def test_k8s_probes_ports_and_settings_match_the_services() -> None:
    """Probes hit the real health routes on each service's default port."""
    docs = _k8s()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert set(config) <= SETTINGS_NAMES
    defaults = Settings()
    ports = {
        "gateway": defaults.gateway_port,
        "notifier": defaults.notifier_port,
        "analyzer": defaults.analyzer_health_port,
    }
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        name = container["name"]
        assert container["command"] == ["python", "-m", name]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": ports[name]}


def test_keda_scales_analyzers_on_the_real_streams_and_group() -> None:
    """The autoscaler watches the lag of the analyzers' group on every priority stream."""
    docs = _k8s()
    prefix = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["LABELSCAN_PREFIX"]
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["stream"] for t in triggers} == {
        Keys(prefix).requests(p) for p in PRIORITIES
    }
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {GROUP}
    assert scaled["spec"]["scaleTargetRef"]["name"] == "labelscan-analyzer"


def _redis_env(env: dict[str, str]) -> dict[str, str]:
    """The Redis settings of a service's environment (the rest are ${...} placeholders)."""
    return {k: str(v) for k, v in env.items() if k.startswith("REDIS_")}


def test_compose_sentinel_profile_wires_real_settings_to_real_sentinels() -> None:
    """The sentinel profile's services name sentinels that exist and the master they watch."""
    services = _compose()["services"]
    in_profile = {n for n, s in services.items() if "sentinel" in s.get("profiles", [])}
    assert {f"{name}-sentinel" for name in SERVICES} <= in_profile
    sentinels: dict[str, str] = {}  # "host:port" -> the sentinel's config text
    for name in in_profile:
        command = services[name]["command"]
        if command[:2] == ["sh", "-c"] and "valkey-sentinel" in command[2]:
            port = re.search(r"^port (\d+)$", command[2], re.M)
            assert port is not None, name
            sentinels[f"{name}:{port.group(1)}"] = command[2]
    assert len(sentinels) == 3
    for name in SERVICES:
        service = services[f"{name}-sentinel"]
        assert service["command"] == ["python", "-m", name]
        assert set(service["environment"]) <= SETTINGS_NAMES, name
        settings = Settings.from_env(_redis_env(service["environment"]))
        assert settings.redis_mode == "sentinel"
        assert {f"{h}:{p}" for h, p in settings.redis_sentinels} == set(sentinels)
        assert set(service["depends_on"]) == {a.split(":")[0] for a in sentinels}
        for config in sentinels.values():
            monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) 2$", config, re.M)
            assert monitor is not None
            assert monitor.group(1) == settings.redis_sentinel_master
            assert monitor.group(2) in in_profile  # the primary is a service of the profile
    replica = services["valkey-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1] == "valkey-primary"
    for server in ("valkey-primary", "valkey-replica"):
        assert "--appendonly" in services[server]["command"]


def test_k8s_cluster_mode_config_and_keda_triggers() -> None:
    """cluster.yaml: valid cluster settings; KEDA reads each request stream on the cluster."""
    docs = list(yaml.safe_load_all((DEPLOY / "k8s/cluster.yaml").read_text()))
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert set(config) <= SETTINGS_NAMES
    settings = Settings.from_env(config)
    assert settings.redis_mode == "cluster"
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "labelscan-analyzer"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-cluster-streams"}
    assert settings.partitions > 1
    assert {t["metadata"]["stream"] for t in triggers} == {
        part.requests(p)
        for part in Keys(settings.prefix, settings.partitions).partitions
        for p in PRIORITIES
    }
    node = settings.redis_url.removeprefix("redis://")
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == GROUP
        assert int(meta["lagCount"]) > 0
        addresses = meta["addresses"].split(",")
        assert node in addresses and all(re.fullmatch(r"[\w.-]+:\d+", a) for a in addresses)
    # It replaces the base manifest's objects of the same names.
    base = {(d["kind"], d["metadata"]["name"]) for d in _k8s()}
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} <= base


def test_k8s_and_compose_run_the_image_as_its_user_read_only() -> None:
    """The manifests' non-root user is the Dockerfile's; the root filesystem is read-only."""
    user = re.findall(r"^USER (\d+):(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert len(user) == 1
    uid, gid = (int(v) for v in user[0])
    for deployment in (d for d in _k8s() if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    services = _compose()["services"]
    for name in SERVICES:
        assert services[name]["read_only"] is True
        assert services[name]["tmpfs"] == ["/tmp"]
