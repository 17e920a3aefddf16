"""GET /api/scans: listing, filters, paging and the index behind them, on a real Valkey."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from shared.clock import iso, now_ms
from shared.keys import Keys
from shared.scanlist import ListQuery, ScanLister, decode_cursor, encode_cursor
from shared.schemas import ScanJob
from shared.settings import Secret, Settings
from shared.store import ScanStore
from tests.conftest import SettingsFactory
from tests.support.servers import serve

KEYS = {"a": "key-a-0123456789abcdef", "b": "key-b-0123456789abcdef"}
ADMIN = "key-ops-0123456789abcdef"


def secured(make_settings: SettingsFactory, **extra: object) -> Settings:
    """Auth on: tenants ``a`` and ``b``, and ``ops`` an admin."""
    return make_settings(
        auth=True,
        api_keys=(
            ("a", Secret(KEYS["a"])),
            ("b", Secret(KEYS["b"])),
            ("ops", Secret(ADMIN)),
        ),
        admin_tenants=("ops",),
        event_keys=(Secret("e" * 40),),
        **extra,
    )


class Gateway:
    """A real gateway and one API client per key."""

    def __init__(self, clients: dict[str, httpx.AsyncClient]) -> None:
        self.clients = clients

    async def post(self, who: str, name: str, **extra: object) -> str:
        """Submit a scan (an image URL: nothing to decode) as ``who``; its id."""
        body = {
            "image_url": "https://example.invalid/label.png",
            "category": "toys",
            "marketplaces": ["US"],
            "product_name": name,
            **extra,
        }
        response = await self.clients[who].post("/api/scans", json=body)
        assert response.status_code == 202, response.text
        scan_id: str = response.json()["scan_id"]
        return scan_id

    async def list(self, who: str, **params: Any) -> dict[str, Any]:
        """One page as ``who``; asserts 200."""
        response = await self.clients[who].get("/api/scans", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    async def ids(self, who: str, **params: Any) -> list[str]:
        """Every scan id of the listing, following the cursor."""
        out: list[str] = []
        cursor = None
        while True:
            page = await self.list(who, **params, **({"cursor": cursor} if cursor else {}))
            out += [item["scan_id"] for item in page["items"]]
            cursor = page["next"]
            if cursor is None:
                return out


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway for ``settings`` with clients ``a``, ``b`` and ``ops``."""
    async with serve(create_app(settings)) as server, contextlib.AsyncExitStack() as stack:
        clients = {}
        for who, key in (*KEYS.items(), ("ops", ADMIN)):
            clients[who] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url, timeout=10, headers={"authorization": f"Bearer {key}"}
                )
            )
        yield Gateway(clients)


async def test_paging_while_scans_arrive_returns_each_scan_once(
    make_settings: SettingsFactory,
) -> None:
    """Two new scans land between every page: the pages still hold each older scan once."""
    async with gateway(secured(make_settings)) as gw:
        older = [await gw.post("a", f"Blocks {n}") for n in range(23)]
        seen: list[str] = []
        arrived: list[str] = []
        cursor = None
        while True:
            page = await gw.list("a", limit=5, **({"cursor": cursor} if cursor else {}))
            seen += [item["scan_id"] for item in page["items"]]
            arrived += [await gw.post("a", "Arrived meanwhile") for _ in range(2)]
            cursor = page["next"]
            if cursor is None:
                break
        top = await gw.list("a", limit=len(arrived))
    assert seen == older[::-1], "newest first, each once, none of those added meanwhile"
    assert [item["scan_id"] for item in top["items"]] == arrived[::-1]


async def test_scans_of_one_millisecond_page_by_id(settings: Settings, redis: Redis) -> None:
    """Scans created in the same millisecond are ordered by id and none is lost at a page edge."""
    store = ScanStore(redis, settings)
    at = now_ms()
    ids = []
    for n in range(13):
        scan_id = store.new_scan_id()
        job = ScanJob(
            scan_id=scan_id,
            category="food",
            marketplaces=["DE"],
            product_name=f"Tie {n}",
            submitted_at_ms=at,
            image_url="https://example.invalid/x.png",
        )
        assert await store.submit(job, None) is None
        ids.append(scan_id)
    async with serve(create_app(settings)) as server, httpx.AsyncClient(base_url=server.url) as c:
        listed: list[str] = []
        cursor = None
        while True:
            params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/scans", params=params)).json()
            listed += [item["scan_id"] for item in page["items"]]
            if (cursor := page["next"]) is None:
                break
    assert listed == sorted(ids, reverse=True)


async def test_tenants_see_only_their_own_scans_and_admins_all(
    make_settings: SettingsFactory,
) -> None:
    """Tenant a never sees b's scans, not even by id prefix; an admin sees all, or one tenant's."""
    async with gateway(secured(make_settings)) as gw:
        mine = [await gw.post("a", f"Soap {n}") for n in range(3)]
        theirs = [await gw.post("b", f"Soap {n}") for n in range(2)]
        assert await gw.ids("a") == mine[::-1]
        assert await gw.ids("b") == theirs[::-1]
        assert await gw.ids("a", q=theirs[0][:12]) == []
        assert await gw.ids("a", tenant="a") == mine[::-1]
        refused = await gw.clients["a"].get("/api/scans", params={"tenant": "b"})
        assert refused.status_code == 400 and refused.json()["field"] == "tenant"
        assert await gw.ids("ops") == (mine + theirs)[::-1]
        assert await gw.ids("ops", tenant="b") == theirs[::-1]
        everything = await gw.list("ops")
    assert {item["tenant"] for item in everything["items"]} == {"a", "b"}


async def test_items_summarise_each_scan(make_settings: SettingsFactory) -> None:
    """An item says what the scan is and where it stands, without its result."""
    async with gateway(secured(make_settings)) as gw:
        scan_id = await gw.post("a", "Wooden Blocks", priority="high")
        (item,) = (await gw.list("a"))["items"]
    assert item == {
        "scan_id": scan_id,
        "tenant": "a",
        "state": "queued",
        "priority": "high",
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "Wooden Blocks",
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
        "stage": "queued",
        "percentage": 0,
        "verdict": None,
    }
    assert item["created_at"].endswith("Z") and item["updated_at"] >= item["created_at"]


async def test_q_matches_the_product_name_and_the_id_prefix(make_settings: SettingsFactory) -> None:
    """q: a case-insensitive substring of the product name, or a prefix of the scan id."""
    async with gateway(secured(make_settings)) as gw:
        blocks = await gw.post("a", "Wooden BLOCKS for toddlers")
        soap = await gw.post("a", "Lavender soap")
        assert await gw.ids("a", q="blocks") == [blocks]
        assert await gw.ids("a", q="SOAP") == [soap]
        assert await gw.ids("a", q=soap[:6]) == [soap]
        assert await gw.ids("a", q=blocks) == [blocks]
        assert await gw.ids("a", q="crayons") == []


async def test_state_priority_and_time_filters(make_settings: SettingsFactory) -> None:
    """state, priority, since and until (inclusive) narrow the listing."""
    async with gateway(secured(make_settings)) as gw:
        queued = await gw.post("a", "queued", priority="low")
        scheduled = await gw.post("a", "later", delay_ms=600_000)
        cancelled = await gw.post("a", "cancelled", priority="high")
        assert (await gw.clients["a"].delete(f"/api/scans/{cancelled}")).status_code == 200
        assert await gw.ids("a", state="queued") == [queued]
        assert await gw.ids("a", state="scheduled") == [scheduled]
        assert await gw.ids("a", state="cancelled") == [cancelled]
        assert await gw.ids("a", state="completed") == []
        assert await gw.ids("a", priority="high") == [cancelled]
        assert await gw.ids("a", priority="low", state="queued") == [queued]
        created = {item["scan_id"]: item["created_at"] for item in (await gw.list("a"))["items"]}
        middle = created[scheduled]
        assert await gw.ids("a", since=middle) == [cancelled, scheduled]
        assert await gw.ids("a", until=middle) == [scheduled, queued]
        assert await gw.ids("a", since=middle, until=middle) == [scheduled]
        assert await gw.ids("a", since=iso(now_ms() + 60_000)) == []


BAD = [
    ({"state": "done"}, "state"),
    ({"priority": "urgent"}, "priority"),
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2024-01-01"}, "since"),
    ({"until": "2024-01-01T00:00:00"}, "until"),
    ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"q": ""}, "q"),
    ({"q": "x" * 201}, "q"),
    ({"tenant": "no spaces"}, "tenant"),
]


@pytest.mark.parametrize(("params", "field"), BAD, ids=[f for _, f in BAD])
async def test_bad_parameters_are_400_naming_the_field(
    settings: Settings, params: dict[str, str], field: str
) -> None:
    """Each malformed parameter: 400, ``invalid_parameter``, and its name in ``field``."""
    async with serve(create_app(settings)) as server, httpx.AsyncClient(base_url=server.url) as c:
        response = await c.get("/api/scans", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["field"] == field


async def test_the_index_expires_with_the_scans(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """With SCAN_RESULT_TTL=1: the scans expire, the listing skips and drops their entries,
    and the index itself expires."""
    settings = make_settings(result_ttl_s=1, image_ttl_s=1)
    keys = Keys(settings.prefix)
    async with serve(create_app(settings)) as server, httpx.AsyncClient(base_url=server.url) as c:
        body = {
            "image_url": "https://example.invalid/x.png",
            "category": "toys",
            "marketplaces": ["US"],
            "product_name": "Short-lived",
        }
        ids = [(await c.post("/api/scans", json=body)).json()["scan_id"] for _ in range(3)]
        assert len((await c.get("/api/scans")).json()["items"]) == 3
        assert 0 < await redis.pttl(keys.only.scan_index) <= 2_000
        assert 0 < await redis.pttl(keys.only.tenant_scan_index("default")) <= 2_000
        async with asyncio.timeout(10):
            while any([await redis.exists(keys.scan(i)) for i in ids]):
                await asyncio.sleep(0.1)
        page = (await c.get("/api/scans")).json()
    assert page == {"items": [], "next": None}
    assert await redis.zcard(keys.only.scan_index) == 0, "met by a listing, dropped"


async def test_the_index_is_trimmed_by_age_on_write(settings: Settings, redis: Redis) -> None:
    """An entry older than any scan can live is trimmed by the next submit."""
    keys = Keys(settings.prefix)
    ancient = now_ms() - 2 * settings.result_ttl_s * 1000 - 1
    await redis.zadd(keys.only.scan_index, {"0" * 32: ancient})
    async with serve(create_app(settings)) as server, httpx.AsyncClient(base_url=server.url) as c:
        body = {
            "image_url": "https://example.invalid/x.png",
            "category": "toys",
            "marketplaces": ["US"],
            "product_name": "New",
        }
        scan_id = (await c.post("/api/scans", json=body)).json()["scan_id"]
    assert await redis.zrange(keys.only.scan_index, 0, -1) == [scan_id.encode()]


async def test_the_index_stays_bounded(make_settings: SettingsFactory, redis: Redis) -> None:
    """SCAN_INDEX_MAX=5: eight scans leave the five newest in each index."""
    settings = secured(make_settings, scan_index_max=5)
    keys = Keys(settings.prefix)
    async with gateway(settings) as gw:
        ids = [await gw.post("a", f"n{n}") for n in range(8)]
        listed = await gw.ids("a")
    assert listed == ids[::-1][:5]
    assert await redis.zcard(keys.only.scan_index) == 5
    assert await redis.zcard(keys.only.tenant_scan_index("a")) == 5


async def test_partitions_are_merged_newest_first(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    """SCAN_PARTITIONS=3: one tenant's scans sit in every partition; pages merge them in order."""
    settings = secured(make_settings, partitions=3)
    keys = Keys(settings.prefix, 3)
    async with gateway(settings) as gw:
        ids = [await gw.post("a", f"Part {n}") for n in range(20)]
        other = await gw.post("b", "Part b")
        paged = await gw.ids("a", limit=6)
        admin = await gw.ids("ops", limit=7)
        found = await gw.ids("a", q="part 1")
    assert {keys.of_scan(i).index for i in ids} == {0, 1, 2}
    assert paged == ids[::-1]
    assert admin == [other, *ids[::-1]]
    assert found == [i for n, i in enumerate(ids) if str(n).startswith("1")][::-1]
    for part in keys.partitions:
        assert await redis.zcard(part.tenant_scan_index("a")) == sum(
            keys.of_scan(i) is part for i in ids
        )


async def test_a_cursor_past_everything_is_an_empty_last_page(settings: Settings) -> None:
    """A cursor below every entry: no items, no next."""
    async with serve(create_app(settings)) as server, httpx.AsyncClient(base_url=server.url) as c:
        page = (await c.get("/api/scans", params={"cursor": encode_cursor((0, "0" * 32))})).json()
    assert page == {"items": [], "next": None}


async def test_a_rare_match_comes_after_short_pages(settings: Settings, redis: Redis) -> None:
    """A page looks at a bounded number of scans: past it, a short (even empty) page and a
    cursor; following the cursors finds the match, once."""
    store = ScanStore(redis, settings)
    ids = []
    for n in range(12):
        scan_id = store.new_scan_id()
        job = ScanJob(
            scan_id=scan_id,
            category="food",
            marketplaces=["DE"],
            product_name="Needle" if n == 0 else f"Hay {n}",
            submitted_at_ms=now_ms() - 1000 + n,
            image_url="https://example.invalid/x.png",
        )
        assert await store.submit(job, None) is None
        ids.append(scan_id)
    lister = ScanLister(redis, Keys(settings.prefix), budget=5)
    pages = []
    cursor = None
    while True:
        page = await lister.page(ListQuery(tenant=None, q="needle", cursor=cursor, limit=10))
        pages.append([item.scan_id for item in page.items])
        if page.next is None:
            break
        cursor = decode_cursor(page.next)
    assert pages == [[], [], [ids[0]]]
