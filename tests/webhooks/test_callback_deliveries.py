"""A scan's callback deliveries: listed (paged) and redelivered through its own route,
tenants kept apart, against a real receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.settings import Secret, Settings
from tests.conftest import SettingsFactory
from tests.support.stack import Stack, running_stack
from tests.support.webhooks import Answer, Received, run_receiver, verify
from tests.webhooks.test_delivery import PNG, doomed, webhook_settings

KEYS = {"acme": "key-acme-0123456789", "globex": "key-globex-0123456789", "admin": "key-adm-01"}


def auth(tenant: str) -> dict[str, str]:
    """The Authorization header of ``tenant``'s key."""
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def secured(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    """Webhook test settings with auth on: tenants acme and globex, and an operator."""
    return webhook_settings(
        make_settings,
        auth=True,
        api_keys=tuple((t, Secret(k)) for t, k in KEYS.items()),
        event_keys=(Secret("e" * 40),),
        **overrides,
    )


async def submit(stack: Stack, name: str, callback_url: str | None) -> dict[str, Any]:
    """Submit one scan as acme; its 202 body."""
    body = {"image_base64": PNG, "category": "toys", "marketplaces": ["US"], "product_name": name}
    if callback_url is not None:
        body["callback_url"] = callback_url
    response = await stack.client.post("/api/scans", json=body, headers=auth("acme"))
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


def log_path(scan_id: str) -> str:
    """The route of a scan's callback deliveries."""
    return f"/api/scans/{scan_id}/callback/deliveries"


async def settled(stack: Stack, scan_id: str, count: int) -> list[dict[str, Any]]:
    """The scan's callback deliveries once there are ``count`` and none is pending."""
    async with asyncio.timeout(30):
        while True:
            log = await stack.client.get(log_path(scan_id), headers=auth("acme"))
            assert log.status_code == 200, log.text
            items: list[dict[str, Any]] = log.json()["items"]
            if len(items) >= count and all(i["status"] != "pending" for i in items):
                return items
            await asyncio.sleep(0.05)


async def test_a_scans_callback_deliveries_are_listed_and_kept_to_its_tenant(
    make_settings: SettingsFactory,
) -> None:
    """The receiver answers 500 then 200: the log shows one delivery, succeeded after two
    attempts, with the webhook-id the receiver saw; only that scan's (not a sibling's);
    globex gets 404, the operator sees it, a scan without callback_url is 404."""

    async def flaky(request: Received, seen: int) -> Answer:
        return (500, {}) if seen == 0 else (200, {})

    settings = secured(make_settings)
    async with run_receiver(flaky) as receiver, running_stack(settings) as stack:
        first = await submit(stack, "first", receiver.url("/cb/first"))
        second = await submit(stack, "second", receiver.url("/cb/second"))
        plain = await submit(stack, "plain", None)
        items = await settled(stack, first["scan_id"], 1)
        assert len(items) == 1
        item = items[0]
        assert item["scan_id"] == first["scan_id"]
        assert item["type"] == "scan.completed"
        assert item["status"] == "succeeded"
        assert item["attempts"] == 2
        assert item["last_status_code"] == 200
        assert item["last_latency_ms"] >= 0
        got = receiver.of(item["event_id"])
        assert [r.status for r in got] == [500, 200]
        assert all(r.path == "/cb/first" for r in got)
        assert all(verify(first["callback_secret"], r.headers, r.body) for r in got)
        theirs = await settled(stack, second["scan_id"], 1)
        assert [i["scan_id"] for i in theirs] == [second["scan_id"]]
        assert theirs[0]["id"] != item["id"]

        path = log_path(first["scan_id"])
        redeliver = f"{path}/{item['id']}/redeliver"
        for answer in (
            await stack.client.get(path, headers=auth("globex")),
            await stack.client.post(redeliver, headers=auth("globex")),
        ):
            assert answer.status_code == 404
            assert answer.json()["field"] == "scan_id"
        assert (await stack.client.get(path)).status_code == 401
        assert (await stack.client.post(redeliver)).status_code == 401
        operator = await stack.client.get(path, headers=auth("admin"))
        assert operator.status_code == 200
        assert [i["id"] for i in operator.json()["items"]] == [item["id"]]
        none = await stack.client.get(log_path(plain["scan_id"]), headers=auth("acme"))
        assert none.status_code == 404
        assert none.json()["error"] == "not_found"
        assert "callback_url" in none.json()["detail"]
        missing = await stack.client.get(log_path("0" * 32), headers=auth("acme"))
        assert missing.status_code == 404


async def test_redeliver_sends_the_same_webhook_id_again_signed_with_the_scans_secret(
    make_settings: SettingsFactory,
) -> None:
    """POST .../redeliver: 202 pending, the receiver gets the same webhook-id once more,
    verified with the callback secret, and the log counts the attempt; another scan's
    delivery under this scan's path is 404."""
    settings = secured(make_settings)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        first = await submit(stack, "first", receiver.url("/cb"))
        second = await submit(stack, "second", receiver.url("/cb"))
        [item] = await settled(stack, first["scan_id"], 1)
        [theirs] = await settled(stack, second["scan_id"], 1)
        path = log_path(first["scan_id"])
        foreign = await stack.client.post(f"{path}/{theirs['id']}/redeliver", headers=auth("acme"))
        assert foreign.status_code == 404
        assert foreign.json()["field"] == "delivery_id"
        bad_id = await stack.client.post(f"{path}/wd_nonsense/redeliver", headers=auth("acme"))
        assert bad_id.status_code == 404
        again = await stack.client.post(f"{path}/{item['id']}/redeliver", headers=auth("acme"))
        assert again.status_code == 202, again.text
        assert again.json()["status"] == "pending"
        assert again.json()["id"] == item["id"]
        await receiver.wait_for(lambda _: len(receiver.of(item["event_id"])) == 2)
        sent = receiver.of(item["event_id"])
        assert all(verify(first["callback_secret"], r.headers, r.body) for r in sent)
        assert sent[0].body == sent[1].body
        [after] = await settled(stack, first["scan_id"], 1)
        assert (after["status"], after["attempts"]) == ("succeeded", 2)


async def test_a_scan_that_ended_twice_pages_its_deliveries_newest_first(
    make_settings: SettingsFactory,
) -> None:
    """A failed scan retried fails again: two callback deliveries, paged one at a time
    through `next` (newest first, each once), then `next` is null."""
    settings = secured(make_settings)
    async with (
        run_receiver() as receiver,
        running_stack(settings, backend=doomed(settings)) as stack,
    ):
        scan = await submit(stack, "doomed", receiver.url("/cb"))
        [first] = await settled(stack, scan["scan_id"], 1)
        assert (first["type"], first["status"]) == ("scan.failed", "succeeded")
        retried = await stack.client.post(
            f"/api/scans/{scan['scan_id']}/retry", headers=auth("acme")
        )
        assert retried.status_code == 202, retried.text
        both = await settled(stack, scan["scan_id"], 2)
        assert len(both) == 2
        assert both[1]["id"] == first["id"]
        assert both[0]["created_at"] >= both[1]["created_at"]
        assert len(receiver.received) == 2
        path = log_path(scan["scan_id"])
        page = (await stack.client.get(path, params={"limit": 1}, headers=auth("acme"))).json()
        assert [i["id"] for i in page["items"]] == [both[0]["id"]]
        assert page["next"] is not None
        rest = await stack.client.get(
            path, params={"limit": 1, "cursor": page["next"]}, headers=auth("acme")
        )
        assert [i["id"] for i in rest.json()["items"]] == [both[1]["id"]]
        assert rest.json()["next"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"cursor": "yesterday"}, "cursor"),
        ({"cursor": "12:wd_short"}, "cursor"),
    ],
)
async def test_bad_paging_parameters_are_refused_naming_them(
    make_settings: SettingsFactory, params: dict[str, str], field: str
) -> None:
    """A bad limit or cursor is a 422 naming it (as on an endpoint's log), however the
    scan stands; nothing is listed."""
    settings = secured(make_settings)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        scan = await submit(stack, "paged", receiver.url("/cb"))
        refused = await stack.client.get(
            log_path(scan["scan_id"]), params=params, headers=auth("acme")
        )
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert (body["error"], body["field"]) == ("invalid_field", field)
        assert field in body["detail"]


async def test_the_log_reads_only_the_scans_own_deliveries_through_a_busy_tenant(
    make_settings: SettingsFactory,
) -> None:
    """With many later callbacks of the same tenant in the shared log (more than one read),
    an early scan still finds its one delivery, and a small page of a later one is full."""
    settings = secured(make_settings)
    async with run_receiver() as receiver, running_stack(settings) as stack:
        early = await submit(stack, "early", receiver.url("/cb"))
        await settled(stack, early["scan_id"], 1)
        later = [await submit(stack, f"later {n}", receiver.url("/cb")) for n in range(70)]
        await receiver.wait_for(lambda got: len(got) >= 71, timeout=60)
        log = await stack.client.get(
            log_path(early["scan_id"]), params={"limit": 1}, headers=auth("acme")
        )
        assert [i["scan_id"] for i in log.json()["items"]] == [early["scan_id"]]
        assert log.json()["next"] is None
        last = await settled(stack, later[-1]["scan_id"], 1)
        assert [i["scan_id"] for i in last] == [later[-1]["scan_id"]]
