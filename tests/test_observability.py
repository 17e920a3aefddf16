"""deploy/observability: the alert rules pass promtool, and every query names real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import analyzer.metrics
import gateway.metrics
import notifier.metrics
import shared.metrics
import shared.queuemetrics
from tests.support.prometheus import PROMTOOL, needs_promtool

ROOT = Path(__file__).parent.parent
OBSERVABILITY = ROOT / "deploy/observability"
MODULES = (analyzer.metrics, gateway.metrics, notifier.metrics, shared.metrics, shared.queuemetrics)


def exported() -> set[str]:
    """Every labelscan sample name the services expose (histogram parts included)."""
    assert MODULES  # imported for their metrics, which register on import
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("labelscan_"):
            names.add(family.name)
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
            }.get(family.type, ())
            names |= {family.name + s for s in suffixes}
    return names


def named(expr: str) -> set[str]:
    """The labelscan metric names a PromQL expression reads."""
    return set(re.findall(r"\blabelscan_[a-z_]+\b", expr))


def _alert_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    return rules


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    """`promtool check rules` accepts the rules file."""
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(OBSERVABILITY / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_cover_the_issue_and_name_real_metrics() -> None:
    """Lag, oldest scan, dead letters, pause, slow consumers and no consumers, on real metrics."""
    rules = [r for g in _alert_rules()["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "LabelscanQueueLagGrowing",
        "LabelscanOldestScanTooOld",
        "LabelscanDeadLettersRising",
        "LabelscanFleetPaused",
        "LabelscanSseSlowConsumers",
        "LabelscanNoConsumers",
    } <= names
    real = exported()
    for rule in rules:
        assert named(rule["expr"]) <= real, rule["alert"]


def test_dashboard_queries_name_only_existing_metrics() -> None:
    """The Grafana dashboard is JSON; every panel query reads metrics the services export."""
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    real = exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) > 10
    used = set()
    for expr in exprs:
        assert named(expr), expr
        assert named(expr) <= real, (expr, named(expr) - real)
        used |= named(expr)
    # Throughput, lag, latency, failures, tokens, cost and SSE each have a panel.
    for metric in (
        "labelscan_scans_finished_total",
        "labelscan_queue_depth",
        "labelscan_scan_duration_seconds_bucket",
        "labelscan_anthropic_tokens_total",
        "labelscan_anthropic_cost_usd_total",
        "labelscan_sse_connections",
    ):
        assert metric in used, metric


def test_k8s_monitoring_matches_the_deployments_and_rules() -> None:
    """PodMonitor on the services' ports, the same alert rules, HPAs for gateway and notifier."""
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/monitoring.yaml").read_text()))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    [monitor] = by_kind["PodMonitor"]
    ports = {e["portNumber"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert ports == {8000, 8001, 8002}
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["podMetricsEndpoints"])
    [rule] = by_kind["PrometheusRule"]
    assert rule["spec"]["groups"] == _alert_rules()["groups"]
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind["HorizontalPodAutoscaler"]}
    deployments = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((ROOT / "deploy/k8s/labelscan.yaml").read_text())
        if d and d["kind"] == "Deployment"
    }
    assert targets == {"labelscan-gateway", "labelscan-notifier"}
    assert targets <= deployments
