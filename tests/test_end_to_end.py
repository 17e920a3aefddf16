"""The whole path: POST to the gateway, an analyzer on the real SDK, events over SSE."""

from __future__ import annotations

import base64

import msgspec

from shared.schemas import ScanEvent
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.anthropic_emulator import MessagesEmulator, run_emulator
from tests.support.images import label_png
from tests.support.sse import open_stream
from tests.support.stack import running_stack

PNG = label_png("Made in Germany / CE")
STAGES = ["queued", "fetching", "analyzing", "parsing", "completed"]


def on_claude(make_settings: SettingsFactory, emulator: MessagesEmulator) -> Settings:
    """Settings whose analyzer calls the emulated Messages API through the real SDK."""
    return make_settings(
        analyzer_backend="claude",
        anthropic_api_key=Secret("sk-e2e"),
        anthropic_base_url=emulator.base_url,
    )


def lamp(*marketplaces: str) -> dict[str, object]:
    """A JSON scan request with the uploaded label."""
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "electronics",
        "marketplaces": list(marketplaces),
        "product_name": "Desk lamp",
    }


async def test_json_and_multipart_scans_stream_to_completion(
    make_settings: SettingsFactory,
) -> None:
    """Both upload forms run on Claude (emulated) and stream every stage in order over SSE."""
    async with (
        run_emulator(delay_s=0.2) as emulator,
        running_stack(on_claude(make_settings, emulator)) as stack,
    ):
        json_post = await stack.client.post("/api/scans", json=lamp("DE", "FR"))
        form_post = await stack.client.post(
            "/api/scans",
            data={"category": "toys", "marketplaces": "US,UK", "product_name": "Blocks"},
            files={"image": ("label.png", PNG, "image/png")},
        )
        for accepted, markets in ((json_post, ["DE", "FR"]), (form_post, ["US", "UK"])):
            assert accepted.status_code == 202
            scan_id = accepted.json()["scan_id"]
            async with open_stream(stack.events, scan_id) as stream:
                messages = await stream.rest(within=15)
            events = [msgspec.json.decode(m.data or "", type=ScanEvent) for m in messages]
            assert [e.progress.stage for e in events] == STAGES
            assert [m.event for m in messages] == [e.type for e in events]
            assert [e.progress.percentage for e in events] == [0, 10, 30, 90, 100]
            ids = [m.id for m in messages]
            assert ids == sorted(ids, key=lambda i: tuple(map(int, (i or "0-0").split("-"))))

            detail = (await stack.client.get(f"/api/scans/{scan_id}")).json()
            status = (await stack.client.get(f"/api/scans/{scan_id}/status")).json()
            assert detail["state"] == status["state"] == "completed"
            assert status["progress"]["percentage"] == 100
            result = detail["result"]
            assert result["backend"] == "claude"
            assert [m["marketplace"] for m in result["analysis"]["marketplaces"]] == markets
            assert result["usage"]["input_tokens"] > 0
            assert events[-1].verdict == result["analysis"]["verdict"]

            # A client arriving after the end still gets the whole history.
            async with open_stream(stack.events, scan_id) as late:
                replay = await late.rest(within=5)
            assert [m.id for m in replay] == ids
    assert emulator.ok_count == 2


async def test_an_unusable_answer_ends_each_attempt_after_its_parsing_stage(
    make_settings: SettingsFactory,
) -> None:
    """Claude declines: each attempt shows parsing, then its end (a retry, then the
    failure at parsing's percentage), both written by the attempt's last script call
    (the parsing report is held for it)."""
    async with (
        run_emulator(stop_reason="refusal") as emulator,
        running_stack(on_claude(make_settings, emulator)) as stack,
    ):
        accepted = await stack.client.post("/api/scans", json=lamp("DE"))
        scan_id = accepted.json()["scan_id"]
        async with open_stream(stack.events, scan_id) as stream:
            messages = await stream.rest(within=15)
        detail = (await stack.client.get(f"/api/scans/{scan_id}")).json()
    events = [msgspec.json.decode(m.data or "", type=ScanEvent) for m in messages]
    steps = [(e.type, e.progress.stage, e.progress.percentage, e.attempt) for e in events]
    attempt = [("progress", "fetching", 10), ("progress", "analyzing", 30)]
    assert steps == [
        ("queued", "queued", 0, 0),
        *((*step, 1) for step in attempt),
        ("progress", "parsing", 90, 1),
        ("retrying", "retrying", 0, 1),
        ("queued", "queued", 0, 1),
        *((*step, 2) for step in attempt),
        ("progress", "parsing", 90, 2),
        ("failed", "failed", 90, 2),
    ]
    assert detail["state"] == "failed"
    assert "declined" in detail["error"]["message"]
    ids = [tuple(map(int, (m.id or "").split("-"))) for m in messages]
    for end in (4, len(ids) - 1):  # one script wrote both: the same ms, consecutive numbers
        assert ids[end] == (ids[end - 1][0], ids[end - 1][1] + 1)
