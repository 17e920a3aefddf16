"""Replicas are interchangeable: a client hopping between two reads every event once."""

from __future__ import annotations

import asyncio
from collections import Counter

from shared.settings import Settings
from tests.notifier.conftest import running_notifier
from tests.notifier.scans import Publisher
from tests.support.sse import Message, open_stream

STEPS = 60


async def test_alternating_between_two_replicas_gets_every_event_once_in_order(
    settings: Settings, publisher: Publisher
) -> None:
    """Reconnect to the other replica with Last-Event-ID after every few events, while the
    scan publishes: the concatenation is exactly the scan's history."""
    scan_id = await publisher.submit()
    claim = await publisher.claim(scan_id)

    async def produce() -> None:
        for step in range(STEPS):
            await publisher.progress(claim, step, f"step {step}")
            await asyncio.sleep(0.005)
        await publisher.complete(claim)

    got: list[Message] = []
    served: Counter[int] = Counter()
    async with running_notifier(settings) as a, running_notifier(settings) as b:
        producer = asyncio.create_task(produce())
        hops = 0
        while not got or got[-1].event != "completed":
            replica = (a, b)[hops % 2]
            last = got[-1].id if got else None
            async with open_stream(replica.client, scan_id, last) as stream:
                # 1 to 3 events per visit: some hops land in replay, some in live events.
                for _ in range(1 + hops % 3):
                    event = await stream.next_event(within=10)
                    assert event is not None, "a scan stream ends only after its last event"
                    got.append(event)
                    served[hops % 2] += 1
                    if event.event == "completed":
                        break
            hops += 1
        await producer
    history = await publisher.history(scan_id)
    assert [(e.id, e.data) for e in got] == history
    assert len(history) == STEPS + 3  # queued, claimed, the steps, completed
    assert hops >= 20 and min(served.values()) >= 10, (hops, served)
