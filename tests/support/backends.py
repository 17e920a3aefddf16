"""Scriptable analysis backends for tests of the queue's behaviour (not of analysis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from analyzer.backends import Analysis, AnalysisRequest, Report
from analyzer.backends.simulated import SimulatedBackend
from shared.settings import Settings


class ScriptedBackend:
    """Raises the scripted errors per product name in order, then answers like `simulated`."""

    name = "scripted"

    def __init__(
        self,
        settings: Settings,
        *,
        errors: Callable[[str, int], Exception | None] | None = None,
        delay_s: float = 0.0,
        delays: dict[str, float] | None = None,
    ) -> None:
        self._inner = SimulatedBackend(settings)
        self._errors = errors
        self.delay_s = delay_s
        self.delays = delays or {}
        self.calls: dict[str, int] = {}
        self.started = asyncio.Event()
        self.cancelled = 0

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Count the call, wait, maybe raise, else answer."""
        n = self.calls[request.product_name] = self.calls.get(request.product_name, 0) + 1
        self.started.set()
        try:
            delay = self.delays.get(request.product_name, self.delay_s)
            if delay:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self._errors is not None:
            error = self._errors(request.product_name, n)
            if error is not None:
                raise error
        return await self._inner.analyze(request, report)

    async def aclose(self) -> None:
        """Nothing to release."""
