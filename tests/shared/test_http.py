"""The HTTP plumbing both services share, on a real uvicorn: error shapes, handlers, ids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.http.errors import ApiError, exception_handlers, redis_down
from shared.http.responses import JSONResponse
from shared.replies import text
from shared.schemas import ErrorBody
from shared.streamids import parse_stream_id
from tests.support.servers import serve

ROOT = Path(__file__).resolve().parents[2]
ARABIC_INDIC = {ord("0") + d: 0x660 + d for d in range(10)}  # U+0660-0669


async def _refused(request: Request) -> Response:
    raise ApiError(409, "conflict", "not now", "thing", headers={"x-why": "test"})


async def _redis_gone(request: Request) -> Response:
    raise RedisConnectionError("connection refused")


async def _bug(request: Request) -> Response:
    raise RuntimeError("a bug")


async def _body(request: Request) -> Response:
    return JSONResponse(ErrorBody(error="e", detail="d"), status_code=201)


def _app() -> Starlette:
    return Starlette(
        routes=[
            Route("/refused", _refused, methods=["GET"]),
            Route("/redis", _redis_gone, methods=["GET"]),
            Route("/bug", _bug, methods=["GET"]),
            Route("/body", _body, methods=["GET", "DELETE"]),
        ],
        exception_handlers=exception_handlers(redis_down("the store is away")),
    )


async def test_every_error_has_the_json_shape() -> None:
    """ApiError, 404, 405 (with Allow), Redis down (503 + Retry-After) and a bug (500)."""
    async with serve(_app()) as server, httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.get("/refused")
        missing = await client.get("/nowhere")
        wrong = await client.post("/body")
        down = await client.get("/redis")
        bug = await client.get("/bug")
        body = await client.get("/body")
        alive = await client.get("/body")
    assert (refused.status_code, refused.headers["x-why"]) == (409, "test")
    assert refused.json() == {"error": "conflict", "detail": "not now", "field": "thing"}
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert down.json() == {"error": "unavailable", "detail": "the store is away", "field": None}
    assert (bug.status_code, bug.json()["error"]) == (500, "internal_error")
    assert "a bug" not in bug.text, "a 500 does not leak the exception"
    assert body.status_code == 201 and body.headers["content-type"] == "application/json"
    assert body.json() == {"error": "e", "detail": "d", "field": None}
    assert alive.status_code == 201, "the server outlives a handled bug"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("0-0", (0, 0)),
        ("1700000000000-12", (1700000000000, 12)),
        (f"{2**64 - 1}-{2**64 - 1}", (2**64 - 1, 2**64 - 1)),
        (f"{2**64}-0", None),
        # Digits of other scripts: str.isdigit() and \d say yes, Redis says no.
        ("1795980000000-0".translate(ARABIC_INDIC), None),
        ("1²-0", None),
        ("\uff11-0", None),  # fullwidth one
        ("1-0\n", None),
        (" 1-0", None),
        ("1-", None),
        ("-1", None),
        ("1", None),
        ("1-2-3", None),
        ("+1-0", None),
        ("", None),
    ],
)
def test_stream_ids_are_ascii_digits_only(raw: str, parsed: tuple[int, int] | None) -> None:
    """Only what Redis itself accepts as an entry id parses."""
    assert parse_stream_id(raw) == parsed


def test_replies_become_text() -> None:
    """bytes are decoded; str and None pass through."""
    assert (text(b"queued"), text("queued"), text(None)) == ("queued", "queued", None)


@pytest.mark.parametrize(
    ("service", "env"),
    [
        ("gateway", {"GATEWAY_PORT": "not-a-port"}),  # refused while reading settings
        # Refused while building the app: auth on, but nothing to verify event tokens with.
        ("notifier", {"LABELSCAN_API_KEYS": "a:key-a-0123456789abcdef"}),
    ],
)
def test_a_bad_setting_exits_2_with_one_line(service: str, env: dict[str, str]) -> None:
    """Every service says ``<service>: configuration error: <why>`` and exits 2."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LABELSCAN_", "GATEWAY_"))}
    result = subprocess.run(
        [sys.executable, "-m", service],
        env={**clean, "LABELSCAN_AUTH": "on", "LOG_JSON": "true", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{service}: configuration error: "), lines
    assert "Traceback" not in result.stderr
