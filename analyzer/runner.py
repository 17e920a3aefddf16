"""One scan attempt, from claimed entry to outcome: fetch, analyse, publish, finish."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from redis.exceptions import RedisError

from analyzer import metrics
from analyzer.attempts import AttemptStore, Claim
from analyzer.backends import Analysis, AnalysisRequest, Backend, Report
from analyzer.fetch import ImageFetcher
from analyzer.images import PreparedImage, as_is, prepare_image
from analyzer.ratelimit import RateLimiter, Reservation
from analyzer.retry import backoff_delay, should_retry
from shared.clock import now_ms
from shared.errors import InvalidImageError, LabelscanError, RateLimitedError, RetryableError
from shared.images import sniff_image
from shared.schemas import ImageSent, Progress, ScanError, ScanJob, ScanResult, Stage
from shared.settings import Settings
from shared.tracing import extract, trace_id_of

if TYPE_CHECKING:
    from analyzer.msgbatch import Batcher

log = structlog.get_logger("analyzer")
# A no-op tracer until (unless) shared.tracing installs the SDK's provider.
tracer = trace.get_tracer("labelscan.analyzer")

FETCHING = Progress(stage="fetching", percentage=10, message="Fetching the label image")
ANALYZING = Progress(stage="analyzing", percentage=30, message="Analysing the label")
HELD: frozenset[Stage] = frozenset({"parsing"})
"""Stages published with the attempt's end, not on their own: a backend reports
``parsing`` once its answer is in, and what follows is a few milliseconds of local
checks, so the event goes out in the end's script call, in the same order (one
script call fewer per scan: 3 to 2 in ``bench.hotpath``)."""
LIMIT_RECHECK_MS = 1000
"""Longest sleep between two asks of the rate limiter (limits change at runtime)."""
UNTRACED = contextlib.nullcontext(trace.INVALID_SPAN)


class StaleAttemptError(Exception):
    """This attempt no longer owns the scan (cancelled, or reclaimed by another worker)."""


class ScanRunner:
    """Runs claimed scans against a backend, reporting each stage through the store."""

    def __init__(
        self, store: AttemptStore, backend: Backend, fetcher: ImageFetcher, settings: Settings
    ) -> None:
        self.store = store
        self.backend = backend
        self.fetcher = fetcher
        self.settings = settings
        # Without tracing no span is made at all: the API's no-op spans still cost
        # about 25 µs a scan (an eighth of the analyzer's CPU per simulated scan).
        self.traced = settings.tracing
        self._duration = metrics.SCAN_DURATION.labels(backend.name)
        # Calls to the real API always honour the fleet-wide pause a 429 sets;
        # configured limits apply to whatever backend runs.
        self.limiter: RateLimiter | None = None
        if settings.rate_limited or backend.name == "claude":
            self.limiter = RateLimiter(store.run, store.keys, settings, controls=store.controls)
        self.batcher: Batcher | None = None
        """Set by the worker when low-priority scans go to provider batches."""

    async def run(
        self, job: ScanJob, entry_id: str, stream: str, consumer: str, attempts: int = -1
    ) -> None:
        """Claim and run one delivered entry; every outcome ends in a stored state.

        ``attempts`` is the count the entry was queued with (-1: unknown). Redis
        errors propagate: the entry then stays pending and is delivered again.
        """
        claim = await self.store.claim(
            job, entry_id, stream, consumer, (FETCHING, ANALYZING), attempts=attempts
        )
        if claim is None:
            log.debug("skipped", scan_id=job.scan_id, reason="finished, cancelled or superseded")
            return
        # The trace id comes from the entry, not from a span: the scan's log lines
        # carry it even where this analyzer does not trace.
        trace_id = trace_id_of(job.trace)
        structlog.contextvars.bind_contextvars(
            scan_id=job.scan_id,
            attempt=claim.attempt,
            **({"trace_id": trace_id} if trace_id is not None else {}),
        )
        if claim.attempt == 1 and job.submitted_at_ms:
            metrics.QUEUE_WAIT.observe(max(now_ms() - job.submitted_at_ms, 0) / 1000)
        span = self._attempt_span(claim, stream) if self.traced else trace.INVALID_SPAN
        try:
            if self.traced:
                with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                    await self._run(claim, entry_id, stream, span)
            else:
                await self._run(claim, entry_id, stream, span)
        finally:
            span.end()
            structlog.contextvars.unbind_contextvars("scan_id", "attempt", "trace_id")

    def _attempt_span(self, claim: Claim, stream: str) -> Span:
        job = claim.job
        parent = extract(job.trace)
        if claim.attempt == 1 and job.submitted_at_ms and job.trace is not None:
            # Accept to first claim, drawn after the fact: nothing runs while a scan waits.
            tracer.start_span(
                "scan queue wait", context=parent, start_time=job.submitted_at_ms * 1_000_000
            ).end()
        # Each attempt is a child of the gateway's accept span, so retries (and
        # redeliveries after a crash) are siblings in the scan's one trace.
        return tracer.start_span(
            "scan attempt",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "labelscan.scan_id": job.scan_id,
                "labelscan.attempt": claim.attempt,
                "labelscan.backend": self.backend.name,
                "messaging.destination.name": stream,
                "messaging.message.id": claim.entry_id,
            },
        )

    async def _run(self, claim: Claim, entry_id: str, stream: str, span: Span) -> None:
        job = claim.job
        try:
            if claim.exhausted:
                await self._give_up(claim)
                return
            await self._attempt(claim)
        except StaleAttemptError:
            # One policy for every refused write: the scan moved on (cancelled,
            # reclaimed by another analyzer, handed back); whoever owns it now
            # decides its outcome, so this attempt's is dropped, not retried.
            log.warning("attempt no longer owns the scan; its outcome is discarded")
            span.set_attribute("labelscan.outcome", "stale")
        except asyncio.CancelledError:
            # Cancelled by the user (the token is gone: this is a no-op) or by a
            # stopping worker (the entry is handed back for immediate redelivery).
            span.set_attribute("labelscan.outcome", "interrupted")
            if await self.store.release(job, entry_id, stream, claim):
                metrics.ATTEMPTS.labels("handed_back").inc()
            log.info("scan attempt interrupted")
            raise
        except BaseException as exc:  # Redis down: the entry stays pending, delivered again
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise

    async def _give_up(self, claim: Claim) -> None:
        message = (
            f"delivered {claim.attempt} times without an outcome "
            "(an analyzer crashed or stalled on it each time)"
        )
        _outcome("dead_lettered", "poison", message)
        with self._span("scan finish"):
            if not await self.store.fail(claim, ScanError(kind="poison", message=message), 0):
                raise StaleAttemptError
        metrics.finished(self.settings, "dead_lettered", self.backend.name, claim.job.tenant)
        log.error("scan dead-lettered", kind="poison", attempts=claim.attempt)

    async def _attempt(self, claim: Claim) -> None:
        job = claim.job
        started = time.monotonic()
        log.info("scan started", backend=self.backend.name)
        # With a stored image the claim already published ANALYZING.
        report = Reports(
            functools.partial(self._report, claim),
            (FETCHING if claim.image is None else ANALYZING).percentage,
        )
        lap = metrics.StageClock()
        try:
            image = await self._image(claim)
            lap("fetch")
            if claim.image is None:  # else the claim published it: an upload needs no fetch
                await report.publish(ANALYZING)
            prepared = await self._prepare(image)
            lap("prepare")
            sent = ImageSent(
                media_type=prepared.media_type,
                width=prepared.width,
                height=prepared.height,
                bytes=len(prepared.data),
                token_estimate=prepared.token_estimate,
            )
            if await self._batched(claim, prepared, sent):
                return
            reservation = await self._acquire(claim, prepared.token_estimate)
            lap("ratelimit")
            outcome = await self._call(job, prepared, reservation, report)
            lap("analyze")
            result = ScanResult(
                analysis=outcome.analysis,
                backend=self.backend.name,
                model=outcome.model,
                usage=outcome.usage,
                duration_ms=int((time.monotonic() - started) * 1000),
                image=sent,
            )
            with self._span("scan finish"):
                if not await self.store.complete(claim, result, report.held):
                    raise StaleAttemptError
            lap("finish")
            trace.get_current_span().set_attribute("labelscan.outcome", "completed")
            self.finished(claim, "completed", started)
            log.info(
                "scan completed", verdict=result.analysis.verdict, duration_ms=result.duration_ms
            )
        except LabelscanError as exc:
            await self.failed(claim, exc, report.pct, started, report.held)
        except (RedisError, asyncio.CancelledError, StaleAttemptError):
            raise
        except Exception as exc:
            # A bug or an unexpected library error: record it rather than crash the worker.
            log.exception("scan crashed")
            error = ScanError(kind="internal", message=f"{type(exc).__name__}: {exc}")
            trace.get_current_span().record_exception(exc)
            _outcome("failed", error.kind, error.message)
            with self._span("scan finish"):
                if not await self.store.fail(claim, error, report.pct, report.held):
                    raise StaleAttemptError from exc
            self.finished(claim, "failed", started)

    async def _image(self, claim: Claim) -> bytes:
        """The stored upload, or the image fetched from its URL; checked to be an image."""
        if claim.image is not None:
            image = claim.image
        else:
            with self._span("fetch image"):
                image = await self._fetch(claim.job)
        if sniff_image(image) is None:
            raise InvalidImageError("stored image is not a PNG, JPEG, GIF or WebP")
        return image

    async def _batched(self, claim: Claim, prepared: PreparedImage, sent: ImageSent) -> bool:
        """Hand the request to a provider batch if it goes in one; True if it did."""
        if self.batcher is None or not self.batcher.takes(claim.job):
            return False
        # The request waits in a provider batch, not in this worker's slot.
        await self.batcher.collect(claim, prepared, sent)
        trace.get_current_span().set_attribute("labelscan.outcome", "batched")
        log.info("scan collected for a provider batch")
        return True

    async def _call(
        self,
        job: ScanJob,
        prepared: PreparedImage,
        reservation: Reservation | None,
        report: Report,
    ) -> Analysis:
        """The backend's analysis, with the limiter told what it cost (or that it got a 429)."""
        try:
            outcome = await self.backend.analyze(
                AnalysisRequest.of(job, prepared),
                report,
            )
        except RateLimitedError as exc:
            if self.limiter is not None:
                await self.limiter.pause(exc.retry_after or 1.0, "429 from the API")
            raise
        metrics.spent(self.settings, outcome.model, outcome.usage)
        if self.limiter is not None and reservation is not None:
            await self.limiter.settle(reservation, outcome.usage)
            await self.limiter.observe(outcome.limits, reservation.input_tokens)
        return outcome

    def finished(self, claim: Claim, outcome: str, started: float) -> None:
        """Count a scan's outcome and how long its deciding attempt took."""
        self._duration.observe(time.monotonic() - started)
        metrics.finished(self.settings, outcome, self.backend.name, claim.job.tenant)

    async def failed(
        self,
        claim: Claim,
        exc: LabelscanError,
        pct: int,
        started: float,
        held: Progress | None = None,
    ) -> None:
        """Retry the scan, or fail (dead-letter) it: one policy for every attempt's error;
        ``held`` is a progress report still to publish, before the outcome.

        Raises StaleAttemptError when the attempt no longer owns the scan.
        """
        s = self.settings
        retryable = should_retry(exc, claim.attempt, s.max_attempts)
        error = ScanError(
            kind=exc.kind, message=str(exc), retryable=isinstance(exc, RetryableError)
        )
        if retryable:
            delay = backoff_delay(
                claim.attempt,
                base_s=s.retry_base_s,
                cap_s=s.retry_cap_s,
                retry_after=exc.retry_after if isinstance(exc, RetryableError) else None,
            )
            _outcome("retried", exc.kind, str(exc))
            trace.get_current_span().set_attribute("labelscan.retry_delay_s", delay)
            with self._span("scan finish"):
                if not await self.store.retry(claim, error, delay, held):
                    raise StaleAttemptError from exc
            metrics.ATTEMPTS.labels("retried").inc()
            log.warning(
                "scan will be retried", kind=exc.kind, error=str(exc), delay_s=round(delay, 2)
            )
        else:
            # A retryable error that ran out of attempts is dead-lettered; any other, failed.
            outcome = "dead_lettered" if isinstance(exc, RetryableError) else "failed"
            _outcome(outcome, exc.kind, str(exc))
            with self._span("scan finish"):
                if not await self.store.fail(claim, error, pct, held):
                    raise StaleAttemptError from exc
            self.finished(claim, outcome, started)
            log.warning("scan failed", kind=exc.kind, error=str(exc))

    async def _acquire(self, claim: Claim, image_tokens: int) -> Reservation | None:
        if self.limiter is None:
            return None
        with self._span("rate-limit wait") as span:
            return await self._acquire_in(claim, image_tokens, span)

    async def _acquire_in(self, claim: Claim, image_tokens: int, span: Span) -> Reservation:
        assert self.limiter is not None
        input_tokens, output_tokens = self.limiter.estimate(image_tokens)
        span.set_attributes(
            {
                "labelscan.ratelimit.input_tokens": input_tokens,
                "labelscan.ratelimit.output_tokens": output_tokens,
            }
        )
        told = False
        waited_s = 0.0
        while True:
            decision = await self.limiter.try_acquire(input_tokens, output_tokens)
            if decision.reservation is not None:
                span.set_attribute("labelscan.ratelimit.waited_s", waited_s)
                return decision.reservation
            if not told:  # one event per wait, not one per check
                told = True
                await self._report(
                    claim,
                    Progress(
                        stage="waiting",
                        percentage=ANALYZING.percentage,
                        message=f"Waiting for capacity ({decision.reason}), "
                        f"about {decision.wait_ms / 1000:.1f}s",
                    ),
                )
            # One event per wait, with its reason: the span's length is the total wait.
            span.add_event("waiting", {"reason": decision.reason, "wait_ms": decision.wait_ms})
            # Asked again at least every second: a limit an operator raises at runtime
            # frees waiting scans at once, not after a wait computed under the old one.
            slept_s = min(decision.wait_ms, LIMIT_RECHECK_MS) / 1000
            await asyncio.sleep(slept_s)
            waited_s += slept_s
            metrics.RATELIMIT_WAIT.labels(metrics.wait_reason(decision.reason)).inc(slept_s)

    def _span(self, name: str) -> contextlib.AbstractContextManager[Span]:
        """A child span of the attempt's, made current; a no-op without tracing."""
        return tracer.start_as_current_span(name) if self.traced else UNTRACED

    async def _prepare(self, image: bytes) -> PreparedImage:
        """The image as sent: oriented, downscaled and re-encoded if it does not fit as it is."""
        with self._span("prepare image") as span:
            # Decoding and re-encoding are CPU-bound: off the event loop, so other scans
            # keep moving; an image that already fits is sent as it is.
            prepared = as_is(image)
            if prepared is None:
                prepared = await asyncio.to_thread(prepare_image, image)
            if self.traced:
                span.set_attributes(
                    {
                        "labelscan.image.bytes_in": len(image),
                        "labelscan.image.bytes_out": len(prepared.data),
                        "labelscan.image.width": prepared.width,
                        "labelscan.image.height": prepared.height,
                        "labelscan.image.token_estimate": prepared.token_estimate,
                    }
                )
            return prepared

    async def _fetch(self, job: ScanJob) -> bytes:
        if job.image_url is None:
            raise InvalidImageError("the uploaded image has expired or was never stored")
        return await self.fetcher.fetch(job.image_url)

    async def _report(self, claim: Claim, progress: Progress) -> None:
        if not await self.store.progress(claim, progress):
            raise StaleAttemptError


class Reports:
    """One attempt's progress reports (a backend's ``Report``): the percentage reached,
    for a failure's event, and a report of a HELD stage not yet published, which the
    attempt's end (complete, retry or fail) publishes first."""

    __slots__ = ("held", "pct", "send")

    def __init__(self, send: Callable[[Progress], Awaitable[None]], pct: int) -> None:
        self.send = send
        self.pct = pct
        self.held: Progress | None = None

    async def __call__(self, stage: Stage, percentage: int, message: str) -> None:
        await self.publish(Progress(stage=stage, percentage=percentage, message=message))

    async def publish(self, progress: Progress) -> None:
        """Publish ``progress`` (after a held one), or hold it if its stage is HELD."""
        self.pct = progress.percentage
        if self.held is not None:
            await self.send(self.held)
            self.held = None
        if progress.stage in HELD:
            self.held = progress
        else:
            await self.send(progress)


def _outcome(outcome: str, kind: str, message: str) -> None:
    """Mark the current attempt span as ended in a failure (retried, failed, dead-lettered)."""
    span = trace.get_current_span()
    span.set_attributes({"labelscan.outcome": outcome, "error.type": kind})
    span.set_status(StatusCode.ERROR, message)
