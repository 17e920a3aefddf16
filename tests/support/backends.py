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
        self.order: list[str] = []
        self.running: dict[str, int] = {}
        self.max_running: dict[str, int] = {}
        self.started = asyncio.Event()
        self.cancelled = 0

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """Count the call, wait, maybe raise, else answer."""
        name = request.product_name
        n = self.calls[name] = self.calls.get(name, 0) + 1
        self.order.append(name)
        group = name.split("-")[0]  # "A-1", "A-2": group A, to watch concurrency per group
        self.running[group] = self.running.get(group, 0) + 1
        self.max_running[group] = max(self.max_running.get(group, 0), self.running[group])
        self.started.set()
        try:
            delay = self.delays.get(name, self.delay_s)
            if delay:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running[group] -= 1
        if self._errors is not None:
            error = self._errors(request.product_name, n)
            if error is not None:
                raise error
        return await self._inner.analyze(request, report)

    async def warm_up(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""
