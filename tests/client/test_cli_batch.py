"""Batches from the client and the CLI: these need the gateway's ``/api/batches`` API.

Written against the batch API's contract (POST /api/batches, GET /api/batches/{id});
they pass once that API is in the gateway.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from pathlib import Path

import msgspec
import pytest

from labelscan.client import AsyncClient, Client
from labelscan.errors import InvalidRequest
from shared.schemas import BatchEvent, ScanEvent
from tests.client.conftest import (
    KEY,
    Services,
    VerdictBackend,
    cli_env,
    labelscan,
    running_services,
    secured,
)
from tests.client.test_cli import labelscan_in_terminal
from tests.conftest import SettingsFactory
from tests.support.images import label_png


async def test_cli_batch_progress_summary_and_csv_report(
    services: Services, labels: Path, tmp_path: Path
) -> None:
    """One batch for a directory of labels: progress lines, a summary, a CSV; exit 1 (one bad)."""
    report = tmp_path / "out.csv"
    run = await labelscan(
        "batch",
        str(labels),
        "--category",
        "cosmetics",
        "--marketplace",
        "FR",
        "--report",
        str(report),
        env=cli_env(services.gateway_url),
    )
    assert run.code == 1, run.out + run.err
    assert "\x1b[" not in run.out
    lines = [line.rstrip() for line in run.out.splitlines()]
    assert lines[0].startswith("batch ") and lines[0].endswith(": 3 scans")
    assert any(line.endswith("3/3 done") for line in lines)
    assert any("Batch " in line and "finished" in line for line in lines)
    batch_id = lines[0].split()[1].rstrip(":")
    async with AsyncClient(services.gateway_url, KEY) as client:
        status = await client.batch_status(batch_id)
    summary = run.out[run.out.index("Scans") :]
    # Not compliant first.
    assert summary.index("bad-1.png") < summary.index("ok-1.png") < summary.index("ok-2.png")
    assert "counts: completed 3" in summary
    # The batch's aggregate as the API has it: FR compliant 2, needs_review 0, non_compliant 1.
    verdicts = summary[summary.index("Verdicts per marketplace") :]
    assert re.search(r"FR\W+2\W+0\W+1\W", verdicts), verdicts
    assert re.search(r"FR-MISSING-ADDRESS\W+1\W", summary[summary.index("Most frequent") :])
    assert status.aggregate is not None
    assert status.aggregate.verdicts == {
        "FR": {"compliant": 2, "non_compliant": 1, "needs_review": 0}
    }
    assert [(r.rule, r.count) for r in status.aggregate.top_failing_rules] == [
        ("FR-MISSING-ADDRESS", 1)
    ]
    with report.open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["file", "scan_id", "state", "verdict", "FR", "failed_rules", "error"]
    # One row per label, in the order sent, each with the scan id the batch gave it.
    assert table[1:] == [
        [file, scan_id, "completed", verdict, verdict, rules, ""]
        for file, scan_id, verdict, rules in zip(
            ["bad-1.png", "ok-1.png", "ok-2.png"],
            status.scan_ids,
            ["non_compliant", "compliant", "compliant"],
            ["FR-MISSING-ADDRESS", "", ""],
            strict=True,
        )
    ]


async def test_cli_batch_json_and_json_report(
    services: Services, labels: Path, tmp_path: Path
) -> None:
    """--json prints the report; --report x.json writes the same; all compliant exits 0."""
    report = tmp_path / "out.json"
    files = [str(labels / "ok-1.png"), str(labels / "ok-2.png")]
    run = await labelscan(
        "batch",
        *files,
        "--category",
        "toys",
        "--marketplace",
        "US",
        "--marketplace",
        "DE",
        "--json",
        "--report",
        str(report),
        env=cli_env(services.gateway_url),
    )
    assert run.code == 0, run.err
    printed = json.loads(run.out)
    assert printed == json.loads(report.read_text())
    batch = printed["batch"]
    async with AsyncClient(services.gateway_url, KEY) as client:
        status = await client.batch_status(batch["batch_id"])
    # The report's batch is the API's answer, whole: state, counts, aggregate, scan ids.
    assert batch == json.loads(msgspec.json.encode(status))
    assert batch["state"] == "finished" and batch["total"] == 2 and batch["progress"] == 100
    assert batch["counts"] == {
        "scheduled": 0,
        "queued": 0,
        "active": 0,
        "retrying": 0,
        "completed": 2,
        "failed": 0,
        "cancelled": 0,
        "pending": 0,
    }
    tally = {"compliant": 2, "non_compliant": 0, "needs_review": 0}
    assert batch["aggregate"] == {"verdicts": {"DE": tally, "US": tally}, "top_failing_rules": []}
    assert printed["scans"] == [
        {
            "file": name,
            "scan_id": scan_id,
            "state": "completed",
            "verdict": "compliant",
            "marketplaces": {"US": "compliant", "DE": "compliant"},
            "failed_rules": [],
            "error": None,
        }
        for name, scan_id in zip(["ok-1.png", "ok-2.png"], batch["scan_ids"], strict=True)
    ]


async def test_cli_batch_with_a_failed_scan_exits_2(services: Services, tmp_path: Path) -> None:
    """A scan of the batch that fails makes the batch command exit 2."""
    (tmp_path / "doomed.png").write_bytes(label_png())
    (tmp_path / "ok.png").write_bytes(label_png())
    run = await labelscan(
        "batch",
        str(tmp_path / "doomed.png"),
        str(tmp_path / "ok.png"),
        "--category",
        "toys",
        "--marketplace",
        "US",
        env=cli_env(services.gateway_url),
    )
    assert run.code == 2
    assert "backend_error: the label could not be judged" in run.out


async def test_client_batch_and_status_async_and_sync(services: Services) -> None:
    """AsyncClient.batch accepts all at once; batch_status counts and aggregates them."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        accepted = await client.batch(
            [label_png(), label_png()],
            category="food",
            marketplaces=["FR"],
            product_names=["ok one", "bad two"],
        )
        details = [await client.wait(s, timeout=30) for s in accepted.scan_ids]
        async with asyncio.timeout(30):
            while (status := await client.batch_status(accepted.batch_id)).state == "running":
                await asyncio.sleep(0.1)
    assert [d.product_name for d in details] == ["ok one", "bad two"]
    assert status.total == 2 and status.counts.pending == 0 and status.progress == 100
    assert status.aggregate is not None
    counted = {verdict: n for verdict, n in status.aggregate.verdicts["FR"].items() if n}
    assert counted == {"compliant": 1, "non_compliant": 1}
    assert [r.rule for r in status.aggregate.top_failing_rules] == ["FR-MISSING-ADDRESS"]

    def sync() -> list[str]:
        with Client(services.gateway_url, KEY) as client:
            return client.batch([label_png()], category="toys", marketplaces=["US"]).scan_ids

    assert len(await asyncio.to_thread(sync)) == 1


async def test_refused_batch_names_the_item_and_field(services: Services) -> None:
    """All or nothing: one unreadable image refuses the batch, naming its index."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        with pytest.raises(InvalidRequest) as refused:
            await client.batch([label_png(), b"not an image"], category="toys", marketplaces=["US"])
        assert (await client.stats()).waiting == 0
    assert refused.value.status == 400 and refused.value.error == "invalid_batch"
    assert [e.index for e in refused.value.errors] == [1]
    assert refused.value.errors[0].field


async def test_cli_batch_under_a_terminal_draws_one_overall_bar(
    make_settings: SettingsFactory, labels: Path
) -> None:
    """Under a pseudo-terminal: one rich bar for the whole batch, then the summary table."""
    async with running_services(secured(make_settings), VerdictBackend(stage_s=0.5)) as services:
        code, screen = await labelscan_in_terminal(
            "batch",
            str(labels),
            "--category",
            "toys",
            "--marketplace",
            "US",
            gateway_url=services.gateway_url,
        )
    assert code == 1, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"\rbatch +━+.* +\d+% [0-3]/3 done", plain), plain
    assert "3/3 done" in plain and "bad-1.png" in plain


async def test_client_reads_every_batch_answer_of_the_api(services: Services) -> None:
    """Replay (200), too few scans (422), the event stream's counts and its final event."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        with pytest.raises(InvalidRequest) as empty:
            await client.batch([], category="toys", marketplaces=["US"])
        first = await client.batch(
            [label_png(), label_png()],
            category="toys",
            marketplaces=["US"],
            product_names=["ok a", "doomed b"],
            idempotency_key="replay-me",
        )
        again = await client.batch(
            [label_png(), label_png()],
            category="toys",
            marketplaces=["US"],
            product_names=["ok a", "doomed b"],
            idempotency_key="replay-me",
        )
        async with asyncio.timeout(30):
            events = [e async for e in client.batch_events(first.events_url)]
        status = await client.batch_status(first.batch_id)
        retried = await client.retry_batch(first.batch_id)
        cancelled = await client.cancel_batch(first.batch_id)
    assert empty.value.status == 422 and empty.value.field == "scans"
    assert again.batch_id == first.batch_id and again.scan_ids == first.scan_ids
    ends = {e.scan_id: e.type for e in events if isinstance(e, ScanEvent)}
    assert ends == {first.scan_ids[0]: "completed", first.scan_ids[1]: "failed"}
    last = events[-1]
    assert isinstance(last, BatchEvent) and last.type == "batch.completed"
    assert (last.counts.completed, last.counts.failed, last.counts.pending) == (1, 1, 0)
    assert last.state == "finished" and last.progress == 100
    assert status.state == "finished" and status.finished_at is not None
    assert (status.counts.completed, status.counts.failed, status.counts.queued) == (1, 1, 0)
    assert status.scan_ids == first.scan_ids
    # The failed scan queued again, then cancelled unless it had already failed again.
    assert retried.batch_id == first.batch_id and retried.scan_ids == [first.scan_ids[1]]
    assert cancelled.batch_id == first.batch_id
    assert cancelled.cancelled == cancelled.counts.cancelled
    assert cancelled.counts.cancelled + cancelled.counts.failed == 1
    assert cancelled.counts.completed == 1 and cancelled.counts.pending == 0
