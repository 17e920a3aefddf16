"""A backend that only waits: for measuring the framework, never a default."""

from __future__ import annotations

import asyncio

from analyzer.backends import Analysis, AnalysisRequest, Report
from analyzer.ratelimit import mark_sent
from shared.schemas import Finding, LabelAnalysis, MarketplaceReport, Usage
from shared.settings import Settings


class SimulatedBackend:
    """Sleeps ``SIMULATED_DELAY_MS`` and answers a fixed-shape 'needs review' analysis."""

    name = "simulated"

    def __init__(self, settings: Settings) -> None:
        self._delay = settings.simulated_delay_ms / 1000

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Wait, then describe the request without looking at the image."""
        await mark_sent()  # the simulated call starts now, for the shared rate limiter
        if self._delay:
            await asyncio.sleep(self._delay)
        await report("parsing", 90, "Checking the simulated answer")
        finding = Finding(
            rule="SIMULATED",
            requirement="Simulated backend: no real check was made",
            status="unclear",
            severity="info",
            evidence="",
            fix="Run with ANALYZER_BACKEND=claude for a real analysis",
            regulation="none",
        )
        reports = [
            MarketplaceReport(marketplace=m, verdict="needs_review", findings=[finding])
            for m in request.marketplaces
        ]
        analysis = LabelAnalysis(
            verdict="needs_review",
            summary=f"Simulated analysis of {request.product_name}.",
            detected_text="",
            marketplaces=reports,
        )
        return Analysis(analysis=analysis, usage=Usage(), model="simulated")

    async def warm_up(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""
