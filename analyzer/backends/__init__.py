"""Analysis backends: one protocol, one result schema, chosen by ``ANALYZER_BACKEND``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from analyzer.images import PreparedImage
from shared.schemas import Category, LabelAnalysis, Marketplace, ScanJob, Stage, Usage
from shared.settings import Settings

Report = Callable[[Stage, int, str], Awaitable[None]]
"""Publishes a progress step: stage, percentage, human message."""


class AnalysisRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend analyses."""

    image: bytes
    media_type: str
    image_tokens: int = 0
    """Anthropic's estimate for the prepared image (0 when unknown)."""
    category: Category
    marketplaces: list[Marketplace]
    product_name: str

    @classmethod
    def of(cls, job: ScanJob, prepared: PreparedImage) -> AnalysisRequest:
        """The request for a scan's job, with its image as prepared for the API."""
        return cls(
            image=prepared.data,
            media_type=prepared.media_type,
            image_tokens=prepared.token_estimate,
            category=job.category,
            marketplaces=job.marketplaces,
            product_name=job.product_name,
        )


class ApiLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What the API said of its limits on this answer (``anthropic-ratelimit-*``)."""

    requests_remaining: int | None = None
    requests_reset_ms: int | None = None
    input_tokens_remaining: int | None = None
    input_tokens_reset_ms: int | None = None
    output_tokens_remaining: int | None = None
    output_tokens_reset_ms: int | None = None


class Analysis(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend returns."""

    analysis: LabelAnalysis
    usage: Usage
    model: str
    limits: ApiLimits | None = None


class Backend(Protocol):
    """Turns a label image into structured findings."""

    name: str

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Analyse the label; raise RetryableError or PermanentError on failure."""
        ...

    async def warm_up(self) -> None:
        """Load models or open clients before the first scan."""
        ...

    async def aclose(self) -> None:
        """Release network clients."""
        ...


def make_backend(settings: Settings) -> Backend:
    """The backend ``settings.analyzer_backend`` names."""
    if settings.analyzer_backend == "simulated":
        from analyzer.backends.simulated import SimulatedBackend

        return SimulatedBackend(settings)
    if settings.analyzer_backend == "local":
        from analyzer.backends.local import LocalBackend

        return LocalBackend(settings)
    from analyzer.backends.claude import ClaudeBackend

    return ClaudeBackend(settings)
