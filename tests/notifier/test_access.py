"""Event tokens at the notifier: no token 401, wrong scan 404, tenant tokens, rotation."""

from __future__ import annotations

import base64

import httpx
import pytest

from notifier.app import create_app
from shared import tokens
from shared.settings import Secret, Settings, SettingsError
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.servers import serve
from tests.support.sse import EventStream
from tests.support.stack import running_stack

KEY = "key-a-0123456789abcdef"
OLD, NEW = Secret("o" * 40), Secret("n" * 40)
BODY = {
    "image_base64": base64.b64encode(label_png()).decode(),
    "category": "toys",
    "marketplaces": ["US"],
    "product_name": "Blocks",
}


async def status_of(client: httpx.AsyncClient, url: str, token: str | None) -> int:
    """The status of opening an event stream (closed at once)."""
    params = {"token": token} if token is not None else None
    async with client.stream("GET", url, params=params) as response:
        return response.status_code


async def test_event_stream_needs_a_token_for_that_scan(make_settings: SettingsFactory) -> None:
    """No or forged token 401, another scan 404; its own token (any key, or tenant scope) 200."""
    settings = make_settings(auth=True, api_keys=(("a", Secret(KEY)),), event_keys=(NEW, OLD))
    auth = {"authorization": f"Bearer {KEY}"}
    async with running_stack(settings) as stack:
        mine = (await stack.client.post("/api/scans", json=BODY, headers=auth)).json()
        other = (await stack.client.post("/api/scans", json=BODY, headers=auth)).json()
        url = f"/api/scans/{mine['scan_id']}/events"
        codes = {
            "none": await status_of(stack.events, url, None),
            "forged": await status_of(stack.events, url, "v1.s.x.9999999999.sig"),
            "other scan": await status_of(stack.events, url, other["events_token"]),
            "other tenant": await status_of(stack.events, url, tokens.sign((NEW,), "t", "b", 60)),
            "expired": await status_of(
                stack.events, url, tokens.sign((NEW,), "s", mine["scan_id"], -5)
            ),
            "own": await status_of(stack.events, url, mine["events_token"]),
            "old key": await status_of(
                stack.events, url, tokens.sign((OLD,), "s", mine["scan_id"], 60)
            ),
            "own tenant": await status_of(stack.events, url, tokens.sign((NEW,), "t", "a", 60)),
        }
        refused = await stack.events.get(url)
    assert codes == {
        "none": 401,
        "forged": 401,
        "other scan": 404,
        "other tenant": 404,
        "expired": 401,
        "own": 200,
        "old key": 200,
        "own tenant": 200,
    }
    assert refused.json()["field"] == "token"
    assert mine["events_url"].endswith(
        f"/api/scans/{mine['scan_id']}/events?token={mine['events_token']}"
    )


def test_notifier_refuses_to_start_without_event_keys(make_settings: SettingsFactory) -> None:
    """Auth on without LABELSCAN_EVENT_KEYS is a configuration error at start."""
    with pytest.raises(SettingsError, match="LABELSCAN_EVENT_KEYS"):
        create_app(make_settings(auth=True, api_keys=(("a", Secret(KEY)),)))


async def test_auth_off_needs_no_token(settings: Settings) -> None:
    """With LABELSCAN_AUTH=off no token is asked for (local experiments)."""
    async with (
        serve(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        response = await http.get(f"/api/scans/{'0' * 32}/events")
    assert response.status_code == 404 and response.json()["field"] == "scan_id"


async def test_a_dotted_tenant_gets_working_event_tokens(make_settings: SettingsFactory) -> None:
    """Tenant ``acme.eu``: the gateway's tenant link opens the notifier's tenant stream, which
    carries the tenant's scan; the scan's own token and the tenant token open the scan's."""
    settings = make_settings(auth=True, api_keys=(("acme.eu", Secret(KEY)),), event_keys=(NEW,))
    auth = {"authorization": f"Bearer {KEY}"}
    async with running_stack(settings) as stack:
        link = (await stack.client.get("/api/events-url", headers=auth)).json()
        grant = tokens.verify(settings.event_keys, link["events_token"])
        assert (grant.scope, grant.subject) == ("t", "acme.eu")
        path = link["events_url"].split("/", 3)[3]
        async with stack.events.stream(
            "GET", f"/{path}", headers={"accept": "text/event-stream"}
        ) as response:
            assert response.status_code == 200
            stream = EventStream(response)
            await stream.next_message()  # the resume point comes before any event
            scan = (await stack.client.post("/api/scans", json=BODY, headers=auth)).json()
            event = await stream.next_event(within=10)
        url = f"/api/scans/{scan['scan_id']}/events"
        by_scan = await status_of(stack.events, url, scan["events_token"])
        by_tenant = await status_of(stack.events, url, link["events_token"])
    assert event is not None and event.data is not None
    assert scan["scan_id"] in event.data
    assert (by_scan, by_tenant) == (200, 200)
