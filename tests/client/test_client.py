"""labelscan.client against a real gateway, notifier and analyzer: sync, async, errors, resume."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from labelscan.client import AsyncClient, Client
from labelscan.errors import (
    AuthError,
    ConflictError,
    ConnectionLost,
    InvalidRequest,
    NotFound,
    WaitTimeout,
)
from notifier.reset import ScanReset
from shared.embedded import free_port
from shared.keys import Keys
from shared.schemas import Progress, ScanEvent
from tests.client.conftest import KEY, Services, VerdictBackend, running_services, secured
from tests.conftest import SettingsFactory
from tests.support.images import label_png
from tests.support.servers import serve


async def test_async_scan_of_a_file_and_of_bytes_waits_for_findings(
    services: Services, labels: Path
) -> None:
    """A path goes up as multipart named after the file; bytes too; wait() returns findings."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        by_path = await client.scan(
            labels / "bad-1.png", category="toys", marketplaces=["US", "DE"]
        )
        by_bytes = await client.scan(
            label_png(), category="food", marketplaces=["FR"], product_name="ok bytes"
        )
        bad = await client.wait(by_path.scan_id, timeout=30)
        good = await client.wait(by_bytes.scan_id, timeout=30)
    assert by_path.status == "queued" and by_path.events_token
    assert bad.state == "completed" and bad.product_name == "bad-1"
    assert bad.result is not None and bad.result.analysis.verdict == "non_compliant"
    assert [m.marketplace for m in bad.result.analysis.marketplaces] == ["US", "DE"]
    assert good.result is not None and good.result.analysis.verdict == "compliant"
    assert (good.category, good.marketplaces) == ("food", ["FR"])


async def test_sync_client_scans_reads_stats_and_retries_dead_letters(
    services: Services, labels: Path
) -> None:
    """The same API from plain code: scan, wait, get, stats, dead letters, retry, cancel."""

    def use() -> None:
        with Client(services.gateway_url, KEY) as client:
            doomed = client.scan(
                labels / "ok-1.png",
                category="toys",
                marketplaces=["UK"],
                product_name="doomed once",
            )
            failed = client.wait(doomed.scan_id, timeout=30)
            assert failed.state == "failed" and failed.error is not None
            assert failed.error.kind == "backend_error"
            letters = client.dead_letters(count=10)
            assert [d.scan_id for d in letters.items] == [doomed.scan_id]
            assert client.stats().failed == 1
            with pytest.raises(ConflictError) as finished:
                client.cancel(doomed.scan_id)
            assert finished.value.status == 409 and finished.value.field == "scan_id"
            again = client.retry(doomed.scan_id)
            assert again.scan_id == doomed.scan_id and again.status == "queued"
            # Still "doomed": it fails again, which proves the replay ran.
            assert client.wait(doomed.scan_id, timeout=30).state == "failed"
            assert client.get(doomed.scan_id).attempts >= 1

    await asyncio.to_thread(use)
    assert services.backend.calls["doomed once"] == 2


async def test_refusals_are_typed_errors_with_the_api_field(services: Services) -> None:
    """422 names the field, 401 a bad key, 404 an unknown scan; nothing is written."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        with pytest.raises(InvalidRequest) as invalid:
            await client.scan(label_png(), category="weapons", marketplaces=["US"])
        with pytest.raises(InvalidRequest) as market:
            await client.scan(label_png(), category="toys", marketplaces=["MARS"])
        with pytest.raises(NotFound) as missing:
            await client.get("0" * 32)
        assert (await client.stats()).waiting == 0
    async with AsyncClient(services.gateway_url, "not-the-key-0123456789") as stranger:
        with pytest.raises(AuthError) as refused:
            await stranger.stats()
    assert invalid.value.status == 422 and invalid.value.field == "category"
    assert invalid.value.error == "invalid_field" and not invalid.value.retryable
    assert market.value.field == "marketplaces"
    assert missing.value.status == 404 and missing.value.error == "not_found"
    assert refused.value.status == 401


async def test_events_resume_after_the_connection_is_dropped(
    make_settings: SettingsFactory,
) -> None:
    """Cut mid-scan, the iterator reconnects with Last-Event-ID: every event once, in order."""
    backend = VerdictBackend(stage_s=0.6)
    async with (
        running_services(secured(make_settings), backend) as services,
        AsyncClient(services.gateway_url, KEY) as client,
    ):
        accepted = await client.scan(label_png(), category="toys", marketplaces=["US"])
        with pytest.raises(WaitTimeout):  # the scan takes over a second
            await client.wait(accepted.scan_id, timeout=0.3)
        seen: list[ScanEvent | ScanReset] = []
        cut = 0
        async with asyncio.timeout(30):
            async for event in client.events(accepted.scan_id, events_url=accepted.events_url):
                seen.append(event)
                if isinstance(event, ScanEvent) and event.progress.stage == "ocr" and not cut:
                    cut = services.proxy.cut()
        # The whole history, read afresh once the scan is over.
        whole = [e async for e in client.events(accepted.scan_id)]
    assert cut >= 1, "a live connection was dropped"
    assert all(isinstance(e, ScanEvent) for e in seen)
    assert [e.progress.stage for e in seen] == [e.progress.stage for e in whole]
    assert [e.progress.stage for e in seen][-3:] == ["ocr", "checking_rules", "completed"]
    resumed = [r for r in services.proxy.requests if b"GET /api/scans/" in r]
    assert len(resumed) >= 2
    assert b"last-event-id:" in resumed[1].lower()


async def test_events_renew_an_expired_token_and_resume(make_settings: SettingsFactory) -> None:
    """A reconnect refused for an expired token fetches a fresh link and resumes from the id."""
    settings = msgspec.structs.replace(secured(make_settings), event_token_ttl_s=1)
    async with (
        running_services(settings, VerdictBackend(stage_s=2.0)) as services,
        AsyncClient(services.gateway_url, KEY) as client,
    ):
        accepted = await client.scan(label_png(), category="toys", marketplaces=["US"])
        stages: list[str] = []
        async with asyncio.timeout(30):
            async for event in client.events(accepted.scan_id, events_url=accepted.events_url):
                stages.append(event.progress.stage)
                if event.progress.stage == "checking_rules":  # the first token has expired
                    services.proxy.cut()
    assert stages[-3:] == ["ocr", "checking_rules", "completed"]
    assert len(stages) == len(set(stages))
    streams = [r for r in services.proxy.requests if b"/events" in r]
    tokens = {re.search(rb"token=([^ &]+)", r).group(1) for r in streams}  # type: ignore[union-attr]
    assert len(tokens) >= 2, "a fresh token was fetched after the refusal"


async def test_scan_of_a_url_the_analyzer_fetches(services: Services) -> None:
    """An http(s) URL goes as image_url in JSON; the analyzer fetches it."""

    async def image(request: Request) -> Response:
        return Response(label_png(), media_type="image/png")

    async with serve(Starlette(routes=[Route("/label.png", image)])) as origin:

        def use() -> str:
            with Client(services.gateway_url, KEY) as client:
                scan = client.scan(f"{origin.url}/label.png", category="toys", marketplaces=["US"])
                return client.wait(scan.scan_id, timeout=30).product_name

        assert await asyncio.to_thread(use) == "label 1"


async def test_events_from_a_trimmed_resume_point_yield_a_reset(
    services: Services, redis: Redis
) -> None:
    """Resuming from an id the capped history no longer holds gives a ScanReset, not a gap."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        accepted = await client.scan(label_png(), category="toys", marketplaces=["US"])
        await client.wait(accepted.scan_id, timeout=30)
        history = Keys(services.settings.prefix, services.settings.partitions).scan_events(
            accepted.scan_id
        )
        first = (await redis.xrange(history, count=1))[0][0].decode()
        await redis.xtrim(history, maxlen=1, approximate=False)  # what the cap does, sooner
        seen = [e async for e in client.events(accepted.scan_id, last_event_id=first)]
    assert len(seen) == 1 and isinstance(seen[0], ScanReset)
    assert seen[0].state == "completed" and seen[0].progress.percentage == 100


async def test_events_give_up_with_connection_lost(services: Services) -> None:
    """A notifier that cannot be reached ends the iterator with ConnectionLost, not a hang."""
    async with AsyncClient(services.gateway_url, KEY) as client:
        accepted = await client.scan(label_png(), category="toys", marketplaces=["US"])
        nowhere = f"http://127.0.0.1:{free_port()}/api/scans/{accepted.scan_id}/events"
        with pytest.raises(ConnectionLost) as lost:
            async with asyncio.timeout(30):
                async for _ in client.events(accepted.scan_id, events_url=nowhere, max_failures=1):
                    pass
    assert lost.value.retryable


async def test_events_keep_the_servers_retry_and_id_only_blocks_across_reconnects() -> None:
    """A scripted stream: ``retry:``, an event, an id-only ping, a ``reconnect``; the client
    resumes from the ping's id (not the event's) and ignores what is not an event."""
    scan_id = "0" * 26

    def block(stage: str, kind: str, state: str, pct: int) -> str:
        progress = Progress(stage=stage, percentage=pct, message=stage)  # type: ignore[arg-type]
        event = ScanEvent(scan_id=scan_id, type=kind, state=state, progress=progress)  # type: ignore[arg-type]
        return f"event: {kind}\ndata: {msgspec.json.encode(event).decode()}\n"

    asked: list[str | None] = []

    async def stream(request: Request) -> Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            body = (
                "retry: 20\n\n"
                f"id: 1-0\n{block('ocr', 'progress', 'active', 40)}\n"
                ": ping\nid: 5-0\n\n"
                "event: unknown\ndata: {}\n\n"
                'event: reconnect\ndata: {"reason": "draining"}\n\n'
                f"id: 9-0\n{block('ocr', 'progress', 'active', 41)}\n"  # after reconnect: unread
            )
        else:
            body = f"id: 6-0\n{block('completed', 'completed', 'completed', 100)}\n"
        return Response(body, media_type="text/event-stream")

    app = Starlette(routes=[Route("/events", stream)])
    async with serve(app) as server, AsyncClient(server.url) as client:
        async with asyncio.timeout(10):
            seen = [e async for e in client.events(scan_id, events_url=f"{server.url}/events")]
    assert asked == [None, "5-0"]
    assert [e.progress.percentage for e in seen if isinstance(e, ScanEvent)] == [40, 100]


async def test_both_clients_offer_every_operation_with_its_signature() -> None:
    """Each one-request operation is a method of both clients with the same parameters
    and answer type (as help() shows them); the async client's are coroutine functions."""
    operations = {
        "scan": "(image: str | os.PathLike[str] | bytes, *, category: str, "
        "marketplaces: collections.abc.Sequence[str], product_name: str | None = None, "
        "priority: str = 'normal', idempotency_key: str | None = None) "
        "-> shared.schemas.ScanAccepted",
        "batch": "(images: collections.abc.Sequence[str | os.PathLike[str] | bytes], *, "
        "category: str, marketplaces: collections.abc.Sequence[str], "
        "product_names: collections.abc.Sequence[str] | None = None, priority: str = 'normal', "
        "idempotency_key: str | None = None) -> shared.schemas.BatchAccepted",
        "get": "(scan_id: str) -> shared.schemas.ScanDetail",
        "status": "(scan_id: str) -> shared.schemas.ScanStatus",
        "cancel": "(scan_id: str) -> shared.schemas.CancelResult",
        "retry": "(scan_id: str) -> shared.schemas.ScanAccepted",
        "batch_status": "(batch_id: str, cursor: str | None = None) -> shared.schemas.BatchStatus",
        "cancel_batch": "(batch_id: str) -> shared.schemas.BatchCancelled",
        "retry_batch": "(batch_id: str) -> shared.schemas.BatchRetried",
        "stats": "() -> shared.schemas.QueueStats",
        "dead_letters": "(count: int = 50, before: str | None = None) "
        "-> shared.schemas.DeadLetters",
    }
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as sync:
        async with AsyncClient(url) as asynchronous:
            for name, signature in operations.items():
                plain, awaited = getattr(sync, name), getattr(asynchronous, name)
                assert str(inspect.signature(plain)) == signature
                assert str(inspect.signature(awaited)) == signature
                assert plain.__doc__ and plain.__doc__ == awaited.__doc__
                assert not inspect.iscoroutinefunction(plain), name
                assert inspect.iscoroutinefunction(awaited), name
            with pytest.raises(ConnectionLost):
                sync.stats()
            with pytest.raises(ConnectionLost):
                await asynchronous.stats()
            with pytest.raises(ConnectionLost):  # called on the class, as a method can be
                Client.status(sync, "a-scan")
            with pytest.raises(ConnectionLost):
                await AsyncClient.status(asynchronous, "a-scan")
