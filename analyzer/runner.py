"""One scan attempt, from claimed entry to result: fetch, analyse, publish, finish."""

from __future__ import annotations

import time

import structlog

from analyzer.backends import AnalysisRequest, Backend
from analyzer.fetch import ImageFetcher
from shared.errors import InvalidImageError, LabelscanError, RetryableError
from shared.images import sniff_image
from shared.schemas import Progress, ScanError, ScanJob, ScanResult, Stage
from shared.store import Claim, ScanStore

log = structlog.get_logger("analyzer")

FETCHING = Progress(stage="fetching", percentage=10, message="Fetching the label image")
ANALYZING = Progress(stage="analyzing", percentage=30, message="Analysing the label")


class StaleAttemptError(Exception):
    """This attempt no longer owns the scan (cancelled, or reclaimed by another worker)."""


class ScanRunner:
    """Runs claimed scans against a backend, reporting each stage through the store."""

    def __init__(self, store: ScanStore, backend: Backend, fetcher: ImageFetcher) -> None:
        self.store = store
        self.backend = backend
        self.fetcher = fetcher

    async def run(self, job: ScanJob, entry_id: str, stream: str, consumer: str) -> None:
        """Claim and run one delivered entry; every outcome ends in a stored state."""
        claim = await self.store.claim(job, entry_id, stream, consumer, FETCHING)
        if claim is None:
            log.info("skipped", scan_id=job.scan_id, reason="finished or gone")
            return
        structlog.contextvars.bind_contextvars(scan_id=job.scan_id, attempt=claim.attempt)
        started = time.monotonic()
        log.info("scan started", backend=self.backend.name)
        pct = FETCHING.percentage
        try:
            image = claim.image if claim.image is not None else await self._fetch(job)
            media_type = sniff_image(image)
            if media_type is None:
                raise InvalidImageError("stored image is not a PNG, JPEG, GIF or WebP")
            pct = ANALYZING.percentage
            await self._report(claim, ANALYZING)

            async def report(stage: Stage, percentage: int, message: str) -> None:
                nonlocal pct
                pct = percentage
                await self._report(
                    claim, Progress(stage=stage, percentage=percentage, message=message)
                )

            outcome = await self.backend.analyze(
                AnalysisRequest(
                    image=image, media_type=media_type, category=job.category,
                    marketplaces=job.marketplaces, product_name=job.product_name,
                ),
                report,
            )
            result = ScanResult(
                analysis=outcome.analysis, backend=self.backend.name, model=outcome.model,
                usage=outcome.usage, duration_ms=int((time.monotonic() - started) * 1000),
            )
            if not await self.store.complete(claim, result):
                raise StaleAttemptError
            log.info("scan completed", verdict=result.analysis.verdict,
                     duration_ms=result.duration_ms)
        except StaleAttemptError:
            log.warning("scan attempt superseded; result discarded")
        except LabelscanError as exc:
            error = ScanError(
                kind=exc.kind, message=str(exc), retryable=isinstance(exc, RetryableError)
            )
            await self.store.fail(claim, error, pct)
            log.warning("scan failed", kind=exc.kind, error=str(exc))
        except Exception as exc:
            # A bug or an unexpected library error: record it rather than crash the worker.
            log.exception("scan crashed")
            await self.store.fail(
                claim, ScanError(kind="internal", message=f"{type(exc).__name__}: {exc}"), pct
            )
        finally:
            structlog.contextvars.unbind_contextvars("scan_id", "attempt")

    async def _fetch(self, job: ScanJob) -> bytes:
        if job.image_url is None:
            raise InvalidImageError("the uploaded image has expired or was never stored")
        return await self.fetcher.fetch(job.image_url)

    async def _report(self, claim: Claim, progress: Progress) -> None:
        if not await self.store.progress(claim, progress):
            raise StaleAttemptError
