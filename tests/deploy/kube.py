"""deploy/k8s/labelscan.yaml rendered for ``podman kube play`` on one machine.

``podman kube play`` (4.x) creates pods from Pods and Deployments and reads ConfigMaps
and Secrets; it has no controllers, so what only a cluster acts on is left out of what
it is given (:data:`NOT_PLAYED`). The rest is played as written, except what one
machine needs: the locally built image, each pod on the host network (no bridge
network on these machines) with ports of its own (the manifests' fixed ports may be
taken here), one replica per Deployment (podman plays one pod per Deployment), and
the deployment's addresses in the ConfigMap.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import engine

MANIFEST = engine.ROOT / "deploy/k8s/labelscan.yaml"

NOT_PLAYED = {
    "Service": "cluster networking: the pods are reached on the host network instead",
    "ScaledObject": "a KEDA custom resource: no KEDA operator here to scale on queue lag",
    "PodMonitor": "a Prometheus-operator custom resource: no operator here",
    "PrometheusRule": "a Prometheus-operator custom resource: no operator here",
    "HorizontalPodAutoscaler": "no metrics server or controller here",
}
"""Kinds that configure cluster controllers, not containers: left out, and why."""

PLAYED = {"ConfigMap", "Deployment", "Pod"}

PORT_SETTING = {
    "gateway": "GATEWAY_PORT",
    "notifier": "NOTIFIER_PORT",
    "analyzer": "ANALYZER_HEALTH_PORT",
}
"""The setting that moves each service's port (the manifests use its default)."""


@dataclass(frozen=True)
class Rendered:
    """What is played: the documents, and each service's pod name and port."""

    documents: list[dict[str, Any]]
    skipped: list[str]
    """``Kind/name`` of every document left out."""
    pods: dict[str, str]
    """Service -> the pod podman names for it (``<deployment>-pod-0``)."""
    secret: str
    """The Secret the containers' ``envFrom`` names: see :func:`create_secret`."""

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.documents, sort_keys=False)


def documents(path: Path = MANIFEST) -> Iterator[dict[str, Any]]:
    """The Kubernetes objects in ``path``."""
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and "kind" in doc:
            yield doc


def render(
    *,
    image: str,
    suffix: str,
    config: Mapping[str, str],
    ports: Mapping[str, int],
    path: Path = MANIFEST,
) -> Rendered:
    """The manifest's ConfigMap and Deployments for podman; every name gets ``suffix``
    so sessions do not collide."""
    played: list[dict[str, Any]] = []
    skipped: list[str] = []
    pods: dict[str, str] = {}
    for original in documents(path):
        kind, name = original["kind"], original["metadata"]["name"]
        if kind not in PLAYED:
            if kind not in NOT_PLAYED:
                raise ValueError(f"{kind}/{name}: neither played nor known to be left out")
            skipped.append(f"{kind}/{name}")
            continue
        doc = copy.deepcopy(original)
        doc["metadata"]["name"] = f"{name}-{suffix}"
        if kind == "ConfigMap":
            doc["data"] = {**doc["data"], **config}
        elif kind == "Deployment":
            service = _render_deployment(doc, image, ports, suffix)
            pods[service] = f"{doc['metadata']['name']}-pod-0"
        played.append(doc)
    if not any(doc["kind"] == "ConfigMap" for doc in played):
        raise ValueError(f"{path.name} has no ConfigMap")
    return Rendered(played, skipped, pods, _secret_ref(played))


def _secret_ref(played: list[dict[str, Any]]) -> str:
    names = {
        source["secretRef"]["name"]
        for doc in played
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    (name,) = names
    return str(name)


def _render_deployment(
    doc: dict[str, Any], image: str, ports: Mapping[str, int], suffix: str
) -> str:
    """Rewrite one Deployment in place; the service it runs."""
    doc["spec"]["replicas"] = 1
    # Pods and containers carry it: a later run removes those of a killed run.
    labels = doc["spec"]["template"]["metadata"].setdefault("labels", {})
    labels[engine.OWNER_LABEL] = str(os.getpid())
    pod = doc["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    (container,) = pod["containers"]
    service = container["name"]
    port = ports[service]
    # podman 4.3 makes an emptyDir a named volume (on disk, not in memory) under the
    # volume's own name: one per session, removed by `kube down`.
    for volume in pod.get("volumes", []):
        volume["name"] = f"{volume['name']}-{suffix}"
    for mount in container.get("volumeMounts", []):
        mount["name"] = f"{mount['name']}-{suffix}"
    container["image"] = image
    container["imagePullPolicy"] = "Never"
    container["env"] = [
        *container.get("env", []),
        {"name": PORT_SETTING[service], "value": str(port)},
    ]
    # On the host network a declared port is a port mapping to podman, which it refuses.
    container.pop("ports", None)
    for probe in ("livenessProbe", "readinessProbe"):
        if probe in container:
            container[probe]["httpGet"]["port"] = port
    for source in container.get("envFrom", []):
        for ref in ("configMapRef", "secretRef"):
            if ref in source:
                source[ref]["name"] = f"{source[ref]['name']}-{suffix}"
    return str(service)


def create_secret(name: str, values: Mapping[str, str], directory: Path) -> None:
    """The Secret the manifests expect (``kubectl create secret generic``), as a podman
    secret: what podman 4.3 reads for ``envFrom.secretRef`` is a JSON object of base64
    values. A ``kind: Secret`` document played beside the pods is stored as YAML, which
    that same reader then refuses (``secret ... is not valid JSON``)."""
    path = directory / f"{name}.json"
    path.write_text(
        json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})
    )
    try:
        engine.podman("secret", "create", name, str(path))
    finally:
        path.unlink()


def containers_conf(directory: Path) -> Path:
    """A containers.conf giving every container of a played pod (its infra container
    too) explicit ulimits within the host's hard limits, and ``runc``: ``kube play`` has
    no ``--ulimit``, and runc refuses a container the default limits cannot give."""
    lines = ["[containers]", "default_ulimits = ["]
    lines += [f'  "{name}={v}:{v}",' for name, v in engine.ulimits().items()]
    lines += ["]", "[engine]", 'runtime = "runc"']
    conf = directory / "containers.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf
