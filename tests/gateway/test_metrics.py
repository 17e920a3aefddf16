"""The gateway's /metrics: token, route templates, and queue state read from Redis."""

from __future__ import annotations

import asyncio
import base64

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gateway.app import create_app
from shared.keys import Keys
from shared.queuemetrics import read_queue_state
from shared.settings import Secret, Settings, SettingsError
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.servers import serve

BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}
TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_token_and_route_templates(make_settings: SettingsFactory) -> None:
    """With METRICS_TOKEN, /metrics needs the bearer token; the API keys never apply to it;
    request timing names route templates, never a scan id."""
    settings = make_settings(metrics_token=Secret(TOKEN))
    async with (
        serve(create_app(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        scan_id = (await client.post("/api/scans", json=BODY)).json()["scan_id"]
        assert (await client.get(f"/api/scans/{scan_id}")).status_code == 200
        assert (await client.get("/api/scans/no-such-scan")).status_code == 404
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        ok = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == wrong.status_code == 401
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    got = samples(ok.text)
    routes = {
        dict(labels)["route"]
        for name, labels in got
        if name == "labelscan_http_request_duration_seconds_count"
    }
    assert "/api/scans/{scan_id}" in routes
    assert not any(scan_id in r or "no-such-scan" in r for r in routes)
    assert ("labelscan_queue_depth", frozenset({("priority", "normal")})) in got


async def test_metrics_off(make_settings: SettingsFactory) -> None:
    """METRICS=off: no /metrics route."""
    async with (
        serve(create_app(make_settings(metrics=False))) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        assert (await client.get("/metrics")).status_code == 404


async def test_queue_state_counts_waiting_scans_and_their_age(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """Scans nobody reads yet: depth by priority over every partition, and the oldest's age."""
    settings = make_settings(partitions=2)
    async with (
        serve(create_app(settings)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for priority in ("high", "normal", "normal", "normal"):
            reply = await client.post("/api/scans", json={**BODY, "priority": priority})
            assert reply.status_code == 202
        await asyncio.sleep(0.3)
        state = await read_queue_state(redis, Keys(settings.prefix, settings.partitions))
    assert state.depth == {"high": 1, "normal": 3, "low": 0}
    assert state.oldest_age_s["normal"] >= 0.3 and state.oldest_age_s["low"] == 0
    assert state.active == state.consumers == state.dead == 0 and not state.paused


def test_metrics_settings() -> None:
    """METRICS_TOKEN must be long; ANTHROPIC_PRICES replaces the table, longest prefix wins."""
    settings = Settings.from_env(
        {"ANTHROPIC_PRICES": "claude-x=1,2,0.1,1.25; claude-x-mini=0.5,1,0,0"}
    )
    mini = settings.price_of("claude-x-mini-2026")
    assert mini is not None and mini.input == 0.5
    big = settings.price_of("claude-x-2")
    assert big is not None and big.output == 2
    assert settings.price_of("claude-sonnet-4-6") is None
    assert Settings().price_of("claude-sonnet-4-6") is not None
    for env in ({"METRICS_TOKEN": "short"}, {"ANTHROPIC_PRICES": "m=1,2"}):
        try:
            Settings.from_env(env)
        except SettingsError as exc:
            assert next(iter(env)) in str(exc)
        else:
            raise AssertionError(f"{env} was accepted")
