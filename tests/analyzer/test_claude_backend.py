"""ClaudeBackend with the real anthropic SDK against the local Messages API emulator."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from PIL import Image

from analyzer.backends import AnalysisRequest, make_backend
from analyzer.backends.claude import ClaudeBackend, _retry_after, output_schema
from analyzer.prompt import SYSTEM_PROMPT, user_text
from shared.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidAnswerError,
    InvalidImageError,
)
from shared.schemas import Finding, LabelAnalysis, MarketplaceReport, Stage
from shared.settings import Settings, SettingsError
from tests.support.anthropic_emulator import MessagesEmulator, default_answer, run_emulator


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def _request(**overrides: Any) -> AnalysisRequest:
    fields: dict[str, Any] = {
        "image": PNG,
        "media_type": "image/png",
        "image_tokens": 1,
        "category": "cosmetics",
        "marketplaces": ["US", "DE", "FR"],
        "product_name": "Rose face cream",
    }
    fields.update(overrides)
    return AnalysisRequest(**fields)


class Steps:
    """Collects the progress a backend reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[Stage, int, str]] = []

    async def __call__(self, stage: Stage, percentage: int, message: str) -> None:
        self.seen.append((stage, percentage, message))


# Settings' default (claude-sonnet-4-5) is on the installed SDK's deprecation
# list, whose DeprecationWarning the pytest config turns into an error.
MODEL = "claude-sonnet-4-6"


def _settings(base_url: str, **env: str) -> Settings:
    return Settings.from_env(
        {
            "ANTHROPIC_MODEL": MODEL,
            "ANALYZER_BACKEND": "claude",
            "ANTHROPIC_API_KEY": "sk-ant-test-key",
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_TIMEOUT": "10",
            "LOG_JSON": "true",
            **env,
        }
    )


@pytest.fixture
async def emulator() -> AsyncIterator[MessagesEmulator]:
    async with run_emulator(api_key="sk-ant-test-key") as emu:
        yield emu


@pytest.fixture
async def backend(emulator: MessagesEmulator) -> AsyncIterator[ClaudeBackend]:
    claude = ClaudeBackend(_settings(emulator.base_url))
    try:
        yield claude
    finally:
        await claude.aclose()


async def test_analysis_round_trips_with_usage_and_caching(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    steps = Steps()
    first = await backend.analyze(_request(), steps)
    second = await backend.analyze(_request(marketplaces=["JP", "UK"]), steps)

    assert backend.name == "claude"
    assert [r.marketplace for r in first.analysis.marketplaces] == ["US", "DE", "FR"]
    assert [r.marketplace for r in second.analysis.marketplaces] == ["JP", "UK"]
    assert first.model == MODEL
    assert first.usage.input_tokens > 0
    assert first.usage.output_tokens > 0
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert steps.seen == [("parsing", 90, "Validating the analysis")] * 2
    assert emulator.ok_count == 2


async def test_request_shape(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    await backend.analyze(_request(marketplaces=["DE", "US"]), Steps())

    [body] = emulator.requests
    assert body["model"] == MODEL
    assert body["max_tokens"] == 4096
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    [message] = body["messages"]
    assert message["role"] == "user"
    image, text = message["content"]
    assert image == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert text == {
        "type": "text",
        "text": user_text("cosmetics", ["DE", "US"], "Rose face cream"),
    }
    assert "Marketplaces: DE, US\n" in text["text"]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": output_schema()}}
    assert "tools" not in body
    assert "tool_choice" not in body


def _objects(node: object) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [o for item in node for o in _objects(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if node.get("type") == "object" else []
    return own + [o for value in node.values() for o in _objects(value)]


def test_output_schema_is_strict_and_self_contained() -> None:
    schema = output_schema()
    assert schema["type"] == "object"
    assert set(schema["required"]) == set(LabelAnalysis.__struct_fields__)
    objects = _objects(schema)
    assert len(objects) == 3  # LabelAnalysis, MarketplaceReport, Finding
    assert all(o["additionalProperties"] is False for o in objects)
    refs = {r for r in json.dumps(schema).split('"') if r.startswith("#/$defs/")}
    assert refs == {f"#/$defs/{name}" for name in schema["$defs"]}


def test_prompt_is_stable_and_covers_every_marketplace() -> None:
    for rule in (
        "US-ALL-COO",
        "EU-ALL-GPSR",
        "FR-ALL",
        "UK-ALL",
        "JP-ALL",
        "CA-ALL",
        "IT-ALL",
        "ES-ALL",
        "verify in Seller Central",
    ):
        assert rule in SYSTEM_PROMPT
    # Long enough to be cached (1,024 tokens minimum), at ~4 characters a token.
    assert len(SYSTEM_PROMPT) > 4 * 1024 * 1.5
    assert user_text("toys", ["US", "CA"], 'Bear "XL"') == (
        'Category: toys\nMarketplaces: US, CA\nProduct name: "Bear \\"XL\\""\n'
        "Review the label in the image for these marketplaces, in this order."
    )


async def test_reports_are_put_in_requested_order(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    def reversed_with_extra(body: dict[str, Any]) -> str:
        analysis = msgspec.json.decode(default_answer(body), type=LabelAnalysis)
        extra = MarketplaceReport(marketplace="JP", verdict="compliant", findings=[])
        reports = [*reversed(analysis.marketplaces), extra]
        return msgspec.json.encode(msgspec.structs.replace(analysis, marketplaces=reports)).decode()

    emulator.answer = reversed_with_extra
    result = await backend.analyze(_request(), Steps())
    assert [r.marketplace for r in result.analysis.marketplaces] == ["US", "DE", "FR"]


async def test_rate_limit_is_retryable_with_retry_after(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    emulator.fail_next(1, 429, retry_after=7)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.analyze(_request(), Steps())
    assert caught.value.retry_after == 7
    assert "429 rate_limit_error" in str(caught.value)
    assert "request-id req_emu_" in str(caught.value)
    assert emulator.faults == 1
    # SDK retries are off: exactly one request reached the emulator.
    assert len(emulator.requests) == 1


@pytest.mark.parametrize(("status", "kind"), [(529, "overloaded_error"), (500, "api_error")])
async def test_server_errors_are_retryable(
    emulator: MessagesEmulator, backend: ClaudeBackend, status: int, kind: str
) -> None:
    emulator.fail_next(1, status)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.analyze(_request(), Steps())
    assert caught.value.retry_after is None
    assert f"{status} {kind}" in str(caught.value)
    assert len(emulator.requests) == 1


async def test_dropped_connection_is_retryable(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    emulator.drop_next(1)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.analyze(_request(), Steps())
    assert "unreachable" in str(caught.value)
    assert emulator.dropped == 1
    # The next call works on a fresh connection.
    result = await backend.analyze(_request(), Steps())
    assert len(result.analysis.marketplaces) == 3


async def test_timeout_is_retryable(emulator: MessagesEmulator) -> None:
    emulator.delay_s = 2
    claude = ClaudeBackend(_settings(emulator.base_url, ANTHROPIC_TIMEOUT="0.3"))
    try:
        with pytest.raises(BackendUnavailableError, match=r"did not answer within 0\.3 s"):
            await claude.analyze(_request(), Steps())
    finally:
        await claude.aclose()


async def test_rpm_limit_answers_429(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    emulator.rpm_limit = 1
    await backend.analyze(_request(), Steps())
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.analyze(_request(), Steps())
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 60
    assert emulator.rejected == 1


async def test_random_faults_are_seeded(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    emulator.fault_rate = 0.5
    emulator.fault_statuses = (529, 500)
    failures = 0
    for _ in range(20):
        try:
            await backend.analyze(_request(), Steps())
        except BackendUnavailableError:
            failures += 1
    assert failures == emulator.faults
    assert 0 < failures < 20
    assert emulator.ok_count == 20 - failures


def test_retry_after_header_forms() -> None:
    assert _retry_after({"retry-after": "2.5"}) == 2.5
    assert _retry_after({"retry-after": "-3"}) == 0
    assert _retry_after({"retry-after-ms": "1500"}) == 1.5
    assert _retry_after({"retry-after": "nan"}) is None
    assert _retry_after({}) is None
    soon = _retry_after({"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)})
    assert soon is not None
    assert 25 < soon <= 30


async def test_bad_request_is_permanent(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    emulator.fail_next(1, 400)
    with pytest.raises(BackendError) as caught:
        await backend.analyze(_request(), Steps())
    assert not isinstance(caught.value, BackendUnavailableError)
    assert "400 invalid_request_error" in str(caught.value)


async def test_wrong_api_key_is_permanent(emulator: MessagesEmulator) -> None:
    claude = ClaudeBackend(_settings(emulator.base_url, ANTHROPIC_API_KEY="sk-wrong"))
    try:
        with pytest.raises(BackendError, match="401 authentication_error"):
            await claude.analyze(_request(), Steps())
    finally:
        await claude.aclose()


async def test_invalid_json_answer(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    emulator.answer = '{"verdict": "compliant", '
    steps = Steps()
    with pytest.raises(InvalidAnswerError, match="not valid JSON"):
        await backend.analyze(_request(), steps)
    assert steps.seen == [("parsing", 90, "Validating the analysis")]


async def test_schema_violating_answer(emulator: MessagesEmulator, backend: ClaudeBackend) -> None:
    emulator.answer = json.dumps(
        {
            "verdict": "probably_fine",
            "summary": "",
            "detected_text": "",
            "marketplaces": [],
        }
    )
    with pytest.raises(InvalidAnswerError, match=r"does not match the result schema.*verdict"):
        await backend.analyze(_request(), Steps())


async def test_missing_marketplace_is_invalid(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    finding = Finding(
        rule="US-ALL-COO",
        requirement="Country of origin",
        status="pass",
        severity="major",
        evidence="Made in France",
        fix="",
        regulation="19 USC 1304",
    )
    only_us = LabelAnalysis(
        verdict="compliant",
        summary="ok",
        detected_text="Made in France",
        marketplaces=[MarketplaceReport(marketplace="US", verdict="compliant", findings=[finding])],
    )
    emulator.answer = msgspec.json.encode(only_us).decode()
    with pytest.raises(InvalidAnswerError, match="no report for DE, FR"):
        await backend.analyze(_request(), Steps())


@pytest.mark.parametrize(
    ("stop_reason", "message"),
    [("max_tokens", "cut off at max_tokens=4096"), ("refusal", "declined")],
)
async def test_unusable_stop_reasons(
    emulator: MessagesEmulator, backend: ClaudeBackend, stop_reason: str, message: str
) -> None:
    emulator.stop_reason = stop_reason
    with pytest.raises(InvalidAnswerError, match=message):
        await backend.analyze(_request(), Steps())


async def test_unsupported_media_type_is_rejected_before_calling(
    emulator: MessagesEmulator, backend: ClaudeBackend
) -> None:
    with pytest.raises(InvalidImageError):
        await backend.analyze(_request(media_type="image/tiff"), Steps())
    assert emulator.requests == []


def test_missing_api_key_fails_at_construction() -> None:
    settings = Settings.from_env({"ANALYZER_BACKEND": "claude", "LOG_JSON": "true"})
    with pytest.raises(SettingsError, match="ANTHROPIC_API_KEY is required"):
        ClaudeBackend(settings)
    with pytest.raises(SettingsError):
        make_backend(settings)


async def test_emulator_rejects_what_the_real_api_rejects(emulator: MessagesEmulator) -> None:
    import httpx

    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Marketplaces: US"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(PNG).decode(),
                        },
                    },
                ],
            }
        ],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }
    headers = {"x-api-key": "sk-ant-test-key", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=emulator.base_url) as client:
        no_key = await client.post("/v1/messages", json=body)
        image_last = await client.post("/v1/messages", json=body, headers=headers)
        body["messages"][0]["content"].reverse()
        loose_schema = await client.post("/v1/messages", json=body, headers=headers)
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert image_last.status_code == 400
    assert image_last.json()["type"] == "error"
    assert "image must come before the text" in image_last.json()["error"]["message"]
    assert loose_schema.status_code == 400
    assert "additionalProperties" in loose_schema.json()["error"]["message"]


async def test_emulator_answer_headers(emulator: MessagesEmulator) -> None:
    settings = _settings(emulator.base_url)
    claude = ClaudeBackend(settings)
    try:
        raw = await claude._client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": base64.b64encode(PNG).decode(),
                            },
                        },
                        {"type": "text", "text": "Marketplaces: CA, IT"},
                    ],
                }
            ],
            output_config={"format": {"type": "json_schema", "schema": output_schema()}},
        )
    finally:
        await claude.aclose()
    assert raw.headers["request-id"].startswith("req_")
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) > 0
    assert raw.headers["anthropic-ratelimit-output-tokens-limit"]
    message = await raw.parse()
    assert message.id.startswith("msg_")
    analysis = msgspec.json.decode(message.content[0].text, type=LabelAnalysis)  # type: ignore[union-attr]
    assert [r.marketplace for r in analysis.marketplaces] == ["CA", "IT"]
    # The system prompt was omitted: nothing to cache.
    assert message.usage.cache_creation_input_tokens == 0
