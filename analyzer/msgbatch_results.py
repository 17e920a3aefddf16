"""Reading a provider Message Batch: polled with backoff, each result settled as usual.

Each result is mapped back to its scan by ``custom_id`` and ends the scan's
attempt through the paths a single call takes: schema validation, then
``complete`` (``batch: true``, cost at half price), or ``retry``/``fail`` by the
runner's one policy. Every write is guarded by the attempt's token, so reading
the results twice (after a takeover) settles each scan once.
"""

from __future__ import annotations

import asyncio
import time

import anthropic
import structlog
from anthropic.types import Message
from anthropic.types.messages import (
    MessageBatchErroredResult,
    MessageBatchExpiredResult,
    MessageBatchIndividualResponse,
    MessageBatchResult,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from analyzer import metrics
from analyzer.backends.claude import ClaudeBackend, status_error
from analyzer.msgbatch_store import BatchedScan, BatchRecord, BatchRegistry
from analyzer.runner import Reports, ScanRunner, StaleAttemptError
from shared.clock import now_ms
from shared.errors import (
    BackendError,
    BackendUnavailableError,
    LabelscanError,
    RetryableError,
)
from shared.schemas import Progress, ScanResult
from shared.tracing import extract

log = structlog.get_logger("analyzer")
tracer = trace.get_tracer("labelscan.analyzer")

RETRYABLE_TYPES = frozenset({"api_error", "overloaded_error", "rate_limit_error", "timeout_error"})
"""A batch request that errored with one of these may succeed when tried again."""
BATCHED_PCT = 40


class BatchReader:
    """Polls sent batches and settles their scans' attempts."""

    def __init__(self, runner: ScanRunner, backend: ClaudeBackend, registry: BatchRegistry) -> None:
        self.runner = runner
        self.store = runner.store
        self.settings = runner.settings
        self.backend = backend
        self.registry = registry

    async def poll(self, record_id: str, record: BatchRecord) -> None:
        """Poll the batch with backoff until it ends, settle every scan, close its record."""
        assert record.batch_id is not None
        s = self.settings
        delay = s.anthropic_batch_poll_s
        batches = self.backend.client.messages.batches
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, s.anthropic_batch_poll_max_s)
            try:
                batch = await batches.retrieve(record.batch_id)
                if batch.processing_status != "ended":
                    continue
                seen: set[str] = set()
                async for item in await batches.results(record.batch_id):
                    if item.custom_id in record.scans and item.custom_id not in seen:
                        seen.add(item.custom_id)
                        await self._settle(record.batch_id, record.scans[item.custom_id], item)
            except anthropic.AnthropicError as exc:
                error = api_error(exc)
                if isinstance(error, RetryableError):
                    log.warning("provider batch poll failed; polling again", error=str(error))
                    continue
                log.error(
                    "provider batch cannot be read", batch_id=record.batch_id, error=str(error)
                )
                # Not the scans' fault: each tries again (bounded by SCAN_MAX_ATTEMPTS).
                lost = BackendUnavailableError(
                    f"provider batch {record.batch_id} cannot be read: {error}"
                )
                for scan in record.scans.values():
                    await self.failed(scan, lost)
                await self.registry.close(record_id)
                return
            except RedisError as exc:
                log.warning("redis error while settling a batch; trying again", error=str(exc))
                continue
            for scan_id, scan in record.scans.items():
                if scan_id not in seen:
                    await self.failed(
                        scan,
                        BackendUnavailableError(f"provider batch {record.batch_id} has no result"),
                    )
            metrics.BATCHES.labels("ended").inc()
            log.info("provider batch ended", batch_id=record.batch_id, results=len(seen))
            await self.registry.close(record_id)
            return

    async def _settle(
        self, batch_id: str, scan: BatchedScan, item: MessageBatchIndividualResponse
    ) -> None:
        """End one scan's attempt with its result; a no-op if it is no longer its owner."""
        claim = scan.claim
        structlog.contextvars.bind_contextvars(scan_id=claim.job.scan_id, attempt=claim.attempt)
        try:
            result = item.result
            if result.type != "succeeded":
                await self.failed(scan, _result_error(result, batch_id))
                return
            await self._complete(batch_id, scan, result.message)
        except (RedisError, asyncio.CancelledError):
            raise  # the whole result set is read again (each outcome is written once)
        except Exception as exc:
            # A bug or an unexpected answer: fail this scan rather than every takeover.
            log.exception("batched scan crashed")
            await self.failed(scan, BackendError(f"{type(exc).__name__}: {exc}"))
        finally:
            structlog.contextvars.unbind_contextvars("scan_id", "attempt")

    async def _complete(self, batch_id: str, scan: BatchedScan, message: Message) -> None:
        claim = scan.claim

        async def publish(progress: Progress) -> None:
            if not await self.store.progress(claim, progress):
                raise StaleAttemptError

        report = Reports(publish, BATCHED_PCT)

        try:
            # A child of the scan's trace (its accept span), like the attempt that collected it.
            with tracer.start_as_current_span(
                f"batch result {message.model}",
                context=extract(claim.job.trace),
                kind=SpanKind.CLIENT,
                attributes={"labelscan.scan_id": claim.job.scan_id, "labelscan.batch_id": batch_id},
            ) as span:
                outcome = await self.backend.to_analysis(
                    message, claim.job.marketplaces, report, span, f"provider batch {batch_id}"
                )
            result = ScanResult(
                analysis=outcome.analysis,
                backend=self.backend.name,
                model=outcome.model,
                usage=outcome.usage,
                duration_ms=max(now_ms() - scan.claimed_ms, 0),
                image=scan.image,
                batch=True,
            )
            if not await self.store.complete(claim, result, report.held):
                raise StaleAttemptError
        except LabelscanError as exc:
            await self.failed(scan, exc, report.held)
            return
        except StaleAttemptError:
            log.info("batched scan no longer owned (cancelled, or settled by another replica)")
            return
        metrics.spent(self.settings, outcome.model, outcome.usage, batch=True)
        self.runner.finished(claim, "completed", _started(scan))
        log.info("scan completed", verdict=result.analysis.verdict, batch_id=batch_id)

    async def failed(
        self, scan: BatchedScan, error: LabelscanError, held: Progress | None = None
    ) -> None:
        """Retry or dead-letter the scan as for any failed attempt (``held``: a progress
        report still to publish first)."""
        try:
            await self.runner.failed(scan.claim, error, BATCHED_PCT, _started(scan), held)
        except StaleAttemptError:
            log.info("batched scan no longer owned; its outcome is discarded")

    # --- leases, takeover, stop --------------------------------------------------------


def _started(scan: BatchedScan) -> float:
    """The attempt's start on the monotonic clock (for the duration metric)."""
    return time.monotonic() - max(now_ms() - scan.claimed_ms, 0) / 1000


def api_error(exc: anthropic.AnthropicError) -> LabelscanError:
    """A labelscan error for a failed call of the Message Batches API."""
    if isinstance(exc, anthropic.APIStatusError):
        return status_error(exc)
    if isinstance(exc, anthropic.APIConnectionError):  # timeouts included
        return BackendUnavailableError(f"Claude API unreachable: {type(exc).__name__}: {exc}")
    return BackendError(f"Claude SDK error: {type(exc).__name__}: {exc}")


def _result_error(result: MessageBatchResult, batch_id: str) -> LabelscanError:
    """The error of a batch request that did not succeed: retryable unless it was invalid."""
    if isinstance(result, MessageBatchErroredResult):
        error = result.error.error
        message = f"Claude batch request {error.type}: {error.message} (batch {batch_id})"
        if error.type in RETRYABLE_TYPES:
            return BackendUnavailableError(message)
        return BackendError(message)
    if isinstance(result, MessageBatchExpiredResult):
        return BackendUnavailableError(f"provider batch {batch_id} expired before this request ran")
    return BackendUnavailableError(
        f"provider batch {batch_id} was cancelled before this request ran"
    )
