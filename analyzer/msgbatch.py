"""Low-priority Claude scans sent as provider Message Batches, at half the price.

A low-priority scan is claimed, fetched and prepared like any other; then,
instead of a Messages API call, its request is collected (its stream entry
acknowledged, see :mod:`analyzer.msgbatch_store`) and the worker slot is free.
Up to ``ANTHROPIC_BATCH_MAX`` requests, or what ``ANTHROPIC_BATCH_WINDOW``
brings, go out as one batch; it is polled with backoff until it ends, and each
result, mapped back by ``custom_id`` (the scan id), ends its scan's attempt
through the usual paths: validated and completed, or retried or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import anthropic
import msgspec
import structlog
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.messages.batch_create_params import Request
from opentelemetry import trace
from redis.exceptions import RedisError

from analyzer import metrics
from analyzer.attempts import Claim
from analyzer.backends import AnalysisRequest, Backend
from analyzer.backends.claude import ClaudeBackend
from analyzer.images import PreparedImage
from analyzer.msgbatch_results import BatchReader, api_error
from analyzer.msgbatch_store import BatchedScan, BatchRecord, BatchRegistry
from analyzer.runner import ScanRunner, StaleAttemptError
from shared import events
from shared.errors import RateLimitedError
from shared.schemas import ImageSent, ScanJob

log = structlog.get_logger("analyzer")
tracer = trace.get_tracer("labelscan.analyzer")

MAX_BATCH_BYTES = 200 * 1024 * 1024
"""The API takes 256 MB per batch; images are the bulk, so stay well under it."""
SENT_TRIES = 8
"""Tries to record a created batch's id (backing off from 0.1 s: about 25 s in all)."""


class _Pending(msgspec.Struct, frozen=True, kw_only=True):
    scan: BatchedScan
    params: MessageCreateParamsNonStreaming
    size: int


def make_batcher(runner: ScanRunner, backend: Backend, owner: str) -> Batcher | None:
    """A batcher when low-priority Claude scans are to go in provider batches."""
    s = runner.settings
    if not s.anthropic_batch_low_priority:
        return None
    if not isinstance(backend, ClaudeBackend):
        log.warning(
            "ANTHROPIC_BATCH_LOW_PRIORITY is on, but only the claude backend has batches: "
            "low-priority scans run as the others",
            backend=backend.name,
        )
        return None
    log.info(
        "low-priority scans go to provider Message Batches",
        max=s.anthropic_batch_max,
        window_s=s.anthropic_batch_window_s,
    )
    return Batcher(runner, backend, owner)


class Batcher:
    """Collects low-priority requests, sends them as batches, and settles their results."""

    def __init__(self, runner: ScanRunner, backend: ClaudeBackend, owner: str) -> None:
        s = runner.settings
        self.runner = runner
        self.store = runner.store
        self.settings = s
        self.backend = backend
        self.registry = BatchRegistry(runner.store, owner, s.anthropic_batch_lease_s)
        self.reader = BatchReader(runner, backend, self.registry)
        self._lock = asyncio.Lock()
        self._record_id: str | None = None
        self._pending: list[_Pending] = []
        self._bytes = 0
        self._first = 0.0
        self._added = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closed = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        """Records this replica sends or polls, with the task doing it."""
        self._sending: set[str] = set()
        """Records whose create call is out: a stop waits for them (see :meth:`aclose`)."""
        self._none_sending = asyncio.Event()
        self._none_sending.set()

    def takes(self, job: ScanJob) -> bool:
        """Whether ``job`` goes into a provider batch."""
        return job.priority == "low"

    def tasks(self, stopping: asyncio.Event) -> list[asyncio.Task[None]]:
        """The collector (ends when ``stopping`` is set) and the lease keeper (at aclose)."""
        self._stopping = stopping
        return [
            asyncio.create_task(self._collector()),
            asyncio.create_task(self._keeper()),
        ]

    # --- collecting ------------------------------------------------------------------

    async def collect(self, claim: Claim, prepared: PreparedImage, sent: ImageSent) -> None:
        """Put the scan's request in the batch being collected; its worker slot is free after.

        Raises StaleAttemptError when the attempt no longer owns the scan.
        """
        job = claim.job
        params = self.backend.params(AnalysisRequest.of(job, prepared))
        scan = BatchedScan.of(claim, sent)
        async with self._lock:  # a flush waits: this scan joins the record it is written to
            if self._record_id is None:
                self._record_id = uuid.uuid4().hex
                self._first = time.monotonic()
            record_id = self._record_id
            await self.registry.add(record_id, scan)
            if not await self.registry.park(
                claim, events.collected(self.settings.anthropic_batch_window_s)
            ):
                await self.registry.drop(record_id, [job.scan_id])
                raise StaleAttemptError
            self._pending.append(_Pending(scan=scan, params=params, size=len(prepared.data)))
            self._bytes += len(prepared.data)
        self._added.set()

    def _due_in(self) -> float | None:
        """Seconds until the collected batch goes out; None when nothing is collected."""
        if not self._pending:
            return None
        if len(self._pending) >= self.settings.anthropic_batch_max:
            return 0.0
        if self._bytes >= MAX_BATCH_BYTES:
            return 0.0
        return self._first + self.settings.anthropic_batch_window_s - time.monotonic()

    async def _collector(self) -> None:
        while not self._stopping.is_set():
            due = self._due_in()
            if due is None or due > 0:
                self._added.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._added.wait(), min(due or 1.0, 1.0))
                continue
            async with self._lock:
                record_id, batch = self._record_id, self._pending
                self._record_id, self._pending, self._bytes = None, [], 0
            if record_id is not None and batch:
                self._spawn(record_id, self._send(record_id, batch))

    def _spawn(self, record_id: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._active[record_id] = task
        task.add_done_callback(lambda t: self._ended(record_id, t))

    def _ended(self, record_id: str, task: asyncio.Task[None]) -> None:
        if self._active.get(record_id) is task:
            del self._active[record_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("provider batch task failed", record=record_id, error=repr(task.exception()))

    # --- sending -----------------------------------------------------------------------

    async def _send(self, record_id: str, batch: list[_Pending]) -> None:
        owned = await self.registry.owned([p.scan for p in batch])
        gone = [p.scan.job.scan_id for p, ok in zip(batch, owned, strict=True) if not ok]
        batch = [p for p, ok in zip(batch, owned, strict=True) if ok]
        await self.registry.drop(record_id, gone)  # cancelled while collected: not sent
        if not batch:
            await self.registry.close(record_id)
            return
        await self._acquire()
        self._sending.add(record_id)
        self._none_sending.clear()
        try:
            await self._create(record_id, batch)
        finally:
            self._sent(record_id)

    def _sent(self, record_id: str) -> None:
        self._sending.discard(record_id)
        if not self._sending:
            self._none_sending.set()

    async def _create(self, record_id: str, batch: list[_Pending]) -> None:
        requests: list[Request] = [
            {"custom_id": p.scan.job.scan_id, "params": p.params} for p in batch
        ]
        try:
            created = await self.backend.client.messages.batches.create(requests=requests)
        except anthropic.AnthropicError as exc:
            error = api_error(exc)
            metrics.BATCHES.labels("failed").inc()
            log.warning("provider batch not created", size=len(batch), error=str(error))
            if isinstance(error, RateLimitedError) and self.runner.limiter is not None:
                await self.runner.limiter.pause(error.retry_after or 1.0, "429 from the API")
            for p in batch:
                await self.reader.failed(p.scan, error)
            await self.registry.close(record_id)
            return
        # From here on the batch is only ever polled, by whichever replica holds it.
        await self._record_sent(record_id, created.id)
        self._sent(record_id)
        metrics.BATCHES.labels("created").inc()
        log.info("provider batch created", batch_id=created.id, size=len(batch))
        progress = events.batched(created.id, len(batch))
        await asyncio.gather(*(self.store.progress(p.scan.claim, progress) for p in batch))
        record = BatchRecord(scans={p.scan.job.scan_id: p.scan for p in batch}, batch_id=created.id)
        await self.reader.poll(record_id, record)

    async def _record_sent(self, record_id: str, batch_id: str) -> None:
        """Write the batch id down, trying through a short Redis outage: a batch whose id
        is lost would never be polled, and its scans would be analysed again."""
        pause = 0.1
        for _ in range(SENT_TRIES - 1):
            try:
                await self.registry.sent(record_id, batch_id)
                return
            except RedisError as exc:
                log.warning("could not record a provider batch's id; trying again", error=str(exc))
                await asyncio.sleep(pause)
                pause *= 2
        await self.registry.sent(record_id, batch_id)

    async def _acquire(self) -> None:
        """Count the batch's create call as one request against the shared limiter.

        Its tokens are not booked: the provider counts batch tokens against the
        Message Batches API's own limits, not the per-minute Messages limits.
        """
        limiter = self.runner.limiter
        if limiter is None:
            return
        while True:
            decision = await limiter.try_acquire(0, 0)
            if decision.reservation is not None:
                return
            await asyncio.sleep(min(decision.wait_ms, 1000) / 1000)

    # --- leases, takeover, stop --------------------------------------------------------

    async def _keeper(self) -> None:
        # Runs until aclose, not until stopping: leases are kept through the drain.
        every = self.settings.anthropic_batch_lease_s / 3
        while not self._closed.is_set():
            try:
                await self._renew_and_take_over()
            except RedisError as exc:
                log.warning("could not renew or take over provider batches", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), every)

    async def _renew_and_take_over(self) -> None:
        mine = set(self._active)
        if self._record_id is not None:
            mine.add(self._record_id)
        for record_id in mine:
            held = await self.registry.lease(record_id)
            if held == 1:
                continue
            if held == 0:
                # Unrenewed for a whole lease (this replica stalled): another replica
                # has taken the batch over, so this one lets it go.
                log.warning("lost a provider batch's lease to another replica", record=record_id)
            if record_id in self._active:
                self._active.pop(record_id).cancel()
            async with self._lock:
                if record_id == self._record_id:  # handed back by the new owner
                    self._record_id, self._pending, self._bytes = None, [], 0
        for record_id in await self.registry.expired():
            if record_id in mine or await self.registry.lease(record_id) != 1:
                continue
            record = await self.registry.load(record_id)
            if record is None:
                continue
            if record.batch_id is None:
                await self._hand_back(record_id, record)
            else:
                log.warning(
                    "took over a provider batch; polling it",
                    batch_id=record.batch_id,
                    scans=len(record.scans),
                )
                self._spawn(record_id, self.reader.poll(record_id, record))

    async def _hand_back(self, record_id: str, record: BatchRecord) -> None:
        """A batch never sent (its collector stopped or died): its scans go back to the queue.

        Only attempts that still own their scan are handed back (``release`` checks
        the token), so a scan reclaimed or cancelled meanwhile is left alone.
        """
        handed = 0
        for scan in record.scans.values():
            if await self.store.release(scan.job, scan.entry_id, scan.stream, scan.claim):
                handed += 1
        await self.registry.close(record_id)
        log.warning("handed back the scans of an unsent provider batch", count=handed)

    async def hand_back_collected(self) -> None:
        """Hand the collected, unsent scans back to the queue (a drain or a stop)."""
        async with self._lock:
            record_id, batch = self._record_id, self._pending
            self._record_id, self._pending, self._bytes = None, [], 0
        if record_id is not None:
            await self._hand_back(
                record_id, BatchRecord(scans={p.scan.job.scan_id: p.scan for p in batch})
            )

    async def aclose(self) -> None:
        """On stop: hand back what was collected but not sent; let others poll the rest."""
        self._closed.set()
        await self.hand_back_collected()
        # A create call cut short could leave a batch out whose id Redis never saw:
        # its scans would then be analysed twice. Let it return (bounded by its timeout).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_sending.wait(), self.settings.anthropic_timeout_s)
        for record_id, task in list(self._active.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # Another replica takes it over at its next look, not a lease later.
            await self.registry.lease(record_id, release=True)
