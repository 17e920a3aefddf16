"""A local emulation of the Anthropic Messages API for the real SDK to talk to."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shared.schemas import MARKETPLACES, Finding, LabelAnalysis, MarketplaceReport
from tests.support.servers import serve

Body = dict[str, Any]
Answer = str | Callable[[Body], str]
"""Fixed answer text, or a function of the request body returning the answer text."""

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""The documented ``error.type`` for each HTTP status."""

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "output_config",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "cache_control",
        "container",
        "inference_geo",
        "speed",
        "diagnostics",
        "user_profile_id",
        "workspace_id",
    }
)
MARKETPLACES_LINE = re.compile(r"^Marketplaces:\s*(.*)$", re.MULTILINE)
IMAGE_TOKENS = 1_600
"""Roughly what a ~1 megapixel image costs; the emulator does not look at the pixels."""


CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""What the Message Batches API accepts as a request's ``custom_id``."""

BatchOutcome = Callable[[str, int], str | None]
"""A batch request's fate from its ``custom_id`` and how many batches have carried it
(1 the first time): None to answer it, ``"errored:<error type>"``, ``"expired"`` or
``"canceled"``."""


class EmulatedBatch(msgspec.Struct, kw_only=True):
    """One Message Batch: its requests, and their results once processing has ended."""

    id: str
    requests: list[tuple[str, Body]]
    created: datetime
    ends_at: float
    """``time.monotonic()`` at which processing ends."""
    ended: datetime | None = None
    cancel_initiated: datetime | None = None
    results: list[tuple[str, Body]] | None = None


class _Rejected(Exception):
    """A request check failed: answer with this status and documented error type."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MessagesEmulator:
    """Serves ``POST /v1/messages``; tests steer it through its attributes and methods."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        answer: Answer | None = None,
        stop_reason: str = "end_turn",
        fault_rate: float = 0.0,
        fault_statuses: Iterable[int] = (429, 529, 500),
        fault_retry_after: float | None = None,
        rpm_limit: int | None = None,
        rpm_window_s: float = 60.0,
        api_key: str | None = None,
        cache_min_tokens: int = 1024,
        seed: int = 0,
        batch_delay_s: float = 0.0,
        batch_outcome: BatchOutcome | None = None,
    ) -> None:
        self.delay_s = delay_s
        """Seconds to sleep before a successful answer (not before errors)."""
        self.answer = answer
        """None: a valid LabelAnalysis for the requested marketplaces."""
        self.stop_reason = stop_reason
        self.fault_rate = fault_rate
        """Fraction of requests (0..1) answered with a random status of ``fault_statuses``
        (status 0 means: drop the connection without an answer)."""
        self.fault_statuses = tuple(fault_statuses)
        self.fault_retry_after = fault_retry_after
        self.rpm_limit = rpm_limit
        """Requests accepted per rolling ``rpm_window_s``; above it, 429 with ``retry-after``."""
        self.rpm_window_s = rpm_window_s
        """The API's window is a minute; tests of the limiter shrink it."""
        self.api_key = api_key
        """None accepts any non-empty key; a string accepts only that key."""
        self.cache_min_tokens = cache_min_tokens
        """Shorter system prompts are not cached, as with the real API."""
        self.base_url = ""
        """``http://127.0.0.1:<port>``, set once served."""
        self.batch_delay_s = batch_delay_s
        """Seconds from a Message Batch's creation until its processing ends."""
        self.batch_outcome = batch_outcome
        """Per-request fate in a batch: None succeeds (if its params are valid)."""
        # Every batch created by id; requests received in batches and those answered
        # with a message, per custom_id; well-formed create calls (errors included).
        self.batches: dict[str, EmulatedBatch] = {}
        self.batch_requests: collections.Counter[str] = collections.Counter()
        self.batch_succeeded: collections.Counter[str] = collections.Counter()
        self.batch_creates = 0
        self._batch_failures: collections.deque[tuple[int, float | None]] = collections.deque()

        self.requests: list[Body] = []
        """Every JSON body received, in order (also those answered with an error)."""
        self.arrived_at: list[float] = []
        """``time.monotonic()`` of each request's arrival (its headers read), in order."""
        self.ok_count = 0
        self.rejected = 0
        """Requests refused by ``rpm_limit``."""
        self.faults = 0
        """Requests answered with an injected error (``fail_next`` or ``fault_rate``)."""
        self.dropped = 0
        self.in_flight = 0
        self.max_in_flight = 0

        # The instance is the endpoint: Starlette treats a non-function endpoint
        # as a raw ASGI app, which a dropped request needs (it sends nothing).
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self, methods=["POST"]),
                Route("/v1/messages/batches", self._create_batch, methods=["POST"]),
                Route("/v1/messages/batches/{batch_id}", self._retrieve_batch, methods=["GET"]),
                Route(
                    "/v1/messages/batches/{batch_id}/results",
                    self._batch_results,
                    methods=["GET"],
                ),
                Route(
                    "/v1/messages/batches/{batch_id}/cancel", self._cancel_batch, methods=["POST"]
                ),
            ]
        )
        self.server: uvicorn.Server | None = None
        self._random = random.Random(seed)
        self._failures: collections.deque[tuple[int, float | None]] = collections.deque()
        self._drops = 0
        self._accepted_at: collections.deque[float] = collections.deque()
        self._cached: set[tuple[str, str]] = set()

    # --- control ---------------------------------------------------------------

    def fail_next(self, n: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (``retry-after`` header if given)."""
        self._failures.extend([(status, retry_after)] * n)

    def fail_next_batch(self, n: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next ``n`` batch create calls with ``status``; no batch is made."""
        self._batch_failures.extend([(status, retry_after)] * n)

    def drop_next(self, n: int) -> None:
        """Close the connection of the next ``n`` requests without writing any response."""
        self._drops += n

    def reset(self) -> None:
        """Forget counters, queued faults and cache entries; keep the configuration."""
        self.requests.clear()
        self.arrived_at.clear()
        self.ok_count = self.rejected = self.faults = self.dropped = 0
        self.max_in_flight = self.in_flight
        self._failures.clear()
        self._drops = 0
        self._accepted_at.clear()
        self._cached.clear()

    # --- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI endpoint of ``POST /v1/messages``."""
        self.arrived_at.append(time.monotonic())
        request = Request(scope, receive)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._handle(request)
        finally:
            self.in_flight -= 1
        if response is None:
            await self._drop(scope, receive)
            return
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response | None:
        request_id = f"req_emu_{uuid.uuid4().hex[:24]}"
        try:
            _check_auth(request.headers, self.api_key)
            if not request.headers.get("anthropic-version"):
                raise _Rejected(400, "anthropic-version: header is required")
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise _Rejected(400, f"request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _Rejected(400, "request body must be a JSON object")
            self.requests.append(body)
            _check_body(body)
        except _Rejected as exc:
            return _error(exc.status, exc.message, request_id)

        if self._drops:
            self._drops -= 1
            self.dropped += 1
            return None
        if self._failures:
            status, retry_after = self._failures.popleft()
            self.faults += 1
            return _error(status, "injected by the emulator", request_id, retry_after)
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] >= self.rpm_window_s:
            self._accepted_at.popleft()
        if self.rpm_limit is not None and len(self._accepted_at) >= self.rpm_limit:
            self.rejected += 1
            wait = math.ceil(self.rpm_window_s - (now - self._accepted_at[0]))
            return _error(
                429,
                f"over the limit of {self.rpm_limit} requests per minute",
                request_id,
                retry_after=max(1, wait),
            )
        self._accepted_at.append(now)
        if self.fault_rate and self._random.random() < self.fault_rate:
            status = self._random.choice(self.fault_statuses)
            self.faults += 1
            if status == 0:
                self.dropped += 1
                return None
            return _error(
                status, "random fault of the emulator", request_id, self.fault_retry_after
            )

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = self._answer_text(body)
        usage = self._usage(body, text)
        self.ok_count += 1
        content = {
            "id": f"msg_emu_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        headers = {"request-id": request_id, **self._ratelimit_headers(usage)}
        return JSONResponse(content, headers=headers)

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        """Abort the request's TCP connection and wait until uvicorn notices."""
        client = scope.get("client")
        connections = self.server.server_state.connections if self.server else set()
        for connection in list(connections):
            # uvicorn keeps no transport in the ASGI scope: find the protocol
            # object serving this client and abort its transport directly.
            if getattr(connection, "client", None) == (tuple(client) if client else None):
                connection.transport.abort()
                break
        else:
            raise RuntimeError("emulator: cannot find the connection to drop")
        # Returning before uvicorn sees the disconnect would make it send a 500.
        while (await receive())["type"] != "http.disconnect":
            pass

    # --- Message Batches ----------------------------------------------------------

    async def _create_batch(self, request: Request) -> Response:
        """``POST /v1/messages/batches``: requests are checked for shape now, params later."""
        request_id = f"req_emu_{uuid.uuid4().hex[:24]}"
        try:
            _check_auth(request.headers, self.api_key)
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise _Rejected(400, f"request body is not valid JSON: {exc}") from None
            requests = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(requests, list) or not requests:
                raise _Rejected(400, "requests: at least one request is required")
            seen: set[str] = set()
            for i, item in enumerate(requests):
                custom_id = item.get("custom_id") if isinstance(item, dict) else None
                if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
                    raise _Rejected(400, f"requests.{i}.custom_id: must match {CUSTOM_ID.pattern}")
                if custom_id in seen:
                    raise _Rejected(400, f"requests.{i}.custom_id: duplicate {custom_id}")
                seen.add(custom_id)
                if not isinstance(item.get("params"), dict):
                    raise _Rejected(400, f"requests.{i}.params: Field required")
        except _Rejected as exc:
            return _error(exc.status, exc.message, request_id)
        self.batch_creates += 1
        if self._batch_failures:
            status, retry_after = self._batch_failures.popleft()
            self.faults += 1
            return _error(status, "injected by the emulator", request_id, retry_after)
        batch = EmulatedBatch(
            id=f"msgbatch_emu_{uuid.uuid4().hex[:24]}",
            requests=[(r["custom_id"], r["params"]) for r in requests],
            created=datetime.now(UTC),
            ends_at=time.monotonic() + self.batch_delay_s,
        )
        self.batches[batch.id] = batch
        for custom_id, _ in batch.requests:
            self.batch_requests[custom_id] += 1
        return JSONResponse(self._batch_json(batch), headers={"request-id": request_id})

    async def _retrieve_batch(self, request: Request) -> Response:
        """``GET /v1/messages/batches/{id}``: ended once ``batch_delay_s`` has passed."""
        batch, problem = self._batch_of(request)
        if batch is None:
            return problem
        return JSONResponse(self._batch_json(batch))

    async def _cancel_batch(self, request: Request) -> Response:
        """``POST .../cancel``: what has not run yet ends as ``canceled``."""
        batch, problem = self._batch_of(request)
        if batch is None:
            return problem
        if batch.results is None and batch.cancel_initiated is None:
            # "canceling" now; ended, with what had not run canceled, at the next look.
            batch.cancel_initiated = datetime.now(UTC)
            batch.ends_at = time.monotonic()
        return JSONResponse(self._batch_json(batch))

    async def _batch_results(self, request: Request) -> Response:
        """``GET .../results``: one JSON line per request, in no promised order."""
        batch, problem = self._batch_of(request)
        if batch is None:
            return problem
        if batch.results is None:
            return _error(400, f"batch {batch.id} is still processing", "req_emu_results")
        lines = [json.dumps({"custom_id": c, "result": r}) for c, r in reversed(batch.results)]
        return Response("\n".join(lines) + "\n", media_type="application/binary")

    def _batch_of(self, request: Request) -> tuple[EmulatedBatch | None, Response]:
        try:
            _check_auth(request.headers, self.api_key)
        except _Rejected as exc:
            return None, _error(exc.status, exc.message, "req_emu_auth")
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return None, _error(404, "message batch not found", "req_emu_missing")
        if batch.results is None and time.monotonic() >= batch.ends_at:
            self._end(batch)
        return batch, Response()

    def _end(self, batch: EmulatedBatch) -> None:
        """Process every request of ``batch`` at once, as its processing ends."""
        batch.results = []
        batch.ended = datetime.now(UTC)
        for custom_id, params in batch.requests:
            batch.results.append((custom_id, self._batch_result(batch, custom_id, params)))

    def _batch_result(self, batch: EmulatedBatch, custom_id: str, params: Body) -> Body:
        if batch.cancel_initiated is not None:
            return {"type": "canceled"}
        fate = (
            self.batch_outcome(custom_id, self.batch_requests[custom_id])
            if self.batch_outcome is not None
            else None
        )
        if fate in {"expired", "canceled"}:
            return {"type": fate}
        if fate is not None:
            error_type = fate.removeprefix("errored:")
            return _errored(error_type, "injected by the emulator")
        try:
            _check_body(params)
        except _Rejected as exc:
            return _errored(ERROR_TYPES.get(exc.status, "api_error"), exc.message)
        text = self._answer_text(params)
        self.batch_succeeded[custom_id] += 1
        return {
            "type": "succeeded",
            "message": {
                "id": f"msg_emu_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": params["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": self.stop_reason,
                "stop_sequence": None,
                "usage": self._usage(params, text),
            },
        }

    def _batch_json(self, batch: EmulatedBatch) -> Body:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if batch.results is None:
            counts["processing"] = len(batch.requests)
        else:
            for _, result in batch.results:
                counts[result["type"]] += 1
        ended = batch.results is not None

        def when(moment: datetime | None) -> str | None:
            return moment.isoformat().replace("+00:00", "Z") if moment is not None else None

        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": (
                "ended" if ended else "canceling" if batch.cancel_initiated else "in_progress"
            ),
            "request_counts": counts,
            "created_at": when(batch.created),
            "expires_at": when(batch.created + timedelta(hours=24)),
            "ended_at": when(batch.ended),
            "cancel_initiated_at": when(batch.cancel_initiated),
            "archived_at": None,
            "results_url": (
                f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None
            ),
        }

    # --- answers -----------------------------------------------------------------

    def _answer_text(self, body: Body) -> str:
        if self.answer is None:
            return default_answer(body)
        if isinstance(self.answer, str):
            return self.answer
        return self.answer(body)

    def _usage(self, body: Body, text: str) -> dict[str, int]:
        system_text = _system_text(body.get("system"))
        system_tokens = _tokens(system_text)
        cached = _has_cache_control(body.get("system"))
        creation = read = 0
        if cached and system_tokens >= self.cache_min_tokens:
            key = (str(body["model"]), system_text)
            if key in self._cached:
                read = system_tokens
            else:
                creation = system_tokens
                self._cached.add(key)
            system_tokens = 0
        blocks = _user_blocks(body)
        images = sum(1 for block in blocks if block.get("type") == "image")
        texts = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        schema = json.dumps(body.get("output_config", {}))
        return {
            "input_tokens": (
                system_tokens + images * IMAGE_TOKENS + _tokens(texts) + _tokens(schema)
            ),
            "output_tokens": max(1, _tokens(text)),
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
        }

    def _ratelimit_headers(self, usage: Mapping[str, int]) -> dict[str, str]:
        reset = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
        limit = self.rpm_limit or 4_000
        remaining = max(0, limit - len(self._accepted_at))
        return {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": "2000000",
            "anthropic-ratelimit-input-tokens-remaining": str(2_000_000 - usage["input_tokens"]),
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-limit": "400000",
            "anthropic-ratelimit-output-tokens-remaining": str(400_000 - usage["output_tokens"]),
            "anthropic-ratelimit-output-tokens-reset": reset,
        }


def requested_marketplaces(body: Body) -> list[str]:
    """Marketplace codes of the user text's ``Marketplaces: US, DE`` line, in order."""
    for block in _user_blocks(body):
        if block.get("type") != "text":
            continue
        match = MARKETPLACES_LINE.search(str(block.get("text", "")))
        if match:
            codes = [c.strip() for c in match.group(1).split(",")]
            return [c for c in codes if c in MARKETPLACES]
    return []


def default_answer(body: Body) -> str:
    """A valid LabelAnalysis JSON with one 'needs review' report per requested marketplace."""
    reports = [
        MarketplaceReport(
            marketplace=code,  # type: ignore[arg-type]
            verdict="needs_review",
            findings=[
                Finding(
                    rule=f"{code}-EMULATED",
                    requirement="Emulated check: the emulator does not read labels",
                    status="unclear",
                    severity="info",
                    evidence="",
                    fix="verify in Seller Central",
                    regulation="none (emulator)",
                )
            ],
        )
        for code in requested_marketplaces(body)
    ]
    analysis = LabelAnalysis(
        verdict="needs_review",
        summary="Emulated analysis. Nothing was checked.",
        detected_text="",
        marketplaces=reports,
    )
    return msgspec.json.encode(analysis).decode()


def error_body(status: int, message: str, request_id: str) -> dict[str, Any]:
    """The documented error shape for ``status``."""
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": request_id,
    }


def _errored(error_type: str, message: str) -> Body:
    """A batch request's ``errored`` result, with the documented error shape."""
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": error_type, "message": message}},
    }


def _error(
    status: int, message: str, request_id: str, retry_after: float | None = None
) -> JSONResponse:
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return JSONResponse(error_body(status, message, request_id), status, headers=headers)


def _check_auth(headers: Mapping[str, str], expected: str | None) -> None:
    key = headers.get("x-api-key", "")
    authorization = headers.get("authorization", "")
    if not key and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise _Rejected(401, "x-api-key header is required")
    if expected is not None and key != expected:
        raise _Rejected(401, "invalid x-api-key")


def _check_body(body: Body) -> None:
    unknown = sorted(set(body) - TOP_LEVEL_FIELDS)
    if unknown:
        raise _Rejected(400, f"{unknown[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Rejected(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _Rejected(400, "max_tokens: Field required (a positive integer)")
    if body.get("stream"):
        raise _Rejected(400, "stream: streaming is not emulated")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected(400, "messages: at least one message is required")
    first = messages[0]
    if not isinstance(first, dict) or first.get("role") != "user":
        raise _Rejected(400, "messages.0.role: the first message must use the user role")
    content = first.get("content")
    if not isinstance(content, list):
        raise _Rejected(400, "messages.0.content: expected a list of content blocks")
    types = [block.get("type") if isinstance(block, dict) else None for block in content]
    if "image" not in types or "text" not in types:
        raise _Rejected(400, "messages.0.content: expected an image block and a text block")
    if types.index("image") > types.index("text"):
        raise _Rejected(400, "messages.0.content: the image must come before the text")
    _check_image(content[types.index("image")], types.index("image"))
    _check_system(body.get("system"))
    _check_output_config(body.get("output_config"))


def _check_image(block: dict[str, Any], index: int) -> None:
    where = f"messages.0.content.{index}.image.source"
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise _Rejected(400, f"{where}: expected a base64 source")
    if source.get("media_type") not in IMAGE_MEDIA_TYPES:
        raise _Rejected(400, f"{where}.media_type: must be one of {sorted(IMAGE_MEDIA_TYPES)}")
    try:
        data = base64.b64decode(str(source.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise _Rejected(400, f"{where}.data: invalid base64 data") from None
    if not data:
        raise _Rejected(400, f"{where}.data: image is empty")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list) or not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        raise _Rejected(400, "system: expected a string or a list of text blocks")
    for block in system:
        control = block.get("cache_control")
        if control is not None and control.get("type") != "ephemeral":
            raise _Rejected(400, "system.cache_control.type: must be 'ephemeral'")


def _check_output_config(config: object) -> None:
    if not isinstance(config, dict):
        raise _Rejected(400, "output_config: the emulator expects structured output")
    fmt = config.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _Rejected(400, "output_config.format.type: must be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict) or not schema:
        raise _Rejected(400, "output_config.format.schema: a JSON schema is required")
    problem = _schema_problem(schema, "schema")
    if problem:
        raise _Rejected(400, f"output_config.format.{problem}")


def _schema_problem(node: object, path: str) -> str | None:
    """The first part of the schema structured output would reject, as the real API does."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            problem = _schema_problem(item, f"{path}.{i}")
            if problem:
                return problem
        return None
    if not isinstance(node, dict):
        return None
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        return f"{path}: 'additionalProperties' must be explicitly set to false for objects"
    for key, value in node.items():
        problem = _schema_problem(value, f"{path}.{key}")
        if problem:
            return problem
    return None


def _user_blocks(body: Body) -> list[dict[str, Any]]:
    messages = body.get("messages") or []
    content = messages[0].get("content") if messages else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _system_text(system: object) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return ""


def _has_cache_control(system: object) -> bool:
    return isinstance(system, list) and any(
        isinstance(b, dict) and b.get("cache_control") for b in system
    )


def _tokens(text: str) -> int:
    """A rough token count (four characters a token), enough for usage numbers."""
    return math.ceil(len(text) / 4)


@contextlib.asynccontextmanager
async def run_emulator(**options: Any) -> AsyncIterator[MessagesEmulator]:
    """Serve a :class:`MessagesEmulator` (built from ``options``) on a free loopback port."""
    emulator = MessagesEmulator(**options)
    async with serve(emulator.app) as running:
        emulator.base_url = running.url
        emulator.server = running.server
        yield emulator


@pytest.fixture
async def anthropic_emulator() -> AsyncIterator[MessagesEmulator]:
    """A running emulator with default options, for one test."""
    async with run_emulator() as emulator:
        yield emulator
