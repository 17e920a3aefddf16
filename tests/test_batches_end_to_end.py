"""A batch through the whole path: gateway, real analyzers, the notifier's batch stream."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import msgspec

from analyzer.backends import Analysis, AnalysisRequest, Report
from shared.errors import BackendError
from shared.schemas import (
    BatchEvent,
    Finding,
    LabelAnalysis,
    MarketplaceReport,
    ScanEvent,
    Usage,
)
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.sse import Message, open_batch_stream
from tests.support.stack import Stack, running_stack

B64 = base64.b64encode(label_png()).decode()
RULES = {"US": "US-CPSIA-TRACKING", "DE": "EU-GPSR-ADDRESS"}


class VerdictBackend:
    """Compliant for "ok-*", non-compliant with one failing rule per market for "bad-*";
    "boom-*" fails for good until ``healed``; every answer after ``delay_s``."""

    name = "verdicts"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.healed = False

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Answer by the product name's prefix."""
        await asyncio.sleep(self.delay_s)
        kind = request.product_name.split("-")[0]
        if kind == "boom" and not self.healed:
            raise BackendError("the label could not be analysed")
        bad = kind == "bad"
        reports = [
            MarketplaceReport(
                marketplace=market,
                verdict="non_compliant" if bad else "compliant",
                findings=[
                    Finding(
                        rule=RULES[market],
                        requirement="r",
                        status="fail" if bad else "pass",
                        severity="major",
                        evidence="",
                        fix="",
                        regulation="",
                    )
                ],
            )
            for market in request.marketplaces
        ]
        analysis = LabelAnalysis(
            verdict="non_compliant" if bad else "compliant",
            summary="",
            detected_text="",
            marketplaces=reports,
        )
        return Analysis(analysis=analysis, usage=Usage(), model="test")

    async def warm_up(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""


def body(*names: str) -> dict[str, Any]:
    """A batch of scans named ``names``, for US and DE."""
    return {
        "scans": [{"image_base64": B64, "product_name": name} for name in names],
        "defaults": {"category": "toys", "marketplaces": ["US", "DE"]},
    }


async def batch_events(
    client: httpx.AsyncClient, batch_id: str, last_event_id: str | None = None
) -> list[Message]:
    """Every event of the batch's stream (after ``last_event_id``) until it ends."""
    async with open_batch_stream(client, batch_id, last_event_id) as stream:
        assert stream.response.status_code == 200
        return await stream.rest(within=30)


async def wait_state(stack: Stack, batch_id: str, state: str) -> dict[str, Any]:
    """Poll the batch until it is in ``state``."""
    async with asyncio.timeout(30):
        while True:
            status: dict[str, Any] = (await stack.client.get(f"/api/batches/{batch_id}")).json()
            if status["state"] == state:
                return status
            await asyncio.sleep(0.05)


async def test_batch_runs_to_completion_with_aggregate_events_and_retry(
    make_settings: SettingsFactory,
) -> None:
    """Six scans end (one fails); the stream tells each end and the progress, then the end;
    the aggregate counts verdicts and failing rules; retry replays the failed one."""
    backend = VerdictBackend(delay_s=0.05)
    settings = make_settings(max_attempts=1)
    async with running_stack(settings, backend=backend) as stack:
        names = ("ok-1", "ok-2", "bad-1", "bad-2", "bad-3", "boom-1")
        accepted = (await stack.client.post("/api/batches", json=body(*names))).json()
        batch_id, scan_ids = accepted["batch_id"], accepted["scan_ids"]
        messages = await batch_events(stack.events, batch_id)

        kinds = [m.event for m in messages]
        assert kinds[0] == "batch"  # where it stood when accepted: nothing ended
        assert kinds[-1] == "batch.completed"
        ends = [
            msgspec.json.decode(m.data or "", type=ScanEvent)
            for m in messages
            if m.event in ("completed", "failed")
        ]
        assert sorted(e.scan_id for e in ends) == sorted(scan_ids)
        assert [e.type for e in ends].count("failed") == 1
        progress = [
            msgspec.json.decode(m.data or "", type=BatchEvent)
            for m in messages
            if m.event in ("batch", "batch.completed")
        ]
        assert [p.progress for p in progress] == sorted(p.progress for p in progress)
        assert [p.counts.pending for p in progress[:-1]] == [6, 5, 4, 3, 2, 1, 0]
        final = progress[-1]
        assert final.state == "finished"
        assert (final.counts.completed, final.counts.failed, final.progress) == (5, 1, 100)

        status = await wait_state(stack, batch_id, "finished")
        assert status["counts"]["completed"] == 5
        assert status["counts"]["failed"] == 1
        assert status["progress"] == 100
        assert status["finished_at"].endswith("Z")
        aggregate = status["aggregate"]
        assert aggregate["verdicts"] == {
            "DE": {"compliant": 2, "non_compliant": 3, "needs_review": 0},
            "US": {"compliant": 2, "non_compliant": 3, "needs_review": 0},
        }
        assert aggregate["top_failing_rules"] == [
            {"rule": "EU-GPSR-ADDRESS", "count": 3},
            {"rule": "US-CPSIA-TRACKING", "count": 3},
        ]

        backend.healed = True
        retried = await stack.client.post(f"/api/batches/{batch_id}/retry")
        assert retried.status_code == 202
        assert retried.json()["scan_ids"] == [scan_ids[5]]
        # Resumed after the first end: the replay's progress, its end, the batch's new end.
        more = await batch_events(stack.events, batch_id, last_event_id=messages[-1].id)
        assert [m.event for m in more] == ["batch", "completed", "batch", "batch.completed"]
        status = await wait_state(stack, batch_id, "finished")
        assert status["counts"]["completed"] == 6
        assert status["aggregate"]["verdicts"]["US"]["compliant"] == 3
        nothing = (await stack.client.post(f"/api/batches/{batch_id}/retry")).json()
        assert nothing["scan_ids"] == []


async def test_cancel_stops_what_has_not_finished(make_settings: SettingsFactory) -> None:
    """DELETE cancels queued and running scans alike; the batch ends as cancelled."""
    backend = VerdictBackend(delay_s=30)
    settings = make_settings(worker_concurrency=2)
    async with running_stack(settings, backend=backend) as stack:
        made = await stack.client.post("/api/batches", json=body("ok-1", "ok-2", "ok-3", "ok-4"))
        accepted = made.json()
        batch_id = accepted["batch_id"]
        async with asyncio.timeout(10):
            while True:
                status = (await stack.client.get(f"/api/batches/{batch_id}")).json()
                if status["counts"]["active"] == 2:  # two running, two queued
                    break
                await asyncio.sleep(0.05)
        cancelled = await stack.client.delete(f"/api/batches/{batch_id}")
        assert cancelled.status_code == 200
        answer = cancelled.json()
        assert answer["cancelled"] == 4
        assert answer["state"] == "cancelled"
        assert answer["counts"]["cancelled"] == 4
        messages = await batch_events(stack.events, batch_id)
        end = msgspec.json.decode(messages[-1].data or "", type=BatchEvent)
        assert (end.type, end.state, end.counts.cancelled) == ("batch.completed", "cancelled", 4)
        for scan_id in accepted["scan_ids"]:
            detail = (await stack.client.get(f"/api/scans/{scan_id}")).json()
            assert detail["state"] == "cancelled"
        again = (await stack.client.delete(f"/api/batches/{batch_id}")).json()
        assert again["cancelled"] == 0
