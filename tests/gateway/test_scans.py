"""POST /api/scans, status, result and stats against a real Valkey and uvicorn."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from shared.keys import Keys
from shared.schemas import ScanJob
from shared.settings import Settings
from tests.support.images import label_png
from tests.support.redis import prefix_keys
from tests.support.servers import serve

PNG = label_png()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a real gateway."""
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield http


def scan_body(**overrides: object) -> dict[str, object]:
    """A valid JSON scan request."""
    body: dict[str, object] = {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "toys",
        "marketplaces": ["US", "DE"],
        "product_name": "Wooden blocks",
    }
    body.update(overrides)
    return body


async def test_json_scan_is_accepted_and_queued(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """A JSON scan gets 202 with its URLs; one stream entry without the image bytes."""
    response = await client.post("/api/scans", json=scan_body())
    assert response.status_code == 202, response.text
    body = response.json()
    scan_id = body["scan_id"]
    assert body["status"] == "queued"
    assert body["status_url"].endswith(f"/api/scans/{scan_id}/status")
    assert body["events_url"].endswith(f"/api/scans/{scan_id}/events")

    keys = Keys(settings.prefix)
    entries = await redis.xrange(keys.requests("normal"))
    assert len(entries) == 1
    fields = entries[0][1]
    assert PNG not in fields[b"job"]
    job = msgspec.json.decode(fields[b"job"], type=ScanJob)
    assert job.scan_id == scan_id
    assert job.marketplaces == ["US", "DE"]
    assert await redis.get(keys.image(scan_id)) == PNG
    assert 0 < await redis.ttl(keys.image(scan_id)) <= settings.image_ttl_s

    status = (await client.get(f"/api/scans/{scan_id}/status")).json()
    assert status["state"] == "queued"
    assert status["progress"] == {
        "stage": "queued",
        "percentage": 0,
        "message": "Waiting for an analyzer",
    }
    assert status["attempts"] == 0
    assert status["created_at"].endswith("Z")


async def test_multipart_upload_is_accepted(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """multipart/form-data with an image file and repeated marketplaces works."""
    response = await client.post(
        "/api/scans",
        data={"category": "cosmetics", "marketplaces": ["UK", "FR"], "product_name": "Soap"},
        files={"image": ("label.png", PNG, "image/png")},
    )
    assert response.status_code == 202, response.text
    detail = (await client.get(f"/api/scans/{response.json()['scan_id']}")).json()
    assert detail["marketplaces"] == ["UK", "FR"]
    assert detail["category"] == "cosmetics"
    assert detail["result"] is None


async def test_image_url_scan_is_accepted(client: httpx.AsyncClient) -> None:
    """An image_url scan is queued without fetching anything on the request path."""
    body = scan_body(image_url="https://example.invalid/label.png")
    del body["image_base64"]
    response = await client.post("/api/scans", json=body)
    assert response.status_code == 202, response.text


async def test_priority_selects_the_stream(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """priority=high lands in the high stream."""
    response = await client.post("/api/scans", json=scan_body(priority="high"))
    assert response.status_code == 202
    assert await redis.xlen(Keys(settings.prefix).requests("high")) == 1


BAD_INPUTS: list[tuple[str, dict[str, object] | bytes, int, str | None]] = [
    ("malformed json", b"{not json", 400, "body"),
    ("unknown category", scan_body(category="weapons"), 422, "category"),
    ("unknown marketplace", scan_body(marketplaces=["US", "XX"]), 422, "marketplaces"),
    ("no marketplaces", scan_body(marketplaces=[]), 422, "marketplaces"),
    (
        "missing product",
        {k: v for k, v in scan_body().items() if k != "product_name"},
        422,
        "product_name",
    ),
    ("unknown field", scan_body(colour="red"), 422, "colour"),
    ("two sources", scan_body(image_url="https://example.invalid/a.png"), 422, "image"),
    ("no source", {k: v for k, v in scan_body().items() if k != "image_base64"}, 422, "image"),
    ("not base64", scan_body(image_base64="%%%"), 422, "image_base64"),
    (
        "not an image",
        scan_body(image_base64=base64.b64encode(b"hello world").decode()),
        415,
        "image_base64",
    ),
    (
        "ftp url",
        {
            **{k: v for k, v in scan_body().items() if k != "image_base64"},
            "image_url": "ftp://example.invalid/a.png",
        },
        422,
        "image_url",
    ),
    ("bad priority", scan_body(priority="urgent"), 422, "priority"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
async def test_bad_input_is_rejected_and_writes_nothing(
    client: httpx.AsyncClient,
    redis: Redis,
    settings: Settings,
    name: str,
    body: dict[str, object] | bytes,
    status: int,
    field: str | None,
) -> None:
    """Each kind of bad input gets its 4xx, names the field, and leaves Redis untouched."""
    if isinstance(body, bytes):
        response = await client.post(
            "/api/scans", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = await client.post("/api/scans", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert error["detail"]
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_wrong_content_type_is_415(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """A text/plain body is refused with 415."""
    response = await client.post(
        "/api/scans", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_oversized_image_is_413(make_settings: object, redis: Redis) -> None:
    """An image over SCAN_MAX_IMAGE_BYTES is refused with 413, in both encodings."""
    assert callable(make_settings)
    settings: Settings = make_settings(max_image_bytes=len(PNG) - 1)
    big = {"category": "toys", "marketplaces": ["US"], "product_name": "x"}
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        r1 = await http.post(
            "/api/scans", json={**big, "image_base64": base64.b64encode(PNG).decode()}
        )
        r2 = await http.post("/api/scans", data=big, files={"image": ("a.png", PNG, "image/png")})
    assert r1.status_code == 413, r1.text
    assert r2.status_code in (400, 413), r2.text
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_oversized_body_is_413_before_reading(make_settings: object, redis: Redis) -> None:
    """A Content-Length over SCAN_MAX_BODY_BYTES is refused without reading the body."""
    assert callable(make_settings)
    settings: Settings = make_settings(max_image_bytes=1000, max_body_bytes=2000)
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.post(
            "/api/scans", content=b"x" * 5000, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert await prefix_keys(redis, settings.prefix) == set()


async def test_unknown_scan_is_404(client: httpx.AsyncClient) -> None:
    """Unknown or malformed scan ids are 404 with a JSON body."""
    for path in ("/api/scans/" + "0" * 32, "/api/scans/nope/status", "/api/scans/../etc"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


async def test_stats_count_waiting_scans(client: httpx.AsyncClient) -> None:
    """Queue stats count queued scans per priority before any analyzer exists."""
    for priority in ("high", "normal", "normal"):
        assert (
            await client.post("/api/scans", json=scan_body(priority=priority))
        ).status_code == 202
    stats = (await client.get("/api/queue/stats")).json()
    assert stats["waiting"] == 3
    assert stats["waiting_by_priority"] == {"high": 1, "normal": 2, "low": 0}
    assert stats["active"] == 0
    assert stats["completed"] == 0


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """/healthz and /readyz answer 200 with Redis up."""
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_readyz_fails_without_redis(make_settings: object) -> None:
    """With Redis unreachable, /readyz is 503 and POST answers 503 with Retry-After quickly."""
    assert callable(make_settings)
    settings: Settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        assert (await http.get("/readyz")).status_code == 503
        response = await http.post("/api/scans", json=scan_body())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_multipart_delay_ms_is_a_whole_number(
    client: httpx.AsyncClient, redis: Redis, settings: Settings
) -> None:
    """Form fields are text: delay_ms of ASCII digits schedules the scan, anything else is 422."""
    fields = {"category": "toys", "marketplaces": "US", "product_name": "Blocks"}
    image = {"image": ("a.png", PNG, "image/png")}
    for bad in ("1e3", "1.0", " 5", "-5", "\u0663", "", "9" * 40):
        response = await client.post("/api/scans", data={**fields, "delay_ms": bad}, files=image)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == "delay_ms", bad
    assert await prefix_keys(redis, settings.prefix) == set()
    response = await client.post("/api/scans", data={**fields, "delay_ms": "60000"}, files=image)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "scheduled"


async def test_unsupported_method_is_405_listing_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    """A PUT on a scan is a JSON 405 whose Allow names both GET and DELETE."""
    response = await client.put("/api/scans/" + "0" * 32)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed


async def test_trailing_slash_is_404_not_a_redirect(client: httpx.AsyncClient) -> None:
    """A stray trailing slash is an unknown path: a JSON 404, never a bodiless 307."""
    for path in ("/api/queue/stats/", "/api/scans/", "/healthz/"):
        response = await client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("count=0", "count"),
        ("count=501", "count"),
        ("count=%C2%B2", "count"),
        ("before=0-0", "before"),
        ("before=18446744073709551616-0", "before"),
        ("before=1-1%0A", "before"),
    ],
)
async def test_dead_letter_query_is_validated(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    """Out-of-range or non-ASCII count/before: 422 naming the parameter."""
    response = await client.get(f"/api/dead?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_dead_letter_query_at_its_bounds_is_accepted(client: httpx.AsyncClient) -> None:
    """The largest count and stream id Redis takes are a (here empty) page."""
    top = 2**64 - 1
    response = await client.get(f"/api/dead?count=500&before={top}-{top}")
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next": None}


async def test_json_answers_are_never_cached_or_sniffed(client: httpx.AsyncClient) -> None:
    """Results and errors are private: every JSON answer says no-store and nosniff; a scan's
    status and result (which carry an ETag) may be kept by the caller only, revalidated."""
    accepted = await client.post("/api/scans", json=scan_body())
    scan_id = accepted.json()["scan_id"]
    for response in (
        accepted,
        await client.get("/api/scans/nope"),
        await client.get("/api/queue/stats"),
        await client.put("/api/queue/stats"),
    ):
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
    for path in (f"/api/scans/{scan_id}", f"/api/scans/{scan_id}/status"):
        response = await client.get(path)
        assert response.headers["cache-control"] == "private, no-cache", path
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_idempotent_replay_answers_the_scans_current_state(
    client: httpx.AsyncClient,
) -> None:
    """A replay after the scan moved on says where it is now, not "queued"."""
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/api/scans", json=scan_body(), headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "queued")
    scan_id = first.json()["scan_id"]
    assert (await client.delete(f"/api/scans/{scan_id}")).status_code == 200
    replay = await client.post("/api/scans", json=scan_body(), headers=headers)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["scan_id"], replay.json()["status"]) == (scan_id, "cancelled")
