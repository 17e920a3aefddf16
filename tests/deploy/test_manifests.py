"""The Kubernetes manifests are valid against the API schemas, not only well-formed YAML.

Built-in kinds are checked by ``kubernetes-validate`` (the Kubernetes OpenAPI schemas it
ships, strict: an unknown field is an error). KEDA and Prometheus-operator resources are
checked against their CRD schemas as generated into the ``cloudcoil-models-*`` packages;
a field those models do not know is dropped when they parse, so a document that does
not survive the round trip unchanged names a field the CRD does not have.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIRS = (ROOT / "deploy/k8s", ROOT / "deploy/observability")
# The oldest Kubernetes minor still served by the major clouds, and the newest shipped.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
# CRD groups -> the module holding their generated models (one module per version).
CRD_MODELS = {
    "keda.sh": "cloudcoil.models.keda",
    "monitoring.coreos.com": "cloudcoil.models.prometheus_operator",
}


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object under deploy/ (YAML documents with apiVersion and kind)."""
    for folder in MANIFEST_DIRS:
        for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else ():
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                if isinstance(doc, dict) and {"apiVersion", "kind"} <= set(doc):
                    name = doc.get("metadata", {}).get("name", index)
                    yield f"{path.relative_to(ROOT)}:{doc['kind']}/{name}", doc


DOCUMENTS = list(_documents())


def _is_crd(doc: dict[str, Any]) -> bool:
    return "/" in doc["apiVersion"] and doc["apiVersion"].split("/")[0] in CRD_MODELS


def test_manifests_are_found() -> None:
    """The deploy manifests hold the three Deployments and the KEDA ScaledObject."""
    kinds = [doc["kind"] for _, doc in DOCUMENTS]
    assert kinds.count("Deployment") >= 3
    assert "ScaledObject" in kinds


@pytest.mark.parametrize(
    ("where", "doc"), [pytest.param(w, d, id=w) for w, d in DOCUMENTS if not _is_crd(d)]
)
def test_builtin_kinds_match_the_kubernetes_schemas(where: str, doc: dict[str, Any]) -> None:
    """Strict validation against each supported Kubernetes version's OpenAPI schema."""
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {exc}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: Kubernetes {version} has no {doc['apiVersion']} {doc['kind']}")


@pytest.mark.parametrize(
    ("where", "doc"), [pytest.param(w, d, id=w) for w, d in DOCUMENTS if _is_crd(d)]
)
def test_custom_resources_match_their_crd_schemas(where: str, doc: dict[str, Any]) -> None:
    """KEDA and Prometheus-operator objects parse with their CRD models, every field kept."""
    group, version = doc["apiVersion"].split("/")
    module = importlib.import_module(f"{CRD_MODELS[group]}.{version}")
    model = getattr(module, doc["kind"], None)
    assert model is not None, f"{where}: {group}/{version} has no kind {doc['kind']}"
    parsed = model.model_validate(doc)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == doc, (
        f"{where} has fields that the {doc['kind']} CRD does not define"
    )


def test_a_wrong_field_is_caught() -> None:
    """The checks above are not vacuous: a misspelt field fails each kind of check."""
    deployment = next(d for _, d in DOCUMENTS if d["kind"] == "Deployment")
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = next(d for _, d in DOCUMENTS if d["kind"] == "ScaledObject")
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    typo = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    dumped = ScaledObject.model_validate(typo).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert dumped != typo
    with pytest.raises(ValueError, match="minReplicaCount"):
        ScaledObject.model_validate({**scaled, "spec": {**scaled["spec"], "minReplicaCount": "x"}})
