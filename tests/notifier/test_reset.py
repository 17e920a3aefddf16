"""A per-scan resume point older than the capped history: ``event: reset``, never a silent gap."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from analyzer.attempts import Claim
from tests.conftest import SettingsFactory
from tests.notifier.conftest import running_notifier
from tests.notifier.scans import Publisher
from tests.support.sse import open_stream

SCAN_CAP = 10


async def trim_past(publisher: Publisher, claim: Claim, entry_id: str) -> int:
    """Publish progress until the scan's capped history no longer holds ``entry_id``."""
    key = publisher.keys.scan_events(claim.job.scan_id)
    for step in range(2_000):
        if await publisher.trimmed_past(key, entry_id):
            return step
        await publisher.progress(claim, step % 90, f"step {step}")
    pytest.fail("the scan's history was never trimmed")


@pytest.fixture
async def capped(make_settings: SettingsFactory, redis: Redis) -> Publisher:
    """A publisher whose writes keep only ~SCAN_CAP events of each scan's history."""
    publisher = Publisher(redis, make_settings(scan_events_maxlen=SCAN_CAP))
    await publisher.setup()
    return publisher


async def test_resume_from_a_trimmed_id_gets_reset_with_the_current_state(
    make_settings: SettingsFactory, capped: Publisher
) -> None:
    """The first event is a reset with the scan's state and progress; live events follow."""
    scan_id = await capped.submit()
    resume = (await capped.history(scan_id))[0][0]
    claim = await capped.claim(scan_id)
    await trim_past(capped, claim, resume)
    await capped.progress(claim, 95, "Almost there")
    newest = (await capped.history(scan_id))[-1][0]
    async with (
        running_notifier(make_settings()) as notifier,
        open_stream(notifier.client, scan_id, resume) as stream,
    ):
        reset = await stream.next_event()
        await capped.complete(claim)
        rest = await stream.rest()
    assert reset is not None
    assert (reset.event, reset.id) == ("reset", newest)
    assert json.loads(reset.data or "") == {
        "scan_id": scan_id,
        "state": "active",
        "attempts": 1,
        "reason": "history_trimmed",
        "progress": {"stage": "analyzing", "percentage": 95, "message": "Almost there"},
    }
    history = await capped.history(scan_id)
    ids = [entry_id for entry_id, _ in history]
    assert [(e.id, e.data) for e in rest] == history[ids.index(newest) + 1 :]
    assert [e.event for e in rest] == ["completed"]


async def test_finished_scan_resumed_from_a_trimmed_id_gets_its_final_state(
    make_settings: SettingsFactory, capped: Publisher
) -> None:
    """A reset with the terminal state ends the stream; resuming from its id then gets 204."""
    scan_id = await capped.submit()
    resume = (await capped.history(scan_id))[0][0]
    claim = await capped.claim(scan_id)
    await trim_past(capped, claim, resume)
    await capped.complete(claim)
    async with running_notifier(make_settings()) as notifier:
        async with open_stream(notifier.client, scan_id, resume) as stream:
            events = await stream.rest()
        assert [e.event for e in events] == ["reset"]
        assert events[0].id == (await capped.history(scan_id))[-1][0]
        assert json.loads(events[0].data or "")["state"] == "completed"
        again = await notifier.client.get(
            f"/api/scans/{scan_id}/events", headers={"last-event-id": events[0].id or ""}
        )
    assert again.status_code == 204


async def test_resume_inside_the_kept_history_gets_no_reset(
    make_settings: SettingsFactory, capped: Publisher
) -> None:
    """Trimming alone is no reason to reset: a resume point still kept replays normally."""
    scan_id = await capped.submit()
    resume = (await capped.history(scan_id))[0][0]
    claim = await capped.claim(scan_id)
    await trim_past(capped, claim, resume)
    kept = await capped.history(scan_id)
    async with (
        running_notifier(make_settings()) as notifier,
        open_stream(notifier.client, scan_id, kept[0][0]) as stream,
    ):
        replayed = await stream.events(len(kept) - 1)
        await capped.complete(claim)
        rest = await stream.rest()
    assert [(e.id, e.data) for e in replayed + rest] == (await capped.history(scan_id))[1:]
