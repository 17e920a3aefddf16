"""Hostile input: schemathesis against the real gateway, and hand-made nasty requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import struct
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from redis.asyncio import Redis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from gateway.app import create_app
from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.redis import prefix_keys
from tests.support.servers import RunningServer, serve

KEY = "key-a-0123456789abcdef"
EVENT_KEY = Secret("e" * 40)
PNG = label_png()
MAX_EXAMPLES = 25


# --- schemathesis -------------------------------------------------------------------


def error_body_on_4xx(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx answer is JSON with string ``error`` and ``detail``."""
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
            f"{response.status_code} without a JSON body"
        )
        body = json.loads(response.content)
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert isinstance(body.get("detail"), str), body
    return None


def missing_key_is_401(ctx: Any, response: Any, case: Any) -> bool | None:
    """Whatever a key was accepted for, the same request without the key is a 401.

    Ours rather than schemathesis' ``ignored_auth``, which takes the fixed header for a
    generated one on operations with header parameters (``Idempotency-Key``)."""
    if not 200 <= response.status_code < 300 or not case.operation.definition.raw.get("security"):
        return None  # refused anyway, or public (the document says ``security: []``)
    sent = response.request
    headers = {k: v for k, v in sent.headers.items() if k.lower() != "authorization"}
    again = httpx.request(sent.method, sent.url, headers=headers, content=sent.body, timeout=10)
    assert again.status_code == 401, f"{again.status_code} without a key: {again.text[:200]}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    error_body_on_4xx,
]


def fuzz(base_url: str, headers: dict[str, str], checks: list[Any]) -> list[str]:
    """Run every operation, positive and negative, and return the failures found."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    # Headers set here are fixed in every case, so negative cases never drop the API key.
    schema.config.update(base_url=base_url, headers=headers or None, request_timeout=10)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"an operation schemathesis cannot use: {result.err()}")
            continue
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis_settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case[Any]) -> None:
                response = case.call()
                case.validate_response(response, checks=checks)

            try:
                run()
            except Unsatisfiable:
                continue  # no input to make invalid (no parameters, no body)
            except (Exception, BaseExceptionGroup) as exc:  # report every failing operation
                failures.append(f"{operation.label} [{mode.value}]:\n{exc}")
    return failures


async def test_schemathesis_finds_no_undocumented_answers(make_settings: SettingsFactory) -> None:
    """Auth off: no 5xx, only documented statuses, 4xx are ErrorBody JSON, 2xx match schema."""
    async with serve(create_app(make_settings(scan_wait_limit_s=1))) as server:
        failures = await asyncio.to_thread(fuzz, server.url, {}, CHECKS)
    assert not failures, "\n\n".join(failures)


async def test_schemathesis_with_auth_on(make_settings: SettingsFactory) -> None:
    """Auth on, with a valid key: the same checks, and a missing key is always a 401."""
    settings = make_settings(
        auth=True, api_keys=(("a", Secret(KEY)),), event_keys=(EVENT_KEY,), scan_wait_limit_s=1
    )
    async with serve(create_app(settings)) as server:
        failures = await asyncio.to_thread(
            fuzz, server.url, {"Authorization": f"Bearer {KEY}"}, [*CHECKS, missing_key_is_401]
        )
    assert not failures, "\n\n".join(failures)


async def schemathesis_run(url: str, workdir: Path, *options: str) -> tuple[int | None, str]:
    """``schemathesis run`` (examples, coverage, fuzzing, stateful) against ``url``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--checks",
        "all",
        # Most schema-valid bodies lack a usable image; DELETE cancels, the scan stays readable.
        "--exclude-checks",
        "positive_data_acceptance,use_after_free",
        *options,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_schemathesis_run_cli(
    make_settings: SettingsFactory, tmp_path: Path, auth: bool
) -> None:
    """The ``schemathesis run`` command, all phases and checks, finds nothing."""
    options: tuple[str, ...] = ()
    # Long-polls of a second: the client's read timeout is 10 s, and a wait is no fault.
    settings = make_settings(scan_wait_limit_s=1)
    if auth:
        settings = make_settings(
            auth=True, api_keys=(("a", Secret(KEY)),), event_keys=(EVENT_KEY,), scan_wait_limit_s=1
        )
        options = ("--header", f"Authorization: Bearer {KEY}")
    async with serve(create_app(settings)) as server:
        code, output = await schemathesis_run(server.url, tmp_path, *options)
    assert code == 0, output


# --- hand-made hostile requests ----------------------------------------------------------


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A real gateway with default (auth off) settings."""
    async with serve(create_app(settings)) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the real gateway."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


def scan_fields(**overrides: object) -> dict[str, object]:
    """The non-image fields of a valid scan."""
    return {"category": "toys", "marketplaces": ["US"], "product_name": "Blocks", **overrides}


ANY_FIELD = "\0any"


def assert_error(
    response: httpx.Response, statuses: tuple[int, ...], field: str | None = ANY_FIELD
) -> dict[str, Any]:
    """``response`` is one of ``statuses`` with an ErrorBody (naming ``field`` if given)."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str)
    assert isinstance(body["detail"], str)
    if field != ANY_FIELD:
        assert body.get("field") == field, body
    return body


async def raw_exchange(
    server: RunningServer, head: bytes, chunks: list[bytes], timeout: float = 5.0
) -> bytes:
    """Send ``head`` and chunked ``chunks`` with no final chunk; the answer, or b"" if none."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server answered and hung up mid-body: that is allowed
        # The body never ends: only a server that refuses early can answer.
        try:
            return await asyncio.wait_for(reader.read(65536), timeout)
        except TimeoutError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(raw: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split(b" ", 2)[1])


async def test_chunked_json_body_over_the_limit_is_refused_before_its_end(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A chunked JSON body (no Content-Length) past SCAN_MAX_BODY_BYTES: 413 before it ends."""
    settings = make_settings(max_image_bytes=1000, max_body_bytes=2000)
    head = (
        b"POST /api/scans HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    async with serve(create_app(settings)) as server:
        started = time.monotonic()
        raw = await raw_exchange(server, head, [b'{"product_name": "'] + [b"x" * 1024] * 8)
    assert status_of(raw) == 413, raw[:500]
    assert b'"too_large"' in raw
    assert time.monotonic() - started < 5
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_chunked_multipart_body_over_the_limit_is_refused_before_its_end(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """A chunked multipart upload past SCAN_MAX_BODY_BYTES: 413 before the body ends."""
    settings = make_settings(max_image_bytes=1000, max_body_bytes=2000)
    boundary = b"fuzzboundary"
    head = (
        b"POST /api/scans HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    opening = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="image"; '
        b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + PNG[:100]
    )
    async with serve(create_app(settings)) as server:
        raw = await raw_exchange(server, head, [opening] + [b"\0" * 1024] * 64)
    assert raw, "no answer while the body was still coming: the gateway waits to read it whole"
    assert status_of(raw) == 413, raw[:500]
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_multipart_with_two_files_is_refused(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Two file parts (two images, or an image and another file) are a 4xx."""
    for files in (
        [("image", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))],
        [("image", ("a.png", PNG, "image/png")), ("other", ("b.txt", b"hi", "text/plain"))],
    ):
        response = await client.post("/api/scans", data=scan_fields(), files=files)
        assert_error(response, (400, 413, 422))
    assert await prefix_keys(redis, settings.prefix) == set()


@pytest.mark.parametrize(
    "body",
    [
        b'{"category": "toys\xff", "marketplaces": ["US"], "product_name": "x"}',
        b'{"category": "toys", "marketplaces": ["US"], "product_name": "\xc3\x28"}',
        b'{"category": "toys", "marketplaces": ["US"], "product_name": "x", "\xff": 1}',
        b"\xfe\xff{}",
    ],
    ids=["in-enum-value", "in-string-value", "in-key", "bom"],
)
async def test_invalid_utf8_json_is_400(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, body: bytes
) -> None:
    """JSON whose bytes are not UTF-8 is malformed: 400 naming the body."""
    response = await client.post(
        "/api/scans", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, (400,), "body")
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_deeply_nested_json_is_a_4xx(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """100,000 levels of nesting, anywhere in the body, is a 4xx (not a stack overflow)."""
    depth = 100_000
    nested = "[" * depth + "]" * depth
    deep_object = '{"a":' * depth + "1" + "}" * depth
    for body in (
        nested,
        deep_object,
        f'{{"category": "toys", "marketplaces": ["US"], "product_name": {nested}}}',
        f'{{"category": "toys", "marketplaces": {nested}, "product_name": "x"}}',
        f'{{"category": "toys", "marketplaces": ["US"], "product_name": "x", "extra": {nested}}}',
        f'{{"category": "toys", "marketplaces": ["US"], "product_name": "x", "image_url": '
        f"{deep_object}}}",
    ):
        response = await client.post(
            "/api/scans", content=body.encode(), headers={"content-type": "application/json"}
        )
        assert_error(response, (400, 422))
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_huge_marketplaces_array_is_422(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """A marketplaces array of 200,000 entries is a 422 naming the field."""
    body = {
        **scan_fields(marketplaces=["US"] * 200_000),
        "image_base64": base64.b64encode(PNG).decode(),
    }
    response = await client.post("/api/scans", json=body)
    assert_error(response, (422,), "marketplaces")
    response = await client.post(
        "/api/scans",
        data=scan_fields(marketplaces=",".join(["US"] * 200_000)),
        files={"image": ("a.png", PNG, "image/png")},
    )
    assert_error(response, (400, 413, 422))
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_nul_bytes_in_product_name_round_trip_or_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """NUL and other control characters never crash: 422, or stored and returned intact."""
    name = "Blocks\x00\x01\x7f\u2028end"
    for response in (
        await client.post(
            "/api/scans",
            json={**scan_fields(product_name=name), "image_base64": base64.b64encode(PNG).decode()},
        ),
        await client.post(
            "/api/scans",
            data=scan_fields(product_name=name),
            files={"image": ("a.png", PNG, "image/png")},
        ),
    ):
        if response.status_code == 202:
            detail = await client.get(f"/api/scans/{response.json()['scan_id']}")
            assert detail.json()["product_name"] == name
        else:
            assert_error(response, (422,), "product_name")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int, height: int | None = None) -> bytes:
    """A well-formed ``side`` x ``height`` 1-bit PNG of zeros: tiny on disk, huge decoded."""
    height = side if height is None else height
    row = b"\0" * (1 + -(-side // 8))  # the filter byte, then the packed pixels
    packer = zlib.compressobj(9)
    rows = [packer.compress(row * 500) for _ in range(height // 500)]
    rows.append(packer.compress(row * (height % 500)) + packer.flush())
    header = struct.pack(">IIBBBBB", side, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(rows))
        + png_chunk(b"IEND", b"")
    )


# 49 Mpx: over the gateway's own limit; 144 Mpx: Pillow warns; 900 Mpx: Pillow refuses.
@pytest.mark.parametrize("side", [7_000, 12_000, 30_000])
async def test_decompression_bomb_is_refused(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, side: int
) -> None:
    """A PNG of under 200 KB that decodes to megapixels by the hundred: 413 or 422, quickly."""
    bomb = bomb_png(side)
    assert len(bomb) < 200_000
    started = time.monotonic()
    response = await client.post(
        "/api/scans", json={**scan_fields(), "image_base64": base64.b64encode(bomb).decode()}
    )
    assert_error(response, (413, 422), "image_base64")
    response = await client.post(
        "/api/scans", data=scan_fields(), files={"image": ("bomb.png", bomb, "image/png")}
    )
    assert_error(response, (413, 422), "image")
    assert time.monotonic() - started < 3, "the bomb was decoded, not just its header read"
    assert await prefix_keys(redis, settings.prefix) == set()


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(1, 40_000_000, id="1x40M-strip"),
        pytest.param(40_000_000, 1, id="40Mx1-strip"),
        pytest.param(6_000, 6_000, id="6000x6000-1-bit"),
    ],
)
async def test_bomb_within_the_pixel_limit_is_refused(
    client: httpx.AsyncClient, redis: Redis, settings: Settings, width: int, height: int
) -> None:
    """Under 40 Mpx but over a side or the decoded-size cap: 413 from the header, at once."""
    bomb = bomb_png(width, height)
    assert len(bomb) < 100_000
    started = time.monotonic()
    for response in (
        await client.post(
            "/api/scans", json={**scan_fields(), "image_base64": base64.b64encode(bomb).decode()}
        ),
        await client.post(
            "/api/scans", data=scan_fields(), files={"image": ("bomb.png", bomb, "image/png")}
        ),
    ):
        body = assert_error(response, (413,))
        assert body["error"] == "image_too_large", body
    assert time.monotonic() - started < 1, "the bomb was decoded, not just its header read"
    assert await prefix_keys(redis, settings.prefix) == set()


def lying_jpeg(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header claims ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


async def test_jpeg_shorter_than_its_header_claims_is_refused(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """libjpeg pads a stream that ends early with grey; the gateway must still refuse it."""
    jpeg = lying_jpeg(6000, 6000)
    assert Image.open(io.BytesIO(jpeg)).size == (6000, 6000)
    response = await client.post(
        "/api/scans", json={**scan_fields(), "image_base64": base64.b64encode(jpeg).decode()}
    )
    assert assert_error(response, (422,), "image_base64")["error"] == "invalid_image"
    response = await client.post(
        "/api/scans", data=scan_fields(), files={"image": ("a.jpg", jpeg, "image/jpeg")}
    )
    assert assert_error(response, (422,), "image")["error"] == "invalid_image"
    # A whole JPEG, and one cut short without its end marker, are told apart as well.
    whole = io.BytesIO()
    Image.frombytes("RGB", (256, 256), bytes(range(256)) * 768).save(whole, format="JPEG")
    response = await client.post(
        "/api/scans", data=scan_fields(), files={"image": ("a.jpg", whole.getvalue()[:-600])}
    )
    assert assert_error(response, (422,), "image")["error"] == "invalid_image"
    assert await prefix_keys(redis, settings.prefix) == set()
    response = await client.post(
        "/api/scans", data=scan_fields(), files={"image": ("a.jpg", whole.getvalue())}
    )
    assert response.status_code == 202, response.text


def truncated_images() -> list[bytes]:
    """A PNG cut in half, a PNG with no image data, and a corrupt zlib stream."""
    ihdr_end = 8 + 25  # signature, then IHDR (length, type, 13 bytes, CRC)
    corrupt = bytearray(PNG)
    idat = corrupt.index(b"IDAT") + 4
    corrupt[idat : idat + 64] = zlib.compress(b"nope")[:64].ljust(64, b"\xff")
    return [PNG[: len(PNG) // 2], PNG[:ihdr_end], bytes(corrupt)]


async def test_truncated_image_is_refused(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """A PNG that stops short (or whose data is corrupt) is a 4xx naming the image field."""
    for image in truncated_images():
        response = await client.post(
            "/api/scans", json={**scan_fields(), "image_base64": base64.b64encode(image).decode()}
        )
        assert_error(response, (413, 415, 422), "image_base64")
        response = await client.post(
            "/api/scans", data=scan_fields(), files={"image": ("a.png", image, "image/png")}
        )
        assert_error(response, (413, 415, 422), "image")
    assert await prefix_keys(redis, settings.prefix) == set()


@pytest.mark.parametrize(
    "query",
    [
        # "²": str.isdigit() says yes, int() says no.
        pytest.param("count=%C2%B2", id="count-superscript-two"),
        # Arabic-Indic 3: a digit to Python (int() reads it as 3).
        pytest.param("count=%D9%A3", id="count-arabic-indic-digit"),
        pytest.param("count=" + "0" * 40 + "1", id="count-leading-zeros"),
        # Past int()'s 4300-digit limit for str to int conversion.
        pytest.param("count=" + "9" * 5000, id="count-5000-digits"),
        # Nothing is before the first possible id: Redis refuses "(0-0".
        pytest.param("before=0-0", id="before-0-0"),
        # Over 2^64 - 1: not a stream id Redis can parse.
        pytest.param("before=99999999999999999999-0", id="before-over-uint64"),
        # Unicode digits match \d.
        pytest.param("before=%D9%A3-%D9%A3", id="before-arabic-indic-digits"),
        # $ matches before a trailing newline.
        pytest.param("before=1-1%0A", id="before-trailing-newline"),
    ],
)
async def test_hostile_dead_letter_queries_are_422_or_empty(
    client: httpx.AsyncClient, query: str
) -> None:
    """Odd ``count``/``before`` values are a 422 or an empty page, never a 5xx."""
    response = await client.get(f"/api/dead?{query}")
    if response.status_code == 200:
        assert response.json() == {"items": [], "next": None}
    else:
        assert_error(response, (422,))
