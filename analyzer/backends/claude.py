"""The Claude backend: one Messages API call with structured output per scan."""

from __future__ import annotations

import base64
import email.utils
import json
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, cast

import anthropic
import httpx
import msgspec
import structlog
from anthropic.types import Message, MessageParam, TextBlockParam
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.output_config_param import OutputConfigParam
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from analyzer.backends import Analysis, AnalysisRequest, ApiLimits, Report
from analyzer.prompt import SYSTEM_PROMPT, user_text
from analyzer.ratelimit import mark_sent
from shared.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidAnswerError,
    InvalidImageError,
    LabelscanError,
    RateLimitedError,
)
from shared.schemas import LabelAnalysis, Marketplace, MarketplaceReport, Usage
from shared.settings import Settings, SettingsError

log = structlog.get_logger("analyzer")
tracer = trace.get_tracer("labelscan.analyzer")

ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
IMAGE_MEDIA_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp"}
)


def output_schema() -> dict[str, Any]:
    """The JSON schema of :class:`LabelAnalysis` in the form structured output accepts."""
    # transform_schema sets additionalProperties false on every object (also in
    # $defs) and drops keywords the API rejects; msgspec puts the root behind a
    # $ref, which we inline so the root is a plain object schema.
    schema = anthropic.transform_schema(msgspec.json.schema(LabelAnalysis))
    ref = schema.pop("$ref", None)
    defs: dict[str, Any] = schema.pop("$defs", {})
    if not isinstance(ref, str):
        return {**schema, "$defs": defs} if defs else schema
    name = ref.removeprefix("#/$defs/")
    root: dict[str, Any] = dict(defs[name])
    rest = {k: v for k, v in defs.items() if k != name}
    # Keep the root in $defs only if something refers back to it.
    if ref in json.dumps(rest):
        rest[name] = defs[name]
    if rest:
        root["$defs"] = rest
    return root


OUTPUT_CONFIG: OutputConfigParam = {"format": {"type": "json_schema", "schema": output_schema()}}

# One block with cache_control: the prompt is identical for every scan, so
# after the first call it is read from the cache at a tenth of the price.
SYSTEM_BLOCKS: list[TextBlockParam] = [
    {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
]


class ClaudeBackend:
    """Analyses a label with one Claude Messages API call."""

    name = "claude"

    def __init__(self, settings: Settings) -> None:
        if settings.anthropic_api_key is None:
            raise SettingsError("ANTHROPIC_API_KEY is required for ANALYZER_BACKEND=claude")
        self._model = settings.anthropic_model
        self._max_tokens = settings.anthropic_max_tokens
        self._timeout = settings.anthropic_timeout_s
        # SDK retries are off: a failed scan goes back to labelscan's queue,
        # which retries with backoff and reports the attempt to the user.
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key.value,
            base_url=settings.anthropic_base_url,
            timeout=settings.anthropic_timeout_s,
            max_retries=0,
            # The SDK's own client settings, plus the hook that tells the shared
            # rate limiter when each request really leaves.
            http_client=anthropic.DefaultAsyncHttpxClient(
                event_hooks={"request": [_stamp_when_sent]}
            ),
        )

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Send the image and the scan's context; validate Claude's structured answer.

        Traced as one GenAI client span (OpenTelemetry's ``gen_ai.*`` conventions):
        the call, and the validation that decides whether its answer is usable.
        """
        with tracer.start_as_current_span(
            f"chat {self._model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "anthropic",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": self._model,
                "gen_ai.request.max_tokens": self._max_tokens,
                "server.address": self._client.base_url.host,
            },
        ) as span:
            try:
                return await self._analyze(request, report, span)
            except LabelscanError as exc:
                span.set_attribute("error.type", exc.kind)
                raise

    async def _analyze(self, request: AnalysisRequest, report: Report, span: Span) -> Analysis:
        log.info(
            "sending image to claude",
            media_type=request.media_type,
            image_bytes=len(request.image),
            image_tokens=request.image_tokens,
        )
        try:
            # The raw response carries the anthropic-ratelimit-* headers the
            # shared limiter uses to slow the fleet before it is refused.
            raw = await self._client.messages.with_raw_response.create(**self.params(request))
            message = await raw.parse()
        except anthropic.APIStatusError as exc:
            span.set_attribute("http.response.status_code", exc.status_code)
            raise status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise BackendUnavailableError(
                f"Claude API did not answer within {self._timeout:g} s"
            ) from exc
        except anthropic.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise BackendUnavailableError(
                f"Claude API unreachable: {type(cause).__name__}: {cause}"
            ) from exc
        except anthropic.AnthropicError as exc:
            # Raised by the SDK itself (bad parameters, unparsable answer): retrying won't help.
            raise BackendError(f"Claude SDK error: {type(exc).__name__}: {exc}") from exc

        analysis = await self.to_analysis(
            message,
            request.marketplaces,
            report,
            span,
            f"request-id {message._request_id or 'none'}",
        )
        return msgspec.structs.replace(analysis, limits=api_limits(raw.headers))

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client (the Message Batches API shares it, and its limiter hook)."""
        return self._client

    def params(self, request: AnalysisRequest) -> MessageCreateParamsNonStreaming:
        """The Messages API request for one scan: the same for a call and a batch entry."""
        return {
            "model": self._model,
            "max_tokens": self._max_tokens,
            "system": SYSTEM_BLOCKS,
            "messages": [_user_message(request)],
            "output_config": OUTPUT_CONFIG,
        }

    async def to_analysis(
        self,
        message: Message,
        marketplaces: list[Marketplace],
        report: Report,
        span: Span,
        where: str,
    ) -> Analysis:
        """Claude's answer validated against the result schema, or InvalidAnswerError.

        ``where`` names the answer in error messages (its request id, or its batch).
        """
        usage = message.usage
        input_tokens = usage.input_tokens or 0
        cache_read = usage.cache_read_input_tokens or 0
        cache_creation = usage.cache_creation_input_tokens or 0
        span.set_attributes(
            {
                "gen_ai.response.id": message.id,
                "gen_ai.response.model": message.model,
                "gen_ai.response.finish_reasons": [message.stop_reason or "unknown"],
                # The conventions count every input token here, cached ones included;
                # Anthropic's input_tokens leaves out what the prompt cache served.
                "gen_ai.usage.input_tokens": input_tokens + cache_read + cache_creation,
                "gen_ai.usage.output_tokens": usage.output_tokens or 0,
                "gen_ai.usage.cache_read.input_tokens": cache_read,
                "gen_ai.usage.cache_creation.input_tokens": cache_creation,
            }
        )
        await report("parsing", 90, "Validating the analysis")
        rid = f"{message.id}, {where}"
        if message.stop_reason == "max_tokens":
            raise InvalidAnswerError(
                f"Claude's answer was cut off at max_tokens={self._max_tokens}; "
                f"raise ANTHROPIC_MAX_TOKENS (message {rid})"
            )
        if message.stop_reason == "refusal":
            raise InvalidAnswerError(f"Claude declined to analyse this label (message {rid})")
        if message.stop_reason == "model_context_window_exceeded":
            raise InvalidAnswerError(
                f"the request exceeded the model's context window (message {rid})"
            )
        text = next((b.text for b in message.content if b.type == "text"), None)
        if text is None:
            raise InvalidAnswerError(f"Claude's answer has no text block (message {rid})")
        analysis = _decode(text, rid)
        return Analysis(
            analysis=_in_requested_order(analysis, marketplaces, rid),
            usage=Usage(
                input_tokens=input_tokens,
                output_tokens=usage.output_tokens or 0,
                cache_creation_input_tokens=cache_creation,
                cache_read_input_tokens=cache_read,
            ),
            model=message.model,
        )

    async def warm_up(self) -> None:
        """Nothing to load: the HTTP client connects on first use."""

    async def aclose(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()


async def _stamp_when_sent(request: httpx.Request) -> None:
    """Re-date the call's rate-limit reservation when its bytes go out, not when built.

    httpx runs request hooks before it has a connection; the ``trace`` extension
    fires once the connection is up and the headers are being written, so neither
    client start-up, image encoding nor a TCP/TLS handshake counts as "sent" early.
    """
    previous = request.extensions.get("trace")

    async def trace(event: str, info: dict[str, Any]) -> None:
        if previous is not None:
            await previous(event, info)
        if event.endswith(".send_request_headers.started"):  # http11. or http2.
            await mark_sent()

    request.extensions["trace"] = trace


def _user_message(request: AnalysisRequest) -> MessageParam:
    """The image first (Claude reads images best before the question), then the text."""
    if request.media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidImageError(
            f"Claude accepts JPEG, PNG, GIF or WebP images, not {request.media_type}"
        )
    return {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": cast(ImageMediaType, request.media_type),
                    "data": base64.b64encode(request.image).decode("ascii"),
                },
            },
            {
                "type": "text",
                "text": user_text(request.category, request.marketplaces, request.product_name),
            },
        ],
    }


def _decode(text: str, rid: str) -> LabelAnalysis:
    """Claude's text as a LabelAnalysis, or InvalidAnswerError saying what was wrong."""
    try:
        return msgspec.json.decode(text, type=LabelAnalysis)
    except msgspec.ValidationError as exc:
        raise InvalidAnswerError(
            f"Claude's answer does not match the result schema: {exc} (message {rid})"
        ) from exc
    except msgspec.DecodeError as exc:
        raise InvalidAnswerError(
            f"Claude's answer is not valid JSON: {exc} (message {rid})"
        ) from exc


def _in_requested_order(
    analysis: LabelAnalysis, marketplaces: list[Marketplace], rid: str
) -> LabelAnalysis:
    """One report per requested marketplace, in the requested order; extras are dropped."""
    by_code: dict[str, MarketplaceReport] = {}
    for item in analysis.marketplaces:
        by_code.setdefault(item.marketplace, item)
    missing = [m for m in marketplaces if m not in by_code]
    if missing:
        raise InvalidAnswerError(
            f"Claude's answer has no report for {', '.join(missing)} (message {rid})"
        )
    reports = [by_code[m] for m in marketplaces]
    if reports == analysis.marketplaces:
        return analysis
    return msgspec.structs.replace(analysis, marketplaces=reports)


def status_error(exc: anthropic.APIStatusError) -> BackendError | BackendUnavailableError:
    """A labelscan error for an HTTP error answer: retryable for 408, 429 and 5xx."""
    status = exc.status_code
    kind = exc.type or "error"
    detail = exc.api_message or str(exc)
    message = f"Claude API {status} {kind}: {detail} (request-id {exc.request_id or 'none'})"
    if status == 429:
        return RateLimitedError(message, retry_after=_retry_after(exc.response.headers))
    if status == 408 or status >= 500:
        return BackendUnavailableError(message, retry_after=_retry_after(exc.response.headers))
    return BackendError(message)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after`` (seconds or HTTP date), else ``retry-after-ms``, else None."""
    raw = headers.get("retry-after")
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - time.time())
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            millis = float(raw_ms)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis):
            return max(0.0, millis / 1000)
    return None


def api_limits(headers: Mapping[str, str]) -> ApiLimits:
    """The ``anthropic-ratelimit-*`` headers: what remains, and when each limit resets."""

    def remaining(name: str) -> int | None:
        raw = headers.get(f"anthropic-ratelimit-{name}-remaining")
        return int(raw) if raw and raw.isdigit() else None

    def reset_ms(name: str) -> int | None:
        raw = headers.get(f"anthropic-ratelimit-{name}-reset")
        if not raw:
            return None
        try:
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None

    return ApiLimits(
        requests_remaining=remaining("requests"),
        requests_reset_ms=reset_ms("requests"),
        input_tokens_remaining=remaining("input-tokens"),
        input_tokens_reset_ms=reset_ms("input-tokens"),
        output_tokens_remaining=remaining("output-tokens"),
        output_tokens_reset_ms=reset_ms("output-tokens"),
    )
