"""Rolling upgrades: records tolerate fields a newer version added; HTTP input stays strict."""

from __future__ import annotations

import base64

import httpx
import msgspec

from gateway.app import create_app
from shared.schemas import ScanCreate, ScanEvent, ScanJob, ScanResult
from shared.settings import Settings
from tests.support.images import label_png
from tests.support.servers import serve


def with_extra(payload: dict[str, object], **extra: object) -> bytes:
    """``payload`` as JSON with fields a newer version would add."""
    return msgspec.json.encode({**payload, **extra})


def test_job_from_a_newer_gateway_decodes_for_the_analyzer() -> None:
    """A stream entry written by gateway N+1 (one more field) is a job for analyzer N.

    Decoded the way the analyzer decodes its entries (a ``Decoder(ScanJob)``).
    """
    job = ScanJob(scan_id="s1", category="toys", marketplaces=["US"], product_name="Blocks")
    raw = with_extra(msgspec.to_builtins(job), region="eu-west", labels={"a": 1})
    assert msgspec.json.Decoder(ScanJob).decode(raw) == job


def test_events_and_results_from_a_newer_analyzer_decode() -> None:
    """Events and stored results carry unknown fields, nested ones included, harmlessly."""
    event = {
        "scan_id": "s1",
        "type": "progress",
        "state": "active",
        "progress": {"stage": "analyzing", "percentage": 30, "message": "…", "eta_ms": 900},
        "worker_zone": "b",
    }
    assert msgspec.json.decode(msgspec.json.encode(event), type=ScanEvent).progress.percentage == 30
    result = {
        "analysis": {
            "verdict": "compliant",
            "summary": "ok",
            "detected_text": "x",
            "marketplaces": [],
            "confidence": 0.9,
        },
        "backend": "local",
        "model": "m",
        "usage": {"input_tokens": 1, "cached_tokens": 3},
        "duration_ms": 5,
        "shard": 2,
    }
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=ScanResult)
    assert decoded.analysis.verdict == "compliant" and decoded.usage.input_tokens == 1


def test_http_input_still_refuses_unknown_fields() -> None:
    """The request body's struct stays strict."""
    body = {"category": "toys", "marketplaces": ["US"], "product_name": "x", "colour": "red"}
    try:
        msgspec.json.decode(msgspec.json.encode(body), type=ScanCreate)
    except msgspec.ValidationError as exc:
        assert "colour" in str(exc)
    else:
        raise AssertionError("an unknown field in HTTP input was accepted")


async def test_post_with_an_unknown_field_is_still_422(settings: Settings) -> None:
    """Through a real gateway: the same 422 naming the field, and nothing written."""
    body = {
        "image_base64": base64.b64encode(label_png()).decode(),
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "Wooden blocks",
        "colour": "red",
    }
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        response = await http.post("/api/scans", json=body)
    assert response.status_code == 422, response.text
    assert (response.json()["error"], response.json()["field"]) == ("invalid_field", "colour")
